"""Page script: Guideline versions (admins, QA)."""

from review.ui.admin import guidelines_page

guidelines_page()
