"""Page script: Study setup, create, edit and close studies (admins)."""

from review.policy import Action
from review.ui.common import get_lab, require
from review.ui.studies_page import render

render(get_lab(), require(Action.STUDY_EDIT))
