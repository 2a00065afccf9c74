"""`@record`: a dataclass whose methods cost a cold start nothing to define.

`dataclasses.dataclass` writes each class's `__init__`, `__repr__`, `__eq__` (and, frozen, `__setattr__`,
`__delattr__` and `__hash__`) as source text and compiles it when the class is defined: about 3 million
instructions a frozen class, and a function's first request defines some 25 of them: about 95 million,
8% of its cold start (docs/performance.md). `record` lets `dataclass` collect the fields only, so `dataclasses.fields`,
`replace` and `asdict` work as ever, and gives every record the same methods, written once here, which read
the class's fields. Fields take `dataclasses.field` (default, default_factory, repr, compare); a
`__post_init__` runs after `__init__`, as in a dataclass. To `dataclasses` a record looks unfrozen
(`__dataclass_params__`): a dataclass may not subclass a frozen record, and none does.

    @record                     # frozen, as dataclass(frozen=True)
    @record(frozen=False)       # as dataclass()
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T", bound=type)


class _Shape:
    """What the shared methods need of one record class, computed once when it is defined."""

    __slots__ = ("compared", "defaults", "factories", "names", "shown")

    def __init__(self, fields: tuple[dataclasses.Field[Any], ...]) -> None:
        for f in fields:
            if not f.init or f.hash is not None or f.kw_only is True:
                raise TypeError(f"record field {f.name!r}: init=False, hash= and kw_only= are not supported")
        self.names = tuple(f.name for f in fields)
        self.defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
        self.factories = {f.name: f.default_factory for f in fields if f.default_factory is not dataclasses.MISSING}
        self.shown = tuple(f.name for f in fields if f.repr)
        self.compared = tuple(f.name for f in fields if f.compare)


@overload
def record(cls: T, /) -> T: ...
@overload
def record(*, frozen: bool = True) -> Callable[[T], T]: ...
@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: T | None = None, /, *, frozen: bool = True) -> T | Callable[[T], T]:
    def make(cls: T) -> T:
        cls = dataclasses.dataclass(init=False, repr=False, eq=False)(cls)
        cls.__record_shape__ = _Shape(dataclasses.fields(cls))
        methods: dict[str, Any] = {"__init__": _init, "__repr__": _repr, "__eq__": _eq}
        if frozen:
            methods.update(__setattr__=_refuse_assignment, __delattr__=_refuse_deletion, __hash__=_hash)
        else:
            methods["__hash__"] = None  # mutable and compared by value: unhashable, as a dataclass is
        for name, method in methods.items():
            if name not in vars(cls) or (name == "__hash__" and vars(cls)[name] is None):  # the class's own win
                setattr(cls, name, method)
        return cls

    return make(cls) if cls is not None else make


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    kind = type(self)
    shape: _Shape = kind.__record_shape__
    if len(args) > len(shape.names):
        raise TypeError(f"{kind.__name__}() takes {len(shape.names)} arguments, {len(args)} were given")
    values = dict(zip(shape.names, args, strict=False))
    for name, value in kwargs.items():
        if name not in shape.names:
            raise TypeError(f"{kind.__name__}() got an unexpected keyword argument {name!r}")
        if name in values:
            raise TypeError(f"{kind.__name__}() got multiple values for argument {name!r}")
        values[name] = value
    missing = []
    for name in shape.names:  # one pass: the given value, else the default, else the factory's
        if name in values:
            value = values[name]
        elif name in shape.defaults:
            value = shape.defaults[name]
        elif name in shape.factories:
            value = shape.factories[name]()
        else:
            missing.append(name)
            continue
        object.__setattr__(self, name, value)
    if missing:
        raise TypeError(f"{kind.__name__}() missing required argument(s): {', '.join(map(repr, missing))}")
    post_init = getattr(self, "__post_init__", None)
    if post_init is not None:
        post_init()


def _repr(self: Any) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in type(self).__record_shape__.shown)
    return f"{type(self).__qualname__}({shown})"


def _compared(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, name) for name in type(self).__record_shape__.compared)


def _eq(self: Any, other: object) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _compared(self) == _compared(other)


def _hash(self: Any) -> int:
    return hash(_compared(self))


def _refuse_assignment(self: Any, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _refuse_deletion(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
