"""Page script: QA review (QA reviewers, admins)."""

from review.policy import Action
from review.ui.common import get_lab, require
from review.ui.qa_page import render

render(get_lab(), require(Action.QA_REVIEW))
