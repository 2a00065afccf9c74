"""The local stack as `make dev` runs it, with the benchmarks' changes to moto (bench/moto_server.py: per-call work
that grows with what moto holds, which AWS does not do): `python -m bench.patched_stack up ...`, for a benchmark that
drives the whole stack, so that its figures measure qbo-connect and not moto."""

from __future__ import annotations

import sys

from qbo_local.__main__ import main

import bench.moto_server  # noqa: F401 - its changes to moto are made at import

if __name__ == "__main__":
    sys.exit(main())
