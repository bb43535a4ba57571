"""Keyset pagination with opaque cursors.

Offsets skip or repeat rows while a running search inserts trials, and cost
O(offset) at 100k trials; a cursor names the last row seen, so a page is an
index range scan and stays stable under inserts.

A cursor comes back from the client, so it is checked like any input: the
right shape, an id a row could have, a finite score; anything else is a 400
saying why, never a database error.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from app.errors import TrialforgeError

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
ID_MAX = 2**31 - 1  # ids are Integer columns, int4 on Postgres: no row has a larger one
CURSOR_MAX_CHARS = 200  # ours are a few dozen


def is_row_id(value: object) -> bool:
    """Whether `value` could be a row's id: an int (not a bool) in 1..ID_MAX.

    Checked before an id from outside (a path, a query, a cursor) reaches SQL,
    where a larger one overflows the driver or the column instead of matching nothing.
    """
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= ID_MAX


class InvalidCursor(TrialforgeError):
    status_code = 400


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None
    total: int
    prev_cursor: str | None = None  # where a listing can page backwards; None on its first page


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """The key a cursor names; a tampered or foreign cursor is a 400, not a 500."""
    if len(cursor) > CURSOR_MAX_CHARS:
        raise InvalidCursor(f"cursor is {len(cursor)} characters; this API issues shorter ones")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidCursor("cursor is not one this API issued") from exc
    if not isinstance(key, list) or len(key) != arity:
        raise InvalidCursor("cursor does not fit this listing")
    return key


def decode_id_cursor(cursor: str) -> int:
    """The last id of an id-ordered page."""
    (last_id,) = decode_cursor(cursor, 1)
    return _row_id(last_id)


def decode_score_cursor(cursor: str) -> tuple[float | None, int]:
    """The last (score, id) of a score-ordered page; an unscored row's score is null."""
    score, last_id = decode_cursor(cursor, 2)
    if score is not None:
        finite = isinstance(score, int | float) and not isinstance(score, bool)
        if not finite or not math.isfinite(score):
            raise InvalidCursor(f"cursor's score must be a finite number or null, not {score!r}")
    return None if score is None else float(score), _row_id(last_id)


def _row_id(value: object) -> int:
    if not is_row_id(value):
        raise InvalidCursor(f"cursor's id must be an integer from 1 to {ID_MAX}, not {value!r}")
    assert isinstance(value, int)
    return value
