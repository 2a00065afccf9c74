"""A fresh clone installs what CI tested: every dependency pyproject.toml names is pinned in constraints.txt."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned to one version (run `make lock`)"
            pins[_name(name)] = version
    return pins


def test_every_workstation_and_test_dependency_is_pinned_to_one_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {_name(r) for r in [*project["dependencies"], *extras["local"], *extras["test"]]} - {"qbo-connect"}
    pins = _pins(ROOT / "constraints.txt")

    missing = sorted(wanted - pins.keys())
    assert not missing, f"not pinned in constraints.txt: {missing}: run `make lock` and commit it"


def test_the_tools_are_pinned_to_one_version() -> None:
    tools = re.search(r"^TOOL_PACKAGES := (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1).split()
    pins = _pins(ROOT / "constraints-tools.txt")

    assert tools and not sorted(set(tools) - pins.keys())


def test_the_layers_ship_the_versions_the_tests_run() -> None:
    # layers/qbo_connect/requirements*.txt (the service's own boto3 and botocore too) against constraints.txt.
    pins = _pins(ROOT / "constraints.txt")
    shared = _pins(ROOT / "layers" / "qbo_connect" / "requirements.txt")
    sdk = _pins(ROOT / "layers" / "qbo_connect" / "requirements-sdk.txt")

    assert {"boto3", "botocore"} <= sdk.keys()
    layers = shared | sdk
    assert {name: version for name, version in layers.items() if pins.get(name) != version} == {}
