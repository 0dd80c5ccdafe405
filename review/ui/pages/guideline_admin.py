"""Page script: Guideline authoring (admins)."""

from review.policy import Action
from review.ui.common import get_lab, require
from review.ui.guidelines_page import render

render(get_lab(), require(Action.GUIDELINE_EDIT))
