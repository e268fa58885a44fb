"""Decoding stdin as one JSON object (error 6 otherwise). Standard library only: VERSION uses
it, and VERSION must stay cheap (runtimes call it every few seconds)."""

from __future__ import annotations

import json
from typing import Any

from cni2cnm.cni.errors import CNIError, Code


def decode_json_object(data: bytes, what: str = "network config") -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise CNIError(Code.DECODE_FAILURE, f"cannot decode {what}", str(e)) from None
    if not isinstance(doc, dict):
        raise CNIError(Code.DECODE_FAILURE, f"cannot decode {what}",
                       f"expected a JSON object, got {type(doc).__name__}")
    return doc
