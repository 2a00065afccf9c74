"""A Python process with a function's handler on its path, as Lambda lays it out (the function's folder, then the
layer's qbo_connect), and only the environment given: for what a handler's import does to a process as a whole
(which modules it loads, the garbage collector), which one test process cannot show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_in_function_process(
    script: str, *, function: str = "refresh", environment: dict[str, str] | None = None
) -> Any:
    """Run the script there; its last line of output, as JSON."""
    folder = ROOT / "functions" / function
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT / "layers" / "qbo_connect")]),
        "LAMBDA_TASK_ROOT": str(folder),
        "QBO_TABLE_NAME": "connections",
        **(environment or {}),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
