"""Cold start: a fresh Python process imports a handler module (and runs its module-level set-up),
side by side with the floor: a process that only imports boto3 and creates a DynamoDB and a
Secrets Manager client.

Each sample is one new interpreter; the time is taken inside it, from just before the import to just
after, so interpreter start-up (the same for every process) is left out. Runs are interleaved
(floor, then the four functions in a shuffled order, repeated) so that a noisy neighbour slows all
of them alike, and the figure per function is the median.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "qbo_connect"
FUNCTIONS = ("authorize", "callback", "refresh", "test")
FLOOR = "floor"
RATIO_LIMIT = 1.15

_MEASURE = """
import json, sys, time
started = time.perf_counter()
{body}
print(json.dumps({{"seconds": time.perf_counter() - started}}))
"""
_FLOOR_BODY = "import boto3\nboto3.client('dynamodb')\nboto3.client('secretsmanager')"
_HANDLER_BODY = "import app"


def lambda_environment(function: str) -> dict[str, str]:
    """What Lambda sets for a function of template.yaml (tracing active, so the tracer is on)."""
    name = f"qbo-connect-{function.capitalize()}Function"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LAMBDA_TASK_ROOT": str(ROOT / "functions" / function) if function != FLOOR else str(ROOT),
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "QBO_TABLE_NAME": "qbo-connect-ConnectionsTable",
        "QBO_SECRET_PREFIX": "qbo-connect/qbo-connect/",
        "QBO_SIGNING_KEY_SECRET_ID": "qbo-connect/qbo-connect/signing-key",
        "QBO_EVENT_BUS_NAME": "default",
        "QBO_REFRESH_MARGIN_SECONDS": "900",
        "QBO_REFRESH_PERIOD_SECONDS": "300",
        "QBO_SECRETS_WRITE_BUDGET": "40",
        "QBO_WRITE_BUDGET_SHARES": "5",
        "POWERTOOLS_SERVICE_NAME": "qbo-connect",
        "POWERTOOLS_METRICS_NAMESPACE": "QboConnect",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
        "POWERTOOLS_LOGGER_LOG_EVENT": "false",
    }
    if function == "refresh":
        env["QBO_REFRESH_QUEUE_URL"] = "https://sqs.us-east-1.amazonaws.com/123456789012/qbo-connect-refresh"
    if function != FLOOR:
        # Lambda's sys.path: the function's folder, then the layer (/opt/python), then the runtime's.
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions" / function), str(LAYER)])
    return env


def sample(target: str, python: str = sys.executable) -> float:
    body = _FLOOR_BODY if target == FLOOR else _HANDLER_BODY
    cwd = ROOT / "functions" / target if target != FLOOR else ROOT
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [python, "-c", _MEASURE.format(body=body)],
        env=lambda_environment(target),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cold start of {target} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


@dataclass(frozen=True)
class ColdStart:
    function: str
    median_ms: float
    floor_ms: float
    samples: int

    @property
    def ratio(self) -> float:
        return self.median_ms / self.floor_ms

    @property
    def holds(self) -> bool:
        return self.ratio <= RATIO_LIMIT


def run(rounds: int = 15, *, seed: int | None = None) -> list[ColdStart]:
    rng = random.Random(seed)  # noqa: S311 - run order, not security
    times: dict[str, list[float]] = {target: [] for target in (FLOOR, *FUNCTIONS)}
    for target in (FLOOR, *FUNCTIONS):  # warm the bytecode caches and the page cache first
        sample(target)
    for _ in range(rounds):
        order = list(FUNCTIONS)
        rng.shuffle(order)
        for target in (FLOOR, *order):
            times[target].append(sample(target))
    floor = statistics.median(times[FLOOR]) * 1000
    return [ColdStart(f, statistics.median(times[f]) * 1000, floor, rounds) for f in FUNCTIONS]


def layer_size(build_dir: Path = ROOT / ".aws-sam" / "build" / "SharedLayer") -> int | None:
    """Bytes in the built layer (`make build`), or None when it has not been built."""
    if not build_dir.is_dir():
        return None
    return sum(path.stat().st_size for path in build_dir.rglob("*") if path.is_file())


if __name__ == "__main__":
    results = run(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
    print(f"floor {results[0].floor_ms:.0f} ms")
    for result in results:
        print(
            f"{result.function:10} {result.median_ms:6.0f} ms  x{result.ratio:.2f}  {'ok' if result.holds else 'ABOVE'}"
        )
