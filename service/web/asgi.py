"""ASGI entry point for uvicorn, as `chapar serve` runs it.

Run by hand, give uvicorn `--no-proxy-headers`: the app itself decides whose
X-Forwarded-For to believe (CHAPAR_TRUSTED_PROXIES).
"""

from service.runtime import Runtime
from service.settings import Settings
from service.web.app import create_app

app = create_app(Runtime.from_settings(Settings()))
