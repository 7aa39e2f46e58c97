"""Alembic migrations; `ticketq db upgrade` applies them (see migrate.py)."""
