"""Page script: Try your photo (admins, QA, and reviewers with no open rating work)."""

from review.ui.common import get_lab, require_role
from review.ui.try_photo_page import ROLES, render

render(get_lab(), require_role(*ROLES))
