"""Cold start: what a caller waits for when a new Lambda container serves its request.

Per function, a fresh Python process imports the handler (Lambda's init) and serves one realistic
first request (bench/cold_world.py says which), against moto and the Intuit emulator running in
processes of their own. Its floor is a fresh process that imports boto3 (and requests, when the
function calls Intuit), creates the clients the function used and makes exactly the AWS and HTTP
calls the function's first request made, with no service code: what the same I/O costs at the least.

Which calls: each function's first request is run once with every AWS call (operation and final
parameters) and HTTP request recorded (bench/cold_child.py); the floor replays that recording, with
Intuit's single-use values (a code, a refresh token) swapped for fresh ones, and each run checks once
that a recorded floor makes exactly the recorded calls. Both sides start from the same fixture
state, put back before every sample.

Time is taken in this process, from just before the child process is started to the moment its
report of the answer arrives: interpreter start-up included, for both sides alike. Import-only is the
same clock stopped when the handler module is imported (the floor: boto3 imported and its clients
created). Every sample is a new process; each round runs the four functions and their four floors in
a shuffled order, after one warm-up round (bytecode and page caches); figures are medians.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.cold_world import FUNCTIONS, LAYER, ROOT, Sample, World, world

CHILD = Path(__file__).resolve().parent / "cold_child.py"
RATIO_LIMIT = 1.0
FLOOR = "floor"
# What each function's first request must answer (the recording is checked against it, every sample
# against the recording).
EXPECTED_ANSWERS: dict[str, list[dict[str, Any]]] = {
    "authorize": [{"statusCode": 302}],
    "callback": [{"statusCode": 200}],
    "refresh": [{"due": 1, "enqueued": 1}, {"batchItemFailures": 0}],
    "test": [{"ok": True}],
}


@dataclass(frozen=True)
class Run:
    """One measured process: milliseconds from its start to each milestone, and what each answer was."""

    imported_ms: float
    answered_ms: list[float]
    reports: list[dict[str, Any]]

    @property
    def answers(self) -> list[dict[str, Any]]:
        return [report.get("summary", {}) for report in self.reports]

    @property
    def first_request_ms(self) -> float:
        return self.answered_ms[-1]


@dataclass
class Recording:
    function: str
    calls: list[dict[str, Any]]
    answers_after: list[int]  # calls made when each invocation answered
    single_use: dict[str, str]
    snapshot: dict[str, dict[str, Any] | None]  # table items the calls touched, as before them

    def floor_spec(self, single_use_now: dict[str, str]) -> dict[str, Any]:
        return floor_spec(self.calls, self.answers_after, self.single_use, single_use_now)

    def summary(self) -> dict[str, Any]:
        aws = Counter(f"{c['service']}.{c['operation']}" for c in self.calls if c["kind"] == "aws")
        http = Counter(f"{c['method']} {_path_kind(c['url'])}" for c in self.calls if c["kind"] == "http")
        return {"aws": dict(aws), "http": dict(http)}


def _path_kind(url: str) -> str:
    path = url.split("://", 1)[-1].split("/", 1)[-1].split("?")[0]
    return "/" + "/".join(part for part in path.split("/")[:4] if part)


def services_in_order(calls: list[dict[str, Any]]) -> list[str]:
    """The AWS services the calls use, each once, in the order of first use."""
    seen: dict[str, None] = {}
    for call in calls:
        if call["kind"] == "aws":
            seen.setdefault(call["service"], None)
    return list(seen)


def floor_spec(
    calls: list[dict[str, Any]],
    answers_after: list[int],
    recorded_single_use: dict[str, str],
    single_use_now: dict[str, str],
) -> dict[str, Any]:
    """What a floor process does: create the recorded calls' clients, then make the calls in order,
    each recorded single-use value replaced by the one valid now."""
    text = json.dumps(calls)
    for name, old in recorded_single_use.items():
        if old not in text:
            raise ValueError(f"the recorded calls never send the {name} they spent")
        text = text.replace(old, single_use_now[name])
    return {"services": services_in_order(calls), "calls": json.loads(text), "answers_after": list(answers_after)}


def touched_keys(calls: list[dict[str, Any]]) -> set[str]:
    """The table keys the recorded DynamoDB calls name (GetItem, PutItem, UpdateItem, DeleteItem...)."""
    keys: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            pk = value.get("pk")
            if isinstance(pk, dict) and isinstance(pk.get("S"), str) and len(pk) == 1:
                keys.add(pk["S"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for call in calls:
        if call["kind"] == "aws" and call["service"] == "dynamodb":
            walk(call["params"])
    return keys


def _python_path(function: str | None) -> str:
    """Lambda's sys.path: the function's folder, then the layer (/opt/python), then the runtime's packages
    (here the project's virtual environment, where boto3 and the layer's dependencies are installed)."""
    site_packages = sysconfig.get_paths()["purelib"]
    parts = [str(ROOT / "functions" / function), str(LAYER)] if function else []
    return os.pathsep.join([*parts, site_packages])


def launch(
    mode: str,
    function: str,
    spec: dict[str, Any],
    environment: dict[str, str],
    *,
    python: str = sys.executable,
    log: Path | None = None,
) -> Run:
    """One fresh process (`python -S`: no site hooks of this virtual environment, which Lambda's
    interpreter does not have either; the packages come from PYTHONPATH as Lambda's come from sys.path)."""
    env = dict(environment, PYTHONPATH=_python_path(function if mode == "function" else None))
    with tempfile.TemporaryDirectory(prefix="qbo-cold-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        output = log.open("a", encoding="utf-8") if log else subprocess.DEVNULL
        read_end, write_end = os.pipe()
        started = time.perf_counter()
        try:
            process = subprocess.Popen(  # noqa: S603 - our interpreter, our script
                [python, "-S", str(CHILD), mode, str(spec_path), str(write_end)],
                env=env,
                cwd=ROOT / "functions" / function,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                pass_fds=(write_end,),
            )
        finally:
            os.close(write_end)
        milestones: list[tuple[float, dict[str, Any]]] = []
        buffered = b""
        with os.fdopen(read_end, "rb", buffering=0) as reports:
            while chunk := reports.read(65536):
                arrived = (time.perf_counter() - started) * 1000
                buffered += chunk
                while b"\n" in buffered:
                    line, buffered = buffered.split(b"\n", 1)
                    milestones.append((arrived, json.loads(line)))
        code = process.wait(60)
        if log:
            output.close()
    if code != 0 or not milestones or milestones[0][1]["milestone"] != "imported":
        where = f" (see {log})" if log else ""
        raise RuntimeError(f"the {mode} process of {function} failed with exit code {code}{where}")
    answered = [(ms, report) for ms, report in milestones if report["milestone"] == "answered"]
    return Run(
        imported_ms=milestones[0][0],
        answered_ms=[ms for ms, _ in answered],
        reports=[report for _, report in answered],
    )


def _function_spec(the_world: World, function: str, sample: Sample) -> dict[str, Any]:
    return {"events": sample.events, "context": the_world.context(function)}


def record(the_world: World, function: str, log: Path | None = None) -> Recording:
    """The calls the function's first request makes, and the table items they touch as they were before."""
    sample = the_world.prepare(function)
    before = the_world.table_items()
    with tempfile.TemporaryDirectory(prefix="qbo-cold-record-") as tmp:
        recorded = Path(tmp) / "calls.json"
        spec = _function_spec(the_world, function, sample) | {"record_to": str(recorded)}
        run = launch("function", function, spec, the_world.environment(function), log=log)
        calls = json.loads(recorded.read_text(encoding="utf-8"))
    if run.answers != EXPECTED_ANSWERS[function]:
        raise RuntimeError(f"{function}'s first request answered {run.answers}, expected {EXPECTED_ANSWERS[function]}")
    if sample.after:
        sample.after()
    snapshot = {key: before.get(key) for key in touched_keys(calls)}
    return Recording(function, calls, [report["calls"] for report in run.reports], sample.single_use, snapshot)


@dataclass
class ColdStart:
    function: str
    import_ms: float
    first_request_ms: float
    floor_import_ms: float
    floor_ms: float
    rounds: int
    calls: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.first_request_ms / self.floor_ms

    @property
    def holds(self) -> bool:
        return self.ratio <= RATIO_LIMIT

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"ratio": self.ratio, "holds": self.holds}


def check_floor(the_world: World, recording: Recording, log: Path | None = None) -> None:
    """A floor process, recorded too, makes exactly the calls its spec lists: the recorded ones."""
    the_world.restore(recording.snapshot)
    sample = the_world.prepare(recording.function)
    spec = recording.floor_spec(sample.single_use)
    with tempfile.TemporaryDirectory(prefix="qbo-cold-floor-") as tmp:
        recorded = Path(tmp) / "calls.json"
        run = launch(
            FLOOR, recording.function, spec | {"record_to": str(recorded)}, the_world.environment(recording.function), log=log
        )
        made = json.loads(recorded.read_text(encoding="utf-8"))
    if sample.after:
        sample.after()
    difference = first_difference(spec["calls"], made)
    if difference:
        raise RuntimeError(f"the floor of {recording.function} does not make the recorded calls: {difference}")
    if [report["calls"] for report in run.reports] != recording.answers_after:
        raise RuntimeError(f"the floor of {recording.function} answers at other points than the function")


def first_difference(expected: list[dict[str, Any]], made: list[dict[str, Any]]) -> str | None:
    """Where two call lists part (operation and parameters; method, URL, headers and body), or None."""
    for number, (want, got) in enumerate(zip(expected, made, strict=False), start=1):
        fields = ("service", "operation", "params") if want["kind"] == "aws" else ("method", "url", "headers", "body")
        for name in ("kind", *fields):
            if want.get(name) != got.get(name):
                return f"call {number}: {name} differs"
    if len(expected) != len(made):
        return f"{len(expected)} calls expected, {len(made)} made"
    return None


def sample_once(the_world: World, recording: Recording, target: str, log: Path | None = None) -> Run:
    """One measured process for the function or its floor, from the fixture's first-request state."""
    function = recording.function
    the_world.restore(recording.snapshot)
    sample = the_world.prepare(function)
    if target == FLOOR:
        spec = recording.floor_spec(sample.single_use)
    else:
        spec = _function_spec(the_world, function, sample)
    run = launch(target, function, spec, the_world.environment(function), log=log)
    if target != FLOOR and run.answers != EXPECTED_ANSWERS[function]:
        raise RuntimeError(f"{function} answered {run.answers}, expected {EXPECTED_ANSWERS[function]}")
    if sample.after:
        sample.after()
    return run


def run(rounds: int = 11, *, seed: int | None = None, log: Path | None = None) -> list[ColdStart]:
    rng = random.Random(seed)  # noqa: S311 - run order, not security
    targets = [(function, mode) for function in FUNCTIONS for mode in ("function", FLOOR)]
    with world() as the_world:
        recordings = {function: record(the_world, function, log) for function in FUNCTIONS}
        for recording in recordings.values():
            check_floor(the_world, recording, log)
        for function, mode in targets:  # warm-up: bytecode caches, page cache, moto's and the emulator's paths
            sample_once(the_world, recordings[function], mode, log)
        runs: dict[tuple[str, str], list[Run]] = {target: [] for target in targets}
        for _ in range(rounds):
            order = list(targets)
            rng.shuffle(order)
            for function, mode in order:
                runs[(function, mode)].append(sample_once(the_world, recordings[function], mode, log))
    results = []
    for function in FUNCTIONS:
        own, floor = runs[(function, "function")], runs[(function, FLOOR)]
        results.append(
            ColdStart(
                function=function,
                import_ms=statistics.median(r.imported_ms for r in own),
                first_request_ms=statistics.median(r.first_request_ms for r in own),
                floor_import_ms=statistics.median(r.imported_ms for r in floor),
                floor_ms=statistics.median(r.first_request_ms for r in floor),
                rounds=rounds,
                calls=recordings[function].summary(),
            )
        )
    return results


def layer_size(build_dir: Path = ROOT / ".aws-sam" / "build" / "SharedLayer") -> int | None:
    """Bytes in the built layer (`make build`), or None when it has not been built."""
    if not build_dir.is_dir():
        return None
    return sum(path.stat().st_size for path in build_dir.rglob("*") if path.is_file())


def main(argv: list[str]) -> int:
    rounds = int(argv[0]) if argv else 11
    load = os.getloadavg()[0]
    results = run(rounds)
    print(f"{rounds} rounds; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print(f"{'function':10} {'import':>8} {'first request':>14} {'floor':>8} {'ratio':>6}  floor's calls")
    for r in results:
        calls = ", ".join(f"{name} {count}" for part in r.calls.values() for name, count in part.items())
        print(
            f"{r.function:10} {r.import_ms:6.0f} ms {r.first_request_ms:11.0f} ms {r.floor_ms:5.0f} ms "
            f"{r.ratio:6.2f}  {'ok' if r.holds else 'ABOVE'}  {calls}"
        )
    print(json.dumps([r.as_json() for r in results]))
    return 0 if all(r.holds for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
