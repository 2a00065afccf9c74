"""The console's Test Connection runs in the admin function, a 30-second Lambda behind API Gateway. Reading the
company's name from Intuit (CompanyInfo) must end within what the invocation leaves, with time to record the
result and answer: a CompanyInfo that hangs (connect 5 s + read 30 s by the HTTP timeouts alone) outlived the
invocation, Lambda stopped it, the console showed API Gateway's bare 503 and no result was recorded. Real time:
Intuit's side holds the answer on an event, and the invocation is given about two seconds for the call."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
import responses
from qbo_connect import intuit, runtime
from qbo_connect.domain.connection_test import RECORD_SECONDS
from qbo_connect.invocation import ANSWER_SECONDS
from test_admin_api import admin_event, admin_function
from test_handlers import CONNECTION_ID, REALM, LambdaContext, stack

__all__ = ["stack"]  # the fixture

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

HUNG_SECONDS = 15.0  # how long Intuit holds CompanyInfo's answer at most (released when the test ends)
LEFT_FOR_THE_CALL = 2.0  # what the invocation leaves for CompanyInfo after answering and recording


def test_the_admin_test_of_a_hung_companyinfo_answers_within_the_invocation_and_records_it(stack):
    stack.create_connection()
    stack.connect()
    release = threading.Event()

    def hung_companyinfo(_request):
        release.wait(HUNG_SECONDS)
        return 200, {"intuit_tid": "1-tid-late"}, json.dumps({"CompanyInfo": {"CompanyName": "Late Inc"}})

    stack.http.remove(responses.GET, intuit.SANDBOX_API_BASE_URL + intuit.company_info_path(REALM))
    stack.http.add_callback(
        responses.GET,
        re.compile(re.escape(intuit.SANDBOX_API_BASE_URL + intuit.company_info_path(REALM)) + r".*"),
        callback=hung_companyinfo,
    )
    seconds = ANSWER_SECONDS + RECORD_SECONDS + LEFT_FOR_THE_CALL
    started = time.monotonic()
    try:
        reply = admin_function.handler(
            admin_event("POST", f"/connections/{CONNECTION_ID}/test", {}),
            LambdaContext(remaining_millis=int(seconds * 1000)),
        )
    finally:
        took = time.monotonic() - started
        release.set()

    assert took < seconds, f"answered after {took:.1f} s: Lambda stops the admin function at {seconds:.1f} s"
    answer = json.loads(reply["body"])
    assert reply["statusCode"] == 200 and answer["ok"] is False, answer
    assert answer["error"]["code"] == "intuit_unavailable" and "did not answer" in answer["error"]["message"]
    recorded = runtime.services().store.get(CONNECTION_ID).last_test
    assert recorded is not None and (recorded.ok, recorded.error_code) == (False, "intuit_unavailable")
