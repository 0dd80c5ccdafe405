"""Page script: Audit log (admins)."""

from review.policy import Action
from review.ui.audit_page import render
from review.ui.common import get_lab, require

render(get_lab(), require(Action.AUDIT_VIEW))
