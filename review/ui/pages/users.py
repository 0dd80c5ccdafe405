"""Page script: Users (admins)."""

from review.ui.admin import users_page

users_page()
