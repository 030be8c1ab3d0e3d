"""What the worker sends besides text: MIME bundles and frames JSON cannot carry as they are."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from cellbox.ansi import strip_ansi
from cellbox.protocol import HEADER, encode

_BINARY_MIMES = frozenset({"image/png", "image/jpeg", "application/pdf"})


def sanitize_json(value: Any) -> Any:
    """A JSON-encodable copy of ``value`` (bad strings repaired, odd objects stringified)."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {sanitize_json(str(k)): sanitize_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize_json(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        try:
            return sanitize_json(tolist())
        except Exception:
            pass
    return sanitize_json(str(value))


def encode_lenient(message: dict[str, Any]) -> bytes:
    """``encode(message)``, repairing values that JSON cannot carry as they are."""
    try:
        return encode(message)
    except (TypeError, ValueError, orjson.JSONEncodeError):
        pass
    try:
        payload = orjson.dumps(
            message,
            default=str,
            option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY,
        )
        return HEADER.pack(len(payload)) + payload
    except (TypeError, ValueError, orjson.JSONEncodeError):
        return encode(sanitize_json(message))


def clean_bundle(data: dict[Any, Any]) -> dict[str, Any]:
    """A MIME bundle as the protocol wants it: binary types base64, text without ANSI."""
    bundle: dict[str, Any] = {}
    for mime, value in data.items():
        if not isinstance(mime, str):
            continue
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if mime in _BINARY_MIMES or not (
                mime.startswith("text/") or mime.endswith(("+xml", "/javascript", "+json"))
            ):
                value = base64.b64encode(raw).decode("ascii")
            else:
                value = raw.decode("utf-8", "replace")
        elif mime in _BINARY_MIMES and isinstance(value, str):
            value = "".join(value.split())  # already base64; drop line breaks
        if mime == "text/plain" and isinstance(value, str):
            value = strip_ansi(value)
        bundle[mime] = value
    return bundle
