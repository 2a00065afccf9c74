"""The two layers as the build makes them run every function, with nothing else on the path.

layers/qbo_connect/Makefile builds SharedLayer and AwsSdkLayer here as `sam build` does, only for this host's
platform and Python (Lambda's build fetches arm64 wheels for 3.13 at the same pins). Then, in an interpreter
with no site-packages at all, as in Lambda without a runtime SDK to fall back on, each function's handler
is imported and a client of every AWS service the service calls is made: a dependency the layers forgot
(botocore's own six and dateutil, say) or a model trim_sdk_data.py removed fails here, not in Lambda.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from qbo_connect.aws_services import AWS_SERVICES

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "qbo_connect"
HERE = f"{sys.version_info.major}.{sys.version_info.minor}"
FUNCTIONS = sorted(path.name for path in (ROOT / "functions").iterdir() if (path / "app.py").is_file())

IMPORT_AND_CONNECT = """
import importlib, json, sys, botocore.session
app = importlib.import_module("app")
session = botocore.session.get_session()
clients = sorted(
    session.create_client(name, region_name="us-east-1").meta.service_model.service_name for name in sys.argv[1:]
)
print(json.dumps({"handler": callable(app.handler), "botocore": botocore.__file__, "clients": clients}))
"""


@pytest.fixture(scope="module")
def layers(tmp_path_factory) -> dict[str, Path]:
    # The venv's bin first: the Makefile's `python3 -m pip` is one with pip.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    built = {}
    for name in ("SharedLayer", "AwsSdkLayer"):
        artifacts = tmp_path_factory.mktemp(name)
        done = subprocess.run(
            [
                "make",
                "--no-print-directory",
                "-C",
                str(LAYER),
                f"build-{name}",
                f"ARTIFACTS_DIR={artifacts}",
                f"LAMBDA_PLATFORM=manylinux2014_{platform.machine()}",
                f"LAMBDA_PYTHON={HERE}",
                f"BYTECODE_PYTHON={sys.executable}",
            ],
            env=dict(os.environ, PATH=path),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        built[name] = artifacts / "python"
    return built


def test_the_shared_layer_leaves_the_sdk_to_the_sdk_layer(layers):
    assert not (layers["SharedLayer"] / "botocore").exists()
    assert (layers["SharedLayer"] / "qbo_connect").is_dir()
    assert (layers["AwsSdkLayer"] / "botocore").is_dir()
    assert not (layers["AwsSdkLayer"] / "qbo_connect").exists()


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_imports_and_reaches_every_aws_service_on_the_two_layers_alone(layers, function):
    environment = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "functions" / function), str(layers["SharedLayer"]), str(layers["AwsSdkLayer"])]
        ),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "qbo-connect",
        "QBO_TABLE_NAME": "connections",
    }
    done = subprocess.run(
        [sys.executable, "-S", "-c", IMPORT_AND_CONNECT, *sorted(AWS_SERVICES)],
        env=environment,
        cwd=ROOT / "functions" / function,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["handler"] is True
    assert answer["botocore"].startswith(str(layers["AwsSdkLayer"]))
    assert answer["clients"] == sorted(AWS_SERVICES)
