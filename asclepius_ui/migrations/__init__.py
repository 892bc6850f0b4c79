"""Alembic migrations of the ratings database (configured in code by ``asclepius_ui.storage``; no alembic.ini)."""
