"""SPEC.md's rule for container IDs and network names (and plugin types), in one place."""

from __future__ import annotations

import re

# ASCII only: \w would let Unicode letters through.
NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
NAME_RULE = "must start with a letter or digit and contain only letters, digits, '_', '.', '-'"


def name_problem(value: str) -> str | None:
    """Why the value breaks the rule, or None."""
    return None if NAME_RE.fullmatch(value) else NAME_RULE


def encodable(value: str) -> bool:
    """False for text with lone surrogates (how os.environ and json keep undecodable bytes):
    no system call can take it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
