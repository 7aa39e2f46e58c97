"""The Celery application: `celery -A worker worker|beat|flower`."""

from worker.celery_app import app

__all__ = ["app"]
