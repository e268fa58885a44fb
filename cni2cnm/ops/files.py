"""Small file helpers shared by the operator commands."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from typing import Any

from cni2cnm.ops import OpError


def atomic_write(path: str, content: str | bytes, mode: int = 0o644) -> None:
    """Write `content` to `path` through a temporary file and a rename: readers (a runtime
    scanning its conf dir, kubelet exec'ing the plugin) never see a half-written file."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    except OSError as e:
        raise OpError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OpError(f"cannot write {path}: {e.strerror or e}") from None


def read_text(path: str, limit: int = 4 << 20) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(limit + 1)
    except FileNotFoundError:
        raise OpError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise OpError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    if len(text) > limit:
        raise OpError(f"{path} is larger than {limit} bytes")
    return text


def read_json_object(path: str) -> dict[str, Any]:
    text = read_text(path)
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise OpError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise OpError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


def sha256_of(path: str) -> str | None:
    """Hex digest of a file's content, None when it does not exist or cannot be read."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def sha256_text(text: str | bytes) -> str:
    return hashlib.sha256(text if isinstance(text, bytes) else text.encode()).hexdigest()
