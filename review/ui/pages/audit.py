"""Page script: Audit log (admins)."""

from review.ui.audit_page import render
from review.ui.common import get_lab, require_role

render(get_lab(), require_role("admin"))
