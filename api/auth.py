"""Bearer-token authentication of the PM API.

Tokens come from ORCHESTRATOR_API_TOKENS. A blueprint opts in with
`protect(blueprint)`; health, readiness, metrics, the OpenAPI document and its
docs page are left open (they carry no task data).
"""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, request

from api.errors import ApiError


class Unauthorized(ApiError):
    """401 with no detail about what was wrong (missing, malformed or unknown token)."""

    status = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="orchestrator"'}


def token_accepted(presented: str, tokens: tuple[str, ...]) -> bool:
    """True when `presented` equals one configured token, compared in constant time."""
    given = presented.encode("utf-8", "surrogateescape")
    found = False
    # Every token is compared (no early exit), so timing says nothing about which one matched.
    for token in tokens:
        found |= hmac.compare_digest(given, token.encode("utf-8"))
    return found and bool(presented)


def require_token() -> None:
    """Refuse the request unless it carries `Authorization: Bearer <configured token>`."""
    tokens = current_app.extensions["orchestrator"].settings.api_tokens
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token_accepted(presented.strip(), tokens):
        raise Unauthorized("authentication required")


def protect(blueprint: Blueprint) -> Blueprint:
    """Require a bearer token on every route of `blueprint`."""
    blueprint.before_request(require_token)
    return blueprint
