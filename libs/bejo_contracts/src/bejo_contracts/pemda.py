"""The pemda hierarchy: codes are dotted paths (`35` province, `35.15` regency below it)."""

from __future__ import annotations

import re


def covers(scope: str, code: str) -> bool:
    """`35` covers `35` and `35.15`, but not `351` (a sibling that merely shares the prefix)."""
    return code == scope or code.startswith(scope + ".")


def subtree_regex(scope: str) -> str:
    """A Mongo `$regex` matching exactly the codes `covers(scope, code)` accepts."""
    return f"^{re.escape(scope)}(\\.|$)"
