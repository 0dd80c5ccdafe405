"""Page script: Rate (reviewers, admins)."""

from review.ui.rate import page

page()
