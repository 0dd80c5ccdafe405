"""Page script: Analysis, agreement statistics and exports (admins)."""

from review.policy import Action
from review.ui.analyst_page import render
from review.ui.common import get_lab, require

render(get_lab(), require(Action.ANALYSIS_VIEW))
