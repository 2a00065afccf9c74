"""Trim AwsSdkLayer's botocore to the models of the AWS services the functions call (Makefile, build-AwsSdkLayer).

    python3 trim_sdk_data.py ARTIFACTS_DIR/python

botocore's first client of a process lists every service folder it has a model for (over 400: thousands
of stat calls) and reads `endpoints.json`, the legacy endpoints of every service in every partition
(1.2 MB of JSON); a cold start paid both, about 60 ms, for services it never calls. This keeps the
folders of qbo_connect.aws_services (and the credential providers' services), keeps only their entries
in `endpoints.json`, and drops the documentation examples. Nothing else of botocore changes: its
endpoint rule sets, partitions and retry rules stay whole. Standard library only: it runs on the build
host's python3, whatever is installed there.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

from qbo_connect.aws_services import AWS_SERVICES, CREDENTIAL_SERVICES  # this script's folder is on sys.path

KEPT = AWS_SERVICES | CREDENTIAL_SERVICES


def _megabytes(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20


def _endpoint_prefix(service: Path) -> str:
    """The service's key in endpoints.json, from its newest model's metadata."""
    newest = sorted(version for version in service.iterdir() if version.is_dir())[-1]
    plain, packed = newest / "service-2.json", newest / "service-2.json.gz"
    model = json.loads(plain.read_bytes() if plain.exists() else gzip.decompress(packed.read_bytes()))
    return model["metadata"].get("endpointPrefix", service.name)


def trim(site: Path) -> str:
    data = site / "botocore" / "data"
    if not data.is_dir():
        raise SystemExit(f"trim_sdk_data: no botocore in {site}: install boto3 and botocore there first")
    missing = sorted(name for name in KEPT if not (data / name).is_dir())
    if missing:
        raise SystemExit(f"trim_sdk_data: this botocore has no model for {missing}: pin a newer one")
    before = _megabytes(data)
    for folder in data.iterdir():
        if folder.is_dir() and folder.name not in KEPT:
            shutil.rmtree(folder)
    for example in data.glob("*/*/examples-1.json"):
        example.unlink()

    prefixes = {_endpoint_prefix(data / name) for name in KEPT}
    endpoints_file = data / "endpoints.json"
    endpoints = json.loads(endpoints_file.read_bytes())
    for partition in endpoints["partitions"]:
        partition["services"] = {key: value for key, value in partition["services"].items() if key in prefixes}
    endpoints_file.write_text(json.dumps(endpoints, separators=(",", ":")), encoding="utf-8")
    return f"{len(KEPT)} services kept, botocore's data {before:.1f} MiB -> {_megabytes(data):.1f} MiB"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(f"AwsSdkLayer: {trim(Path(sys.argv[1]))}")
