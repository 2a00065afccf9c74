"""Direct invocation: a payload that is not {"connection_id": "..."} is answered invalid_input, touching nothing."""

from __future__ import annotations

import pytest
from qbo_connect.invocation import connection_id_from


@pytest.mark.parametrize(
    "event",
    [
        None,
        [],
        "qbc-1",
        {},
        {"connection": "qbc-1"},
        {"connection_id": None},
        {"connection_id": 42},
        {"connection_id": ["qbc-1"]},
        {"connection_id": ""},
        {"connection_id": "Not An ID"},
        {"connection_id": "../../etc/passwd"},
        {"connection_id": "x" * 500},
    ],
)
def test_bad_payloads_are_answered_invalid_input_and_nothing_is_called(event):
    calls = []

    answer = connection_id_from(event, calls.append)

    assert calls == []
    assert answer["ok"] is False
    assert answer["error"]["code"] == "invalid_input"
    assert "connection" in answer["error"]["message"].lower()
    assert len(answer.get("connection_id", "")) <= 64


def test_a_good_payload_is_answered_by_the_function_it_is_given():
    answer = connection_id_from({"connection_id": "qbc-0123abcd"}, lambda cid: {"ok": True, "connection_id": cid})

    assert answer == {"ok": True, "connection_id": "qbc-0123abcd"}
