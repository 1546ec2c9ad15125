"""Request body limits, one place: which routes take large uploads, and the limit of all others.

Upload routes (segment members, customer rows) accept bodies up to the MAX_UPLOAD_BYTES setting;
every other body (JSON documents of a few kilobytes) is refused past MAX_BODY_BYTES. Both are
enforced by shared.api.middleware.RequestGate while the body streams in, after the caller has
been authenticated from the headers.
"""

from __future__ import annotations

MAX_BODY_BYTES = 1024 * 1024  # 1 MiB: far above any JSON document the API takes

# (method, route path as declared) of the routes that read a large body themselves.
UPLOAD_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("PUT", "/api/segments/{name}"),
        ("POST", "/api/customers"),
        ("POST", "/api/customer-imports"),
        # the console's upload pages pass the file on to the routes above unchanged
        ("POST", "/data/segments"),
        ("POST", "/data/customers"),
    }
)
