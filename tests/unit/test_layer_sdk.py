"""The layer's own boto3 and botocore, trimmed to the models of the services the functions call
(layers/qbo_connect/Makefile, `sdk-data`): every client the service makes still works on it, the
400 other services' models and endpoints are gone, and a client of a service outside the list fails
here as it would in Lambda. Here the virtual environment's botocore stands in for the pinned wheel
(test_dependency_pins checks that they are the same version)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from qbo_connect.aws_services import AWS_SERVICES, CREDENTIAL_SERVICES

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "qbo_connect"
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])

# In a fresh interpreter on the trimmed SDK: one client of each service, and where botocore came from.
CLIENTS = """
import json, sys, botocore.session
session = botocore.session.get_session()
made = {}
for name in sys.argv[1:]:
    try:
        client = session.create_client(name, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
        made[name] = client.meta.service_model.service_name
    except Exception as error:
        made[name] = type(error).__name__
print(json.dumps({"botocore": botocore.__file__, "made": made}))
"""


def _trim(artifacts: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(LAYER), "sdk-data", f"ARTIFACTS_DIR={artifacts}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _copy_botocore(artifacts: Path) -> Path:
    site = artifacts / "python"
    shutil.copytree(SITE_PACKAGES / "botocore", site / "botocore", ignore=shutil.ignore_patterns("__pycache__"))
    return site


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    artifacts = tmp_path_factory.mktemp("layer")
    site = _copy_botocore(artifacts)
    return site, _trim(artifacts)


def _clients_on(site: Path, *services: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-S", "-c", CLIENTS, *services],
        env={"PYTHONPATH": f"{site}:{SITE_PACKAGES}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


def test_every_service_the_functions_call_gets_a_working_client_from_the_trimmed_botocore(trimmed):
    site, done = trimmed
    assert done.returncode == 0, done.stderr
    assert f"{len(AWS_SERVICES | CREDENTIAL_SERVICES)} services kept" in done.stdout

    answer = _clients_on(site, *sorted(AWS_SERVICES))

    assert answer["botocore"].startswith(str(site))
    assert answer["made"] == {name: name for name in AWS_SERVICES}


def test_no_other_service_is_left_in_botocores_models_or_its_endpoints(trimmed):
    site, _ = trimmed
    data = site / "botocore" / "data"

    folders = {folder.name for folder in data.iterdir() if folder.is_dir()}
    assert folders == AWS_SERVICES | CREDENTIAL_SERVICES
    assert not list(data.glob("*/*/examples-1.json"))
    endpoints = json.loads((data / "endpoints.json").read_text())
    services = {name for partition in endpoints["partitions"] for name in partition["services"]}
    assert {"dynamodb", "secretsmanager", "sqs", "kms", "lambda", "cognito-idp", "events"} <= services
    assert not services & {"s3", "ec2", "iam"}
    assert _clients_on(site, "s3")["made"] == {"s3": "UnknownServiceError"}


def test_a_botocore_without_a_model_the_functions_need_fails_the_build_and_says_which(tmp_path):
    site = _copy_botocore(tmp_path)
    shutil.rmtree(site / "botocore" / "data" / "kms")

    done = _trim(tmp_path)

    assert done.returncode != 0
    assert "this botocore has no model for ['kms']: pin a newer one" in done.stderr
    assert (site / "botocore" / "data" / "ec2").is_dir()  # nothing trimmed
