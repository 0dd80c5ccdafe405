"""Accounts' floor, below labeling: who is signed in and whether that sign-in still holds.

Labeling checks a write's browser session here (review.accounts.sessions.require_session), so
this package imports only the foundation and db.
"""
