"""The building blocks of a spec: bounded field types and the strict base model.

Every number of a spec is finite and every duration, size, count and cost
has a ceiling (a runner handed 1e308 seconds crashes); every string is
bounded and free of control characters (Postgres refuses NUL in text and
JSON, and a page would carry whatever we store); `extra="forbid"`
everywhere, so a typo is an error, not a silently ignored setting.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
ENV_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]{0,63}$"
SPEC_MAX_BYTES = 1_000_000  # a whole spec, as JSON
TEXT_MAX_CHARS = 10_000  # any one string in a spec (a description, a brief, a command)
NAME_MAX_CHARS = 100  # a search's name: one line in lists and pages
LIST_MAX_ITEMS = 100  # any one list in a spec (agents, paths, gates, knobs, choices)
MAX_DURATION_S = 366 * 86_400.0  # a year: any longer budget or deadline is a typo
MAX_BYTES = 4 * 1024**4  # 4 TiB: a memory or artifact cap above this is a typo
MAX_COUNT = 1_000_000  # trials, stagnation trials
MAX_USD = 1_000_000.0  # a cost budget
MAX_USD_PER_MTOK = 10_000.0  # a model's price
# C0 controls (but tab, newline, carriage return), DEL and C1: never in a spec's text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_BREAK = re.compile(r"[\t\n\r]")
_DURATION_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_URL_RE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:)", re.IGNORECASE)


def parse_duration(value: Any) -> Any:
    """Seconds from `3600`, `"90s"`, `"30m"`, `"48h"` or `"2d"`; other input is left to pydantic."""
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 600, '90s', '30m', '48h', '2d')")
        return float(match.group(1)) * _DURATION_UNITS_S[match.group(2) or "s"]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0, le=MAX_DURATION_S)]
Bytes = Annotated[ByteSize, Field(le=MAX_BYTES)]


def is_url(source: str) -> bool:
    """True for anything git fetches over a transport (https, ssh, scp-style, file)."""
    return bool(_URL_RE.match(source))


def _check_repo_glob(pattern: str) -> str:
    parts = pattern.split("/")
    if not pattern or pattern.startswith("/") or ".." in parts:
        raise ValueError(f"{pattern!r} must be a path relative to the recipe, without '..'")
    return pattern


RepoGlob = Annotated[str, BeforeValidator(_check_repo_glob)]


def _one_line(text: str) -> str:
    if _BREAK.search(text):
        raise ValueError("must be one line (no tab, newline or carriage return)")
    return text


SearchName = Annotated[
    str, Field(min_length=1, max_length=NAME_MAX_CHARS), AfterValidator(_one_line)
]


def _check_text(field: str, value: Any) -> Any:
    """Bound every string and list of a spec and refuse control characters in its text."""
    if isinstance(value, list) and len(value) > LIST_MAX_ITEMS:
        raise ValueError(f"{field} has {len(value)} entries; at most {LIST_MAX_ITEMS}")
    texts = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    for index, text in enumerate(item for item in texts if isinstance(item, str)):
        where = field if isinstance(value, str) else f"{field}[{index}]"
        if len(text) > TEXT_MAX_CHARS:
            raise ValueError(f"{where} is {len(text)} characters; at most {TEXT_MAX_CHARS}")
        if found := _CONTROL.search(text):
            raise ValueError(
                f"{where} holds a control character (U+{ord(found.group()):04X} at "
                f"{found.start()}); remove it"
            )
    return value


class StrictModel(BaseModel):
    # Every float of a spec is finite: JSON's Infinity and NaN are refused at the door.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _bounded_text(cls, value: Any, info: ValidationInfo) -> Any:
        return _check_text(info.field_name or "value", value)
