"""Page script: How far can it go? The study's answer (admins and QA)."""

from review.policy import Action
from review.ui.answer_page import render
from review.ui.common import get_lab, require

render(get_lab(), require(Action.ANSWER_VIEW))
