"""Page script: QA review (QA reviewers, admins)."""

from review.ui.common import get_lab, require_role
from review.ui.qa_page import render

render(get_lab(), require_role("qa", "admin"))
