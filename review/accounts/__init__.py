"""Accounts' floor, below labeling: accounts and how every kind is made (`users`), the account
check every write on an account's behalf starts with (`check`), signed-in browsers (`sessions`),
the audit log (`audit`) and the client address of a login (`addresses`).

Labeling and analysis call in here (require_account, require_session, add_user, rater_account)
and never re-implement it, so this package imports only the foundation and db.
"""
