"""Alembic environment: the URL comes from the caller's config or from DATABASE_URL."""

from __future__ import annotations

from alembic import context

import models
from core.settings import settings
from models.db import create_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or settings.database_url
target_metadata = models.Base.metadata


def run_offline() -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
