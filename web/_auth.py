"""Bearer-token check for the API's PUT and POST routes."""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping

from actors import ServerConfig

__all__ = ["bearer_token_matches", "token_from_env"]


def token_from_env(server: ServerConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """The API token, read from the environment variable ``server.api_token_env``.

    An unset or empty variable means no token: PUT and POST are then open (which
    ``tripwire serve`` allows on a loopback address only).
    """
    value = (os.environ if environ is None else environ).get(server.api_token_env, "")
    return value or None


def bearer_token_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>`` (constant-time compare)."""
    if not authorization:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())
