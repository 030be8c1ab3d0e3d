"""The API token: where it comes from and how a request's header is checked."""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "CELLBOX_API_KEY"


@dataclass(frozen=True)
class Token:
    value: str
    source: str  # "environment" or the path of the token file
    created: bool  # True when this start generated it


def load_token(token_file: Path, environ: dict[str, str] | None = None) -> Token:
    """The token from ``CELLBOX_API_KEY``, else the state file, else a new one stored 0600."""
    environ = os.environ if environ is None else environ
    from_env = environ.get(ENV_VAR, "").strip()
    if from_env:
        return Token(from_env, "environment", created=False)
    if token_file.exists():
        value = token_file.read_text().strip()
        if value:
            token_file.chmod(0o600)
            return Token(value, str(token_file), created=False)
    token_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(32)
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return Token(value, str(token_file), created=True)


def header_matches(header: str | None, token: str) -> bool:
    """Accept ``Bearer <token>`` (any case of the scheme) and a raw ``<token>``; constant time."""
    if not header:
        return False
    candidate = header.strip()
    scheme, _, rest = candidate.partition(" ")
    if scheme.lower() == "bearer" and rest:
        candidate = rest.strip()
    return hmac.compare_digest(candidate.encode(), token.encode())
