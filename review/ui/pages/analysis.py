"""Page script: Analysis, agreement statistics and exports (admins)."""

from review.ui.analyst_page import render
from review.ui.common import get_lab, require_role

render(get_lab(), require_role("admin"))
