"""ASGI entry point for uvicorn: `uvicorn service.web.asgi:app`."""

from service.runtime import Runtime
from service.settings import Settings
from service.web.app import create_app

app = create_app(Runtime.from_settings(Settings()))
