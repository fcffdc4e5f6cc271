"""Celery: the app and thin tasks. Logic lives in service/."""
