"""Page script: How far can it go? The study's answer (admins and QA)."""

from review.ui.answer_page import ROLES, render
from review.ui.common import get_lab, require_role

render(get_lab(), require_role(*ROLES))
