"""Page script: Disagreements, settle disputed items (admins, QA reviewers)."""

from review.ui.common import get_lab, require_role
from review.ui.disagreements_page import render

render(get_lab(), require_role("admin", "qa"))
