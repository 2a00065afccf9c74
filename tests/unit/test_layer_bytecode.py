"""The layer ships bytecode for the runtime's Python (layers/qbo_connect/Makefile, `bytecode`): Lambda cannot
write a cache under /opt, so without it every cold start compiles the layer (docs/performance.md). Here the
running interpreter stands in for the runtime's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "qbo_connect"
HERE = f"{sys.version_info.major}.{sys.version_info.minor}"
CACHE_TAG = sys.implementation.cache_tag
UNCHECKED_HASH = 0b01  # PEP 552: hash-based, source not checked


def _layer_contents(tmp_path: Path) -> Path:
    python = tmp_path / "python"
    shutil.copytree(LAYER / "qbo_connect", python / "qbo_connect", ignore=shutil.ignore_patterns("__pycache__"))
    stale = python / "qbo_connect" / "__pycache__"
    stale.mkdir()
    (stale / "settings.cpython-39.pyc").write_bytes(b"from another Python")
    return python


def _bytecode(tmp_path: Path, *settings: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(LAYER), "bytecode", f"ARTIFACTS_DIR={tmp_path}", *settings],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_every_module_gets_unchecked_hash_bytecode_for_the_runtimes_python(tmp_path):
    python = _layer_contents(tmp_path)

    done = _bytecode(tmp_path, f"LAMBDA_PYTHON={HERE}", f"BYTECODE_PYTHON={sys.executable}")

    assert done.returncode == 0, done.stderr
    assert f"bytecode compiled for Python {HERE}" in done.stdout
    sources = sorted(python.rglob("*.py"))
    assert sources
    for source in sources:
        compiled = source.parent / "__pycache__" / f"{source.stem}.{CACHE_TAG}.pyc"
        header = compiled.read_bytes()[:8]
        assert int.from_bytes(header[4:8], "little") == UNCHECKED_HASH, compiled
    assert not (python / "qbo_connect" / "__pycache__" / "settings.cpython-39.pyc").exists()


def test_without_a_python_of_the_runtimes_version_the_layer_is_built_without_bytecode_and_says_so(tmp_path):
    python = _layer_contents(tmp_path)

    done = _bytecode(tmp_path, "LAMBDA_PYTHON=3.99", f"BYTECODE_PYTHON={sys.executable}")

    assert done.returncode == 0, done.stderr
    assert "WARNING no Python 3.99" in done.stderr and "every cold start compiles it" in done.stderr
    assert list(python.rglob("*.pyc")) == []
