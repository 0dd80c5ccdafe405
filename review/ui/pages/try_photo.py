"""Page script: Try your photo (admins, QA, and reviewers with no open rating work)."""

from review.policy import Action
from review.ui.common import get_lab, require
from review.ui.try_photo_page import render

render(get_lab(), require(Action.TRY_PHOTO))
