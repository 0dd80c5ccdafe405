"""Page script: Crowd, rater pools, links, data cleansing and platform exports (admins)."""

from review.policy import Action
from review.ui.common import get_lab, require
from review.ui.crowd_page import render

render(get_lab(), require(Action.POOLS_MANAGE))
