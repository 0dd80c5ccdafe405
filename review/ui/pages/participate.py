"""Page script: the participant's study (crowd participants)."""

from review.policy import Action
from review.ui.common import get_lab, require
from review.ui.participant_page import render

render(get_lab(), require(Action.PARTICIPATE))
