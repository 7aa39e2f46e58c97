"""Celery tasks: thin wrappers that take identifiers, load state and call plain functions."""
