"""Page script: Study setup, create, edit and close studies (admins)."""

from review.ui.common import get_lab, require_role
from review.ui.studies_page import render

render(get_lab(), require_role("admin"))
