"""The HTTP API (FastAPI): routers, schemas, problem+json, caller identity and roles.

``create_api()`` lives in ``shared.api.app``; this package init imports nothing heavy.
"""
