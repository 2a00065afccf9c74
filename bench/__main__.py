"""`make bench`: run every benchmark, print the table, write docs/performance.md.

    .venv/bin/python -m bench            # everything (about twenty minutes on a two-core machine)
    .venv/bin/python -m bench --quick    # smaller runs to try the machinery (not for the figures)

The throughput, on-demand, due-finding, token-read and webhook runs each get a fresh interpreter (they
set up their own AWS and environment); their handler logs go to bench/out/*.log.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import cold_start, cost, report

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "performance.md"


WEBHOOK_TIMEOUT_SECONDS = 900
# What an interrupted part gets to stop what it started (a local stack stops in seconds).
INTERRUPTED_GRACE_SECONDS = 60


def _webhook_answer(args: tuple[str, ...]) -> dict[str, Any]:
    """The webhook part, or a failing row saying why it has no figures: the last part of a run must not throw
    away the twenty minutes of figures before it."""
    try:
        return _run_module("bench.webhook_answer", list(args), timeout=WEBHOOK_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        why = f"not measured: it ran over {WEBHOOK_TIMEOUT_SECONDS} s (bench/out/webhook_answer.log)"
    except RuntimeError as failed:
        why = f"not measured: {failed}"
    row = {"metric": "webhook answer", "result": why, "floor": "p99 < 3,000 ms (Intuit's limit)", "holds": False}
    return {"rows": [row], "sizes": []}


def _run_module(module: str, args: list[str], timeout: float) -> Any:
    """Run `python -m module args` and return the JSON on its last stdout line; its stderr goes to bench/out."""
    OUT.mkdir(exist_ok=True)
    log = OUT / f"{module.rsplit('.', 1)[-1]}.log"
    env = dict(os.environ, POWERTOOLS_LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
    with log.open("w", encoding="utf-8") as stderr:
        returncode, stdout = run_interruptibly([sys.executable, "-m", module, *args], env, stderr, timeout)
    if returncode != 0:
        raise RuntimeError(f"{module} failed (exit {returncode}): see {log.relative_to(ROOT)}")
    return json.loads(stdout.strip().splitlines()[-1])


def run_interruptibly(command: list[str], env: dict[str, str], stderr: Any, timeout: float) -> tuple[int, str]:
    """Run the command; past `timeout`, interrupt it (SIGINT) so that its own clean-up runs, and raise
    TimeoutExpired. A part that runs the local stack starts it in a session of its own (background_stack):
    killed outright, as subprocess.run's timeout does, it left the whole stack running behind it."""
    with subprocess.Popen(  # noqa: S603 - our interpreter and our module
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        # A shell runs a background job (`make bench &`) with SIGINT ignored, and a Python started so never
        # turns SIGINT into KeyboardInterrupt: the part must get it as a Python started in a terminal does.
        preexec_fn=functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL),
    ) as process:
        try:
            stdout, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            try:
                process.communicate(timeout=INTERRUPTED_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
            raise
    return process.returncode, stdout


def _layer_is_stale(built: Path) -> bool:
    if not built.is_dir():
        return True
    built_at = built.stat().st_mtime
    sources = [p for p in (ROOT / "layers" / "qbo_connect").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return any(p.stat().st_mtime > built_at for p in sources)


def layer_size() -> dict[str, Any]:
    """The built layers' sizes; `make build` first when the layers' sources are newer than the build."""
    built = ROOT / ".aws-sam" / "build" / "SharedLayer"
    rebuilt = False
    if _layer_is_stale(built):
        done = subprocess.run(
            ["make", "--no-print-directory", "build"],  # noqa: S607 - make from PATH, as a developer runs it
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            return {"bytes": None, "note": "make build failed: " + (done.stderr.strip().splitlines() or ["?"])[-1]}
        rebuilt = True
    sizes = {"rebuilt": rebuilt}
    for name, prefix in (("SharedLayer", ""), ("AwsSdkLayer", "sdk_")):
        folder = built.parent / name
        size = cold_start.layer_size(folder)
        sizes |= {
            f"{prefix}bytes": size,
            f"{prefix}files": sum(1 for p in folder.rglob("*") if p.is_file()) if size else 0,
        }
    return sizes


def machine() -> dict[str, Any]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gb = None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total_kb = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        memory_gb = round(total_kb / 1024 / 1024, 1)
    import boto3
    import moto

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "boto3": boto3.__version__,
        "moto": moto.__version__,
        "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def cost_results(measured: dict[str, Any]) -> dict[str, Any]:
    """The cost model with the calls per refresh the throughput run counted, per policy, and the scale model."""
    inputs = cost.CostInputs(
        secrets_calls=sum(v for k, v in measured["function_calls"].items() if k.startswith("secretsmanager."))
        / measured["refreshed"],
        dynamodb_updates=measured["function_calls"].get("dynamodb.UpdateItem", 0) / measured["refreshed"],
        sqs_requests=measured["sweep_calls"].get("sqs.SendMessageBatch", 0) / measured["refreshed"]
        + measured["event_source_calls_per_refresh"],
    )
    model = cost.model(inputs)
    return {
        "inputs": asdict(inputs),
        "model": asdict(model),
        "per_connection_month": model.per_connection_month,
        "per_policy": cost.per_policy(inputs),
        "ceiling": asdict(cost.ceiling()),
        "million_mixed": cost.PolicyMix(1_000_000, 0.05).as_dict(),
    }


@dataclass(frozen=True)
class Plan:
    """What each part runs: the full benchmark's sizes, or the quick ones (small, to try the machinery)."""

    cold_start_rounds: int = 11
    count_instructions: bool = True  # one callgrind process per function and kind (minutes), when valgrind is here
    due_finding: tuple[str, ...] = ()  # bench.due_finding's defaults: 1,000 / 10,000 / 100,000 stored
    throughput: tuple[str, ...] = ()  # bench.throughput's defaults: a quarter region, 10,000 due, two profiles
    on_demand: tuple[str, ...] = ()  # bench.on_demand's defaults: 400 cold requests, 50 shared connections
    webhook: tuple[str, ...] = ()

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            cold_start_rounds=3,
            count_instructions=False,
            due_finding=("1000", "5000"),
            throughput=("--slice", "0.1", "2000", "2000:long_tail"),
            on_demand=("40", "5"),
            webhook=("--quick",),
        )

    def describe(self, part: str) -> str:
        """The sizes a part runs, for its progress line."""
        from bench import due_finding, on_demand, throughput

        if part == "due_finding":
            stored = [int(s) for s in self.due_finding] or list(due_finding.STORED)
            return " / ".join(f"{n:,}" for n in stored) + f" stored, {due_finding.DUE} due of each policy"
        if part == "throughput":
            share, runs = throughput.parse_runs(list(self.throughput))
            listed = ", ".join(f"{size:,} due ({profile})" for size, profile in runs)
            return f"{listed} in a region, run as a {share:g} slice"
        if part == "on_demand":
            sizes = [int(s) for s in self.on_demand] or [
                on_demand.LATENCY_CONNECTIONS,
                on_demand.CONCURRENT_CONNECTIONS,
            ]
            return f"{sizes[0]:,} cold requests, {sizes[1]:,} connections asked by {on_demand.WORKFLOWS} at once"
        return ""


def write_outputs(results: dict[str, Any], *, document: bool) -> int:
    """Print the table, write results.json (and docs/performance.md); 1 if a floor does not hold."""
    OUT.mkdir(exist_ok=True)
    raw = OUT / ("results.json" if document else "quick-results.json")  # a quick run keeps the real figures
    raw.write_text(json.dumps(results, indent=2), encoding="utf-8")
    rows = report.rows(results)
    print(report.table(rows))
    print(f"\n{results['elapsed_seconds']:.0f} s in all; raw figures in {raw.relative_to(ROOT)}")
    if document:
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(report.document(results, rows), encoding="utf-8")
        print(f"wrote {DOC.relative_to(ROOT)}")
    failed = [row for row in rows if row.holds is False]
    for row in failed:
        print(f"FLOOR NOT MET: {row.metric}: {row.result} (floor {row.floor})", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs to try the machinery; writes no document")
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild the table and the document from bench/out/results.json"
    )
    args = parser.parse_args(argv)
    if args.report_only:
        results = json.loads((OUT / "results.json").read_text(encoding="utf-8"))
        results["cost"] = cost_results(results["throughput"][0])
        return write_outputs(results, document=True)
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine()}
    plan = Plan.quick() if args.quick else Plan()

    def step(name: str) -> None:
        print(f"[{time.monotonic() - started:5.0f} s] {name}", file=sys.stderr, flush=True)

    step("layer size (make build when the layer changed)")
    results["layer"] = layer_size()
    step(
        "cold start: four functions' first requests, their two floors and two variants, interleaved, "
        f"{plan.cold_start_rounds} rounds" + (", then their instructions" if plan.count_instructions else "")
    )
    cold_starts = cold_start.run(plan.cold_start_rounds, count_instructions=plan.count_instructions)
    results["cold_start"] = [r.as_json() for r in cold_starts]
    step("token read: cached and cold")
    results["token_read"] = _run_module("bench.token_read", [], timeout=300)
    step(f"finding due connections: {plan.describe('due_finding')}")
    results["due_finding"] = _run_module("bench.due_finding", list(plan.due_finding), timeout=600)
    step(f"refresh throughput: {plan.describe('throughput')}")
    results["throughput"] = _run_module("bench.throughput", list(plan.throughput), timeout=2400)
    step(f"on-demand token requests: {plan.describe('on_demand')}")
    results["on_demand"] = _run_module("bench.on_demand", list(plan.on_demand), timeout=1200)
    if (ROOT / "bench" / "webhook_answer.py").is_file():
        step("webhook answer time: signed deliveries of 1 to 19,000 changes")
        results["webhook_answer"] = _webhook_answer(plan.webhook)
    results["cost"] = cost_results(results["throughput"][0])
    results["machine"]["load_average_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results["elapsed_seconds"] = round(time.monotonic() - started, 1)

    return write_outputs(results, document=not args.quick)


if __name__ == "__main__":
    sys.exit(main())
