"""Keyset pagination with opaque cursors.

Offsets skip or repeat rows while a running search inserts trials, and cost
O(offset) at 100k trials; a cursor names the last row seen, so a page is an
index range scan and stays stable under inserts.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from app.errors import TrialforgeError

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class InvalidCursor(TrialforgeError):
    status_code = 400


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None
    total: int


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """The key a cursor names; a tampered or foreign cursor is a 400, not a 500."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor("cursor is not one this API issued") from exc
    if not isinstance(key, list) or len(key) != arity:
        raise InvalidCursor("cursor does not fit this listing")
    return key
