"""Page script: Disagreements, settle disputed items (admins, QA reviewers)."""

from review.policy import Action
from review.ui.common import get_lab, require
from review.ui.disagreements_page import render

render(get_lab(), require(Action.DISAGREEMENTS_SETTLE))
