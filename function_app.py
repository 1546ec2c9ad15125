"""Composition root of the Functions app: the HTTP API (FastAPI behind AsgiFunctionApp).

Nothing heavy happens at import: settings, the store and identity are resolved on the first
request. Serve locally without the Functions host: ``uvicorn function_app:api``.
"""

from __future__ import annotations

import azure.functions as func

from shared.api.app import create_api

api = create_api()
app = func.AsgiFunctionApp(app=api, http_auth_level=func.AuthLevel.ANONYMOUS)
