"""What a cold start loads before the first request: a handler's import brings neither the AWS SDK, nor the HTTP
stack, nor the X-Ray SDK (runtime.py and observability.py say why); the two consent routes need no router
(web.py). The time it saves is measured by `python -m bench.cold_start` (docs/performance.md)."""

from __future__ import annotations

import pytest
from function_process import run_in_function_process

# Powertools imports botocore's package to register its user agent; the SDK's machinery stays unloaded.
NEVER_AT_IMPORT = [
    "boto3",
    "botocore.session",
    "botocore.client",
    "requests",
    "requests_oauthlib",
    "aws_xray_sdk",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.utilities.data_classes",
]


@pytest.mark.parametrize("function", ["authorize", "callback", "refresh", "test", "token"])
def test_importing_a_handler_loads_no_sdk_and_no_http_stack(function):
    script = (
        "import json, sys\n"
        "import app\n"
        f"print(json.dumps([name for name in {NEVER_AT_IMPORT!r} if name in sys.modules]))\n"
    )
    loaded = run_in_function_process(
        script, function=function, environment={"AWS_LAMBDA_FUNCTION_NAME": f"qbo-connect-{function}"}
    )

    # The refresh and test functions have no HTTP route; the two consent routes answer without a router.
    assert loaded == []


def test_no_module_of_the_layer_loads_boto3_so_no_request_can():
    # The functions create clients with botocore's session (runtime.BotocoreSession) and type DynamoDB's values
    # themselves (adapters/dynamodb_table.py): importing boto3 costs a cold start about 75 million
    # instructions (s3transfer, multiprocessing) for nothing the functions use.
    script = (
        "import importlib, json, pkgutil, sys\n"
        "import qbo_connect\n"
        "for module in pkgutil.walk_packages(qbo_connect.__path__, 'qbo_connect.'):\n"
        "    importlib.import_module(module.name)\n"
        "print(json.dumps([name for name in ('boto3', 's3transfer') if name in sys.modules]))\n"
    )

    assert run_in_function_process(script) == []
