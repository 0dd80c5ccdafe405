"""Page script: Guideline authoring (admins)."""

from review.ui.common import get_lab, require_role
from review.ui.guidelines_page import render

render(get_lab(), require_role("admin"))
