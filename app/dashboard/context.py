"""A page's context as plain data: what `?format=json` serves beside the HTML.

The same facts the template renders, so a script (or a test) reads a page
without parsing HTML; the drawn SVG is left out, the buckets and nodes it is
drawn from are in. Trials take the API's row shape, searches their columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from markupsafe import Markup
from pydantic import BaseModel
from sqlalchemy import inspect

from app.api.schemas import TrialSummaryOut
from app.store.models import Search, Trial


def as_data(value: Any) -> Any:
    if isinstance(value, Trial):
        return TrialSummaryOut.build(value).model_dump(mode="json")
    if isinstance(value, Search):
        columns = inspect(value).mapper.column_attrs
        return {column.key: as_data(getattr(value, column.key)) for column in columns}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return _mapping({field.name: getattr(value, field.name) for field in fields(value)})
    if isinstance(value, Mapping):
        return _mapping(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [as_data(item) for item in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"a page context holds a {type(value).__name__}, which has no JSON form")


def _mapping(mapping: Mapping[Any, Any]) -> dict[str, Any]:
    """Entries as data; drawn markup (charts) is presentation, not data, and is left out."""
    kept = {key: item for key, item in mapping.items() if not isinstance(item, Markup)}
    return {str(key): as_data(item) for key, item in kept.items()}
