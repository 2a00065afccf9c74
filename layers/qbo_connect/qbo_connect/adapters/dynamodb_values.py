"""Python values to DynamoDB's typed attribute values and back, for the table adapter (dynamodb_table.py).

The functions talk to DynamoDB through botocore's client, not boto3: importing boto3 loads s3transfer and
multiprocessing with it, about 75 million instructions of every cold start for nothing the functions use
(docs/performance.md). These are the conversions boto3's resource would make, for the types the service
stores: numbers are int or Decimal (a float's binary rounding has no place in a conditional write) and
come back as Decimal.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any


def to_attribute(value: Any) -> dict[str, Any]:
    """Errors name the type, never the value: a value can be a token."""
    if isinstance(value, bool):  # before int: a bool is an int
        return {"BOOL": value}
    if value is None:
        return {"NULL": True}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | Decimal):
        return {"N": _number(value)}
    if isinstance(value, bytes | bytearray):
        return {"B": bytes(value)}
    if isinstance(value, Mapping):
        return {"M": to_item(value)}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute(member) for member in value]}
    if isinstance(value, set | frozenset):
        return _set(value)
    if isinstance(value, float):
        raise TypeError("DynamoDB numbers are stored from int or Decimal, not float: convert with Decimal(str(x))")
    raise TypeError(f"no DynamoDB type for a {type(value).__name__}")


def from_attribute(typed: Mapping[str, Any]) -> Any:
    ((kind, raw),) = typed.items()
    if kind in ("S", "BOOL", "B"):
        return raw
    if kind == "N":
        return Decimal(raw)
    if kind == "NULL":
        return None
    if kind == "M":
        return from_item(raw)
    if kind == "L":
        return [from_attribute(member) for member in raw]
    if kind == "NS":
        return {Decimal(member) for member in raw}
    if kind in ("SS", "BS"):
        return set(raw)
    raise TypeError(f"unknown DynamoDB attribute type {kind!r}")


def to_item(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: to_attribute(value) for name, value in values.items()}


def from_item(typed: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {name: from_attribute(value) for name, value in typed.items()}


def _number(value: int | Decimal) -> str:
    """Refused here, not sent, when DynamoDB could not hold it exactly (boto3 refused the same)."""
    if isinstance(value, int):
        value = int(value)  # an int-based enum's own number, not its name
    number = Decimal(value)
    if not number.is_finite():
        raise TypeError("DynamoDB cannot store infinity or NaN")
    digits = len("".join(map(str, number.as_tuple().digits)).strip("0"))  # normalize() would round to 28
    if number and (digits > 38 or not -130 <= number.adjusted() <= 125):
        raise ValueError("DynamoDB numbers hold 38 significant digits, from 1E-130 to under 1E+126")
    return str(value)


def _set(values: set[Any] | frozenset[Any]) -> dict[str, list[Any]]:
    if not values:
        raise ValueError("DynamoDB cannot store an empty set: remove the attribute instead")
    if all(isinstance(member, str) for member in values):
        return {"SS": sorted(values)}
    if all(isinstance(member, int | Decimal) and not isinstance(member, bool) for member in values):
        return {"NS": [_number(member) for member in values]}
    if all(isinstance(member, bytes) for member in values):
        return {"BS": sorted(values)}
    raise TypeError("a DynamoDB set holds strings, numbers or bytes, all of one kind")
