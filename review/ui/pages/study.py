"""Page script: Studies and progress (admins)."""

from review.ui.admin import study_page

study_page()
