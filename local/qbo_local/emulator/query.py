"""A small parser for Intuit's query language: enough of it for listing, paging and counting.

    select * | count(*) from <Entity> [where <Field> <op> <value> [and ...]] [orderby ...]
        [startposition n] [maxresults m]

Keywords and field names are case-insensitive (`Metadata.LastUpdatedTime` reads the MetaData object).
<op> is =, <, >, <= or >=; a value is a quoted string, a number, true or false; `<Field> in (<value>,
...)` matches any of the values. Date-times compare as moments (any offset), numbers as numbers, anything
else as text. A where clause it cannot read is a
query error, as at Intuit, never silently ignored. `orderby <Field> [asc|desc][, ...]` sorts by those
fields, compared as the where clause compares them; without it results come in Id order (Intuit
documents no order for that case).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from qbo_connect import intuit

from .errors import ApiFault

DEFAULT_MAX_RESULTS = 100
MAX_RESULTS_LIMIT = intuit.QUERY_MAX_RESULTS

_HEAD = re.compile(r"\s*select\s+(\*|count\(\s*\*\s*\))\s+from\s+(\w+)(.*)", re.IGNORECASE | re.DOTALL)
_PAGING_TAIL = re.compile(r"\s+(startposition|maxresults)\s+(\d+)\s*;?\s*$", re.IGNORECASE)
_ORDER_TAIL = re.compile(r"\s+order\s*by\s+([\w.,\s]+?)\s*;?\s*$", re.IGNORECASE)
_ORDER_KEY = re.compile(r"\s*([A-Za-z_][\w.]*)(?:\s+(asc|desc))?\s*", re.IGNORECASE)
_WHERE = re.compile(r"\s+where\s+(.+?)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_VALUE = r"""(?:'((?:\\.|''|[^'\\])*)'|(true|false|-?\d+(?:\.\d+)?)\b)"""  # quoted, or bare
_CONDITION = re.compile(rf"\s*([A-Za-z_][\w.]*)\s*(<=|>=|=|<|>)\s*{_VALUE}\s*", re.IGNORECASE)
_IN_OPEN = re.compile(r"\s*([A-Za-z_][\w.]*)\s+in\s*\(", re.IGNORECASE)
_IN_VALUE = re.compile(rf"\s*{_VALUE}\s*([,)])\s*", re.IGNORECASE)
_AND = re.compile(r"and\b", re.IGNORECASE)


@dataclass(frozen=True)
class Condition:
    field: str  # a dotted path, e.g. DisplayName or Metadata.LastUpdatedTime
    op: str  # =, <, >, <=, >=, in
    value: str
    values: tuple[str, ...] = ()  # in: any of these

    def matches(self, actual: Any) -> bool:
        if isinstance(actual, bool):
            actual = "true" if actual else "false"
        if actual is None:
            return False
        if self.op == "in":
            return str(actual) in self.values
        if self.op == "=":
            return str(actual) == self.value
        left, right = _comparable(str(actual)), _comparable(self.value)
        if type(left) is not type(right):
            left, right = str(actual), self.value
        return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[self.op]


@dataclass(frozen=True)
class OrderKey:
    field: str  # a dotted path, e.g. Metadata.LastUpdatedTime
    descending: bool = False


@dataclass(frozen=True)
class Query:
    entity: str  # as written; the caller maps it to a known entity
    count: bool
    filters: tuple[Condition, ...]
    start_position: int
    max_results: int
    order: tuple[OrderKey, ...] = ()


def parse(text: str) -> Query:
    head = _HEAD.fullmatch(text)
    if head is None:
        raise ApiFault.query_error("expected: select * from <Entity> [where ...] [startposition n] [maxresults m]")
    what, entity, rest = head.groups()
    paging: dict[str, int] = {}
    while tail := _PAGING_TAIL.search(rest):
        paging.setdefault(tail.group(1).lower(), int(tail.group(2)))
        rest = rest[: tail.start()]
    order: tuple[OrderKey, ...] = ()
    if tail := _ORDER_TAIL.search(rest):
        order = tuple(_order_keys(tail.group(1)))
        rest = rest[: tail.start()]
    filters: tuple[Condition, ...] = ()
    if where := _WHERE.fullmatch(rest):
        filters = tuple(_conditions(where.group(1)))
    elif rest.strip(" ;"):
        raise ApiFault.query_error(f"unexpected text {rest.strip()!r}")
    max_results = paging.get("maxresults", DEFAULT_MAX_RESULTS)
    return Query(
        entity=entity,
        count=what != "*",
        filters=filters,
        start_position=max(1, paging.get("startposition", 1)),
        max_results=min(max(1, max_results), MAX_RESULTS_LIMIT),
        order=order,
    )


def _order_keys(text: str) -> list[OrderKey]:
    keys = []
    for part in text.split(","):
        key = _ORDER_KEY.fullmatch(part)
        if key is None:
            raise ApiFault.query_error(f"cannot read the orderby field {part.strip()[:40]!r}")
        keys.append(OrderKey(key.group(1), (key.group(2) or "").lower() == "desc"))
    return keys


def sort_key(value: Any) -> tuple[int, int, Any]:
    """Orders values as the where clause compares them: numbers, then moments, then text; missing last."""
    if value is None:
        return (1, 0, "")
    if isinstance(value, bool):
        value = "true" if value else "false"
    comparable = _comparable(str(value))
    rank = 0 if isinstance(comparable, float) else 1 if isinstance(comparable, datetime) else 2
    return (0, rank, comparable)


def _conditions(where: str) -> list[Condition]:
    found, position = [], 0
    while True:
        if _IN_OPEN.match(where, position):
            condition, position = _in_condition(where, position)
            found.append(condition)
        elif match := _CONDITION.match(where, position):
            field, op, quoted, bare = match.groups()
            found.append(Condition(field, op, _literal(quoted, bare)))
            position = match.end()
        else:
            raise ApiFault.query_error(f"cannot read the condition at {where[position : position + 40]!r}")
        if position >= len(where):
            return found
        conjunction = _AND.match(where, position)
        if conjunction is None:
            raise ApiFault.query_error(f"expected AND at {where[position : position + 40]!r}")
        position = conjunction.end()


def _in_condition(where: str, position: int) -> tuple[Condition, int]:
    """`<Field> in (<value>, ...)` at `position`, and where the text after it starts."""
    opening = _IN_OPEN.match(where, position)
    assert opening is not None
    values, position = [], opening.end()
    while item := _IN_VALUE.match(where, position):
        values.append(_literal(item.group(1), item.group(2)))
        position = item.end()
        if item.group(3) == ")":
            return Condition(opening.group(1), "in", "", tuple(values)), position
    raise ApiFault.query_error(f"cannot read the values at {where[position : position + 40]!r}")


def _literal(quoted: str | None, bare: str | None) -> str:
    if quoted is not None:
        return quoted.replace("\\'", "'").replace("''", "'")
    return bare.lower() if bare.lower() in ("true", "false") else bare


def _comparable(text: str) -> float | datetime | str:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
