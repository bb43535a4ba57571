"""The metric's direction in SQL: the one place a query turns `Direction` into an order.

Every "best first" sort and every "best of a group" aggregate goes through
here, so no query picks `desc()` or `max()` by hand.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, UnaryExpression, func
from sqlalchemy.orm import InstrumentedAttribute

from app.domain.states import Direction

Column = ColumnElement[Any] | InstrumentedAttribute[Any]


def best_first(column: Column, direction: Direction) -> UnaryExpression[Any]:
    """Order by `column`, best score first (unscored rows last)."""
    order = column.desc() if direction.higher_is_better else column.asc()
    return order.nulls_last()


def worst_first(column: Column, direction: Direction) -> UnaryExpression[Any]:
    order = column.asc() if direction.higher_is_better else column.desc()
    return order.nulls_last()


def best_of(column: Column, direction: Direction) -> ColumnElement[Any]:
    """The best value of `column` in a group."""
    return func.max(column) if direction.higher_is_better else func.min(column)
