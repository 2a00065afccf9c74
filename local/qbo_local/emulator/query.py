"""A small parser for Intuit's query language: enough of it for listing, paging and counting.

    select * | count(*) from <Entity> [where <Field> = '<value>' [and ...]] [orderby ...]
        [startposition n] [maxresults m]

Keywords are case-insensitive. Conditions other than equality with a literal are ignored, and so is
orderby (results come in Id order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qbo_connect import intuit

from .errors import ApiFault

DEFAULT_MAX_RESULTS = 100
MAX_RESULTS_LIMIT = intuit.QUERY_MAX_RESULTS

_HEAD = re.compile(r"\s*select\s+(\*|count\(\s*\*\s*\))\s+from\s+(\w+)(.*)", re.IGNORECASE | re.DOTALL)
_PAGING_TAIL = re.compile(r"\s+(startposition|maxresults)\s+(\d+)\s*;?\s*$", re.IGNORECASE)
_ORDER_TAIL = re.compile(r"\s+order\s*by\s+[\w.,\s]+?\s*;?\s*$", re.IGNORECASE)
_WHERE = re.compile(r"\s+where\s+(.+?)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_CONDITION = re.compile(
    r"""([A-Za-z_][\w.]*)\s*=\s*(?:'((?:\\.|''|[^'\\])*)'|(true|false|-?\d+(?:\.\d+)?)\b)""",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Query:
    entity: str  # as written; the caller maps it to a known entity
    count: bool
    filters: tuple[tuple[str, str], ...]
    start_position: int
    max_results: int


def parse(text: str) -> Query:
    head = _HEAD.fullmatch(text)
    if head is None:
        raise ApiFault.query_error("expected: select * from <Entity> [where ...] [startposition n] [maxresults m]")
    what, entity, rest = head.groups()
    paging: dict[str, int] = {}
    while tail := _PAGING_TAIL.search(rest):
        paging.setdefault(tail.group(1).lower(), int(tail.group(2)))
        rest = rest[: tail.start()]
    if order := _ORDER_TAIL.search(rest):
        rest = rest[: order.start()]
    filters: tuple[tuple[str, str], ...] = ()
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
    )


def _conditions(where: str) -> list[tuple[str, str]]:
    found = []
    for match in _CONDITION.finditer(where):
        field, quoted, bare = match.groups()
        if quoted is not None:
            value = quoted.replace("\\'", "'").replace("''", "'")
        else:
            value = bare.lower() if bare.lower() in ("true", "false") else bare
        found.append((field, value))
    return found
