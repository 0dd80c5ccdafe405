"""Page script: Generate restorations (admins)."""

from review.policy import Action
from review.ui.common import get_lab, require
from review.ui.generate_page import render

render(get_lab(), require(Action.GENERATE))
