"""Page script: Guideline versions, read only (QA reviewers)."""

from review.ui.admin import guidelines_page

guidelines_page()
