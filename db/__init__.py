"""Persistence layer: typed SQLAlchemy models, engine/session factory, Alembic migrations.

No Streamlit and no torch here; the domain (`review/`) builds on this package.
"""
