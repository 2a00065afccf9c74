"""`@record` behaves as `@dataclass` does for what the service's value classes use: construction (positional,
keyword, defaults, factories, __post_init__, clear errors), repr without hidden fields, equality and hashing on
compared fields, immutability, and dataclasses' own fields/replace/asdict."""

from __future__ import annotations

import dataclasses
from dataclasses import FrozenInstanceError, asdict, field, replace

import pytest
from qbo_connect.records import record


def _body():
    """The same class body for both decorators."""

    class Tokens:
        """Doc."""

        subject: str
        secret: str = field(repr=False)
        expires_at: int = 0
        scopes: tuple[str, ...] = field(default_factory=tuple)
        note: str | None = field(default=None, compare=False)

    return Tokens


Record = record(_body())
Dataclass = dataclasses.dataclass(frozen=True)(_body())
MutableRecord = record(frozen=False)(_body())
MutableDataclass = dataclasses.dataclass(_body())


@pytest.mark.parametrize(("ours", "theirs"), [(Record, Dataclass), (MutableRecord, MutableDataclass)])
def test_a_record_is_built_shown_and_compared_as_a_dataclass_is(ours, theirs):
    for args, kwargs in [(("alice", "s3cret"), {}), (("alice",), {"secret": "s3cret", "expires_at": 5})]:
        a, b = ours(*args, **kwargs), theirs(*args, **kwargs)

        assert repr(a).replace("Record", "") == repr(b).replace("Dataclass", "")
        assert "s3cret" not in repr(a)
        assert asdict(a) == asdict(b)
        assert [f.name for f in dataclasses.fields(a)] == [f.name for f in dataclasses.fields(b)]
    assert ours("a", "s", note="x") == ours("a", "s", note="y")  # compare=False
    assert ours("a", "s") != ours("a", "t")
    assert ours("a", "s").__eq__(theirs("a", "s")) is NotImplemented
    assert ours("a", "s").scopes == () and ours("a", "s", scopes=("x",)).scopes == ("x",)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, r"missing required argument\(s\): 'subject', 'secret'"),
        (("a", "s", 1, (), None, "extra"), {}, "takes 5 arguments, 6 were given"),
        (("a", "s"), {"expiry": 1}, "unexpected keyword argument 'expiry'"),
        (("a", "s"), {"subject": "b"}, "multiple values for argument 'subject'"),
    ],
)
def test_wrong_arguments_are_refused_as_python_refuses_them(args, kwargs, message):
    with pytest.raises(TypeError, match=message):
        Record(*args, **kwargs)


def test_a_frozen_record_is_immutable_and_hashable_on_its_compared_fields():
    tokens = Record("a", "s", note="x")

    with pytest.raises(FrozenInstanceError):
        tokens.subject = "b"
    with pytest.raises(FrozenInstanceError):
        del tokens.subject
    assert hash(tokens) == hash(Record("a", "s", note="y"))
    assert replace(tokens, expires_at=9) == Record("a", "s", 9) and tokens.expires_at == 0


def test_a_mutable_record_can_change_and_is_unhashable_like_a_dataclass():
    tokens = MutableRecord("a", "s")
    tokens.expires_at = 3

    assert tokens == MutableRecord("a", "s", 3)
    with pytest.raises(TypeError, match="unhashable"):
        hash(tokens)


def test_post_init_runs_after_the_fields_are_set_and_may_refuse():
    @record
    class Window:
        start: int
        end: int

        def __post_init__(self) -> None:
            if self.end < self.start:
                raise ValueError("end before start")

    assert Window(1, 2).end == 2
    with pytest.raises(ValueError, match="end before start"):
        Window(2, 1)


def test_a_method_the_class_defines_itself_is_kept():
    @record
    class Shown:
        value: str

        def __repr__(self) -> str:
            return "Shown(...)"

    assert repr(Shown("x")) == "Shown(...)"
