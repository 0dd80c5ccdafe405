"""Page script: Generate restorations (admins)."""

from review.ui.common import get_lab, require_role
from review.ui.generate_page import render

render(get_lab(), require_role("admin"))
