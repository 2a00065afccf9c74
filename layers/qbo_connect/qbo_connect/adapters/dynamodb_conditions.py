"""Condition and key-condition expressions for DynamoDB, built from Python:

    Attr("lease_owner").not_exists() | Attr("lease_expires_at").lt(now)
    Key("listing").eq(month) & Key("name").begins_with("app#")

The table adapter (dynamodb_table.py) renders a condition into the request: every attribute name becomes
a `#n` placeholder (so reserved words such as `name` and `status` need no thought) and every value a `:v`
placeholder holding its typed value. The service's own replacement for boto3's builders, which come only
with boto3's import (dynamodb_values.py says why the functions do without it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qbo_connect.adapters.dynamodb_values import to_attribute


class Placeholders:
    """One request's ExpressionAttributeNames and ExpressionAttributeValues, filled as conditions render. It
    starts from the request's own (an update's `:id`) and never takes a placeholder the request already uses."""

    def __init__(self, names: dict[str, str], values: dict[str, Any]) -> None:
        self.names = names
        self.values = values
        self._name_of: dict[str, str] = {}

    def name(self, attribute: str) -> str:
        if attribute not in self._name_of:
            self._name_of[attribute] = self._free("#n", self.names)
            self.names[self._name_of[attribute]] = attribute
        return self._name_of[attribute]

    def value(self, value: Any) -> str:
        placeholder = self._free(":v", self.values)
        self.values[placeholder] = to_attribute(value)
        return placeholder

    @staticmethod
    def _free(prefix: str, taken: dict[str, Any]) -> str:
        index = len(taken)
        while f"{prefix}{index}" in taken:
            index += 1
        return f"{prefix}{index}"


class Condition:
    """A condition not yet rendered: `&`, `|` and `~` combine conditions."""

    __slots__ = ("_render",)

    def __init__(self, render: Callable[[Placeholders], str]) -> None:
        self._render = render

    def render(self, placeholders: Placeholders) -> str:
        return self._render(placeholders)

    def __and__(self, other: Condition) -> Condition:
        return Condition(lambda p: f"({self._render(p)} AND {other._render(p)})")

    def __or__(self, other: Condition) -> Condition:
        return Condition(lambda p: f"({self._render(p)} OR {other._render(p)})")

    def __invert__(self) -> Condition:
        return Condition(lambda p: f"(NOT {self._render(p)})")


class Attr:
    """An attribute in a condition. DynamoDB itself refuses a function a key condition does not allow."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def eq(self, value: Any) -> Condition:
        return self._compare("=", value)

    def ne(self, value: Any) -> Condition:
        return self._compare("<>", value)

    def lt(self, value: Any) -> Condition:
        return self._compare("<", value)

    def lte(self, value: Any) -> Condition:
        return self._compare("<=", value)

    def gt(self, value: Any) -> Condition:
        return self._compare(">", value)

    def gte(self, value: Any) -> Condition:
        return self._compare(">=", value)

    def between(self, low: Any, high: Any) -> Condition:
        return Condition(lambda p: f"{p.name(self._name)} BETWEEN {p.value(low)} AND {p.value(high)}")

    def begins_with(self, prefix: str) -> Condition:
        return Condition(lambda p: f"begins_with({p.name(self._name)}, {p.value(prefix)})")

    def exists(self) -> Condition:
        return Condition(lambda p: f"attribute_exists({p.name(self._name)})")

    def not_exists(self) -> Condition:
        return Condition(lambda p: f"attribute_not_exists({p.name(self._name)})")

    def _compare(self, operator: str, value: Any) -> Condition:
        return Condition(lambda p: f"{p.name(self._name)} {operator} {p.value(value)}")


Key = Attr  # a key condition's attribute: the same builder, as DynamoDB's grammar is the same
