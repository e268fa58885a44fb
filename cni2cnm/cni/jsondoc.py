"""Decoding stdin as one JSON object (error 6 otherwise). Standard library only: VERSION uses
it, and VERSION must stay cheap (runtimes call it every few seconds)."""

from __future__ import annotations

import json
from typing import Any

from cni2cnm.cni.errors import CNIError, Code


def json_object(data: bytes) -> tuple[dict[str, Any] | None, str]:
    """The JSON object `data` holds and "", or None and why it holds none."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        return None, str(e)
    if not isinstance(doc, dict):
        return None, f"expected a JSON object, got {type(doc).__name__}"
    return doc, ""


def require_object(doc: dict[str, Any] | None, why: str, what: str) -> dict[str, Any]:
    """`doc` as json_object returned it, or error 6 saying why it cannot decode `what`."""
    if doc is None:
        raise CNIError(Code.DECODE_FAILURE, f"cannot decode {what}", why)
    return doc
