"""Cold start: what a caller waits for when a new Lambda container serves its request.

    python -m bench.cold_start [ROUNDS]      # the four functions against their floors (default 11 rounds)

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
created). Every sample is a new process; each round runs every function, its floor and the two
variants below in a shuffled order, after one warm-up round (bytecode and page caches); figures are
medians.

The functions import what their layers ship and nothing else: the layer's own boto3 and botocore
(botocore's data trimmed by the layer's Makefile, layer_sdk) and the shared layer's other packages
(layer_packages), not the virtual environment's. The floor imports the runtime's boto3, the SDK Lambda
ships, as the issue defines it. A second floor makes the same calls on the layer's SDK: the function's
time above it is the service's own work.

Variants, to say what they cost: the first request with detailed tracing on (DetailedTracing=true), and
with the layer's code compiled from source at import, as Lambda must when the layer ships no bytecode
(/opt is read-only, so nothing is cached between cold starts). With valgrind installed, one process of
the function and of each floor also runs under callgrind, whose instruction count does not move with
the machine's load as the times do.
"""

from __future__ import annotations

import compileall
import json
import os
import py_compile
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.cold_world import FUNCTIONS, LAYER, ROOT, Sample, World, world

CHILD = Path(__file__).resolve().parent / "cold_child.py"
RATIO_LIMIT = 1.0
FUNCTION, FLOOR, TRACED, NO_BYTECODE = "function", "floor", "detailed tracing", "layer without bytecode"
FLOOR_ON_LAYER_SDK = "floor on the layer's SDK"
KINDS = (FUNCTION, FLOOR, TRACED, NO_BYTECODE, FLOOR_ON_LAYER_SDK)
INSTRUCTION_KINDS = (FUNCTION, FLOOR, FLOOR_ON_LAYER_SDK)
# Where the layers' packages are copied for the functions' processes (layer_sdk, layer_packages).
LAYER_SDK = ROOT / "bench" / "out" / "layer-sdk"
LAYER_PACKAGES = ROOT / "bench" / "out" / "layer-packages"
# What each function's first request must answer (the recording is checked against it, every sample of
# the function against the recording).
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
    cpu_ms: float = 0.0  # the process's own CPU time (user + system), to the end of the process

    @property
    def first_request_ms(self) -> float:
        return self.answered_ms[-1]

    @property
    def answers(self) -> list[dict[str, Any]]:
        return [report.get("summary", {}) for report in self.reports]


# --- what the floor does ---------------------------------------------------------------------------


@dataclass
class Recording:
    """The AWS and HTTP calls one function's first request made, in order."""

    function: str
    calls: list[dict[str, Any]]
    answers_after: list[int]  # calls made when each invocation answered
    single_use: dict[str, str]  # Intuit's single-use values the recorded calls spent
    snapshot: dict[str, dict[str, Any] | None]  # table items the calls touched, as before them

    def floor_spec(self, single_use_now: dict[str, str]) -> dict[str, Any]:
        return floor_spec(self.calls, self.answers_after, self.single_use, single_use_now)

    def summary(self) -> dict[str, dict[str, int]]:
        aws = Counter(f"{c['service']}.{c['operation']}" for c in self.calls if c["kind"] == "aws")
        http = Counter(f"{c['method']} {_intuit_endpoint(c['url'])}" for c in self.calls if c["kind"] == "http")
        return {"aws": dict(aws), "http": dict(http)}


def _intuit_endpoint(url: str) -> str:
    """The endpoint, without host, company ID or query: 'token', 'companyinfo', ..."""
    path = url.split("://", 1)[-1].split("/", 1)[-1].split("?")[0]
    parts = [part for part in path.split("/") if part and not part.isdigit()]
    return parts[-1] if parts else "/"


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
    for name, spent in recorded_single_use.items():
        if spent not in text:
            raise ValueError(f"the recorded calls never send the {name} they spent")
        text = text.replace(spent, single_use_now[name])
    return {"services": services_in_order(calls), "calls": json.loads(text), "answers_after": list(answers_after)}


def touched_keys(calls: list[dict[str, Any]]) -> set[str]:
    """The table keys the recorded DynamoDB calls name (GetItem, PutItem, UpdateItem, DeleteItem...)."""
    keys: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            pk = value.get("pk")
            if isinstance(pk, dict) and set(pk) == {"S"} and isinstance(pk["S"], str):
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


# --- one process -----------------------------------------------------------------------------------


SHARED_REQUIREMENTS = LAYER / "requirements.txt"
SDK_REQUIREMENTS = LAYER / "requirements-sdk.txt"


def layer_sdk(out: Path = LAYER_SDK) -> Path:
    """AwsSdkLayer as `make build` ships it: its pinned packages (boto3, botocore and theirs: the virtual
    environment's copies, at the same versions) with botocore's data trimmed by the layer's own Makefile
    target, and their bytecode (the layer ships it)."""
    python = _copy_distributions(SDK_REQUIREMENTS, out)
    trimmed = subprocess.run(  # noqa: S603 - our Makefile
        ["make", "--no-print-directory", "-C", str(LAYER), "sdk-data", f"ARTIFACTS_DIR={out}"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    if trimmed.returncode != 0:
        raise RuntimeError(f"trimming the layer's SDK failed: {trimmed.stderr.strip()}")
    _compile(python)
    return python


def layer_packages(out: Path = LAYER_PACKAGES) -> Path:
    """SharedLayer's packages besides qbo_connect (requirements.txt), with their bytecode, and nothing else.
    A function's process must not import what only the virtual environment has: moto's Flask brings
    blinker, which oauthlib loads when it finds it."""
    python = _copy_distributions(SHARED_REQUIREMENTS, out)
    _compile(python)
    return python


def _copy_distributions(requirements: Path, out: Path) -> Path:
    """The installed files of each distribution the requirements file pins, copied into out/python."""
    python = out / "python"
    shutil.rmtree(out, ignore_errors=True)
    for name in pinned_names(requirements):
        distribution = metadata.distribution(name)
        for file in distribution.files or []:
            source = Path(distribution.locate_file(file))
            if file.parts[0] == ".." or "__pycache__" in file.parts or not source.is_file():
                continue  # console scripts; bytecode, compiled afresh
            (python / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, python / file)
    return python


def _compile(python: Path) -> None:
    compileall.compile_dir(python, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)


def pinned_names(requirements: Path) -> list[str]:
    """The distributions a layer's requirements file pins."""
    lines = requirements.read_text(encoding="utf-8").splitlines()
    names = (line.split("#", 1)[0].split("==", 1)[0].strip() for line in lines)
    return [name for name in names if name]


def _python_path(function: str, sdk: Path | None = None, packages: Path | None = None) -> str:
    """Lambda's sys.path: the function's folder, then the layers (/opt/python: qbo_connect, AwsSdkLayer's
    packages when `sdk` is given, SharedLayer's others when `packages` is given), then the runtime's
    packages (here the project's virtual environment, where the runtime's boto3 is installed). A function
    has both layers and needs nothing of the runtime's; the issue's floor imports the runtime's boto3: the
    SDK Lambda ships, which a function without its own would use."""
    layers = [str(LAYER)] + [str(path) for path in (sdk, packages) if path]
    runtime = [] if packages else [sysconfig.get_paths()["purelib"]]
    return os.pathsep.join([str(ROOT / "functions" / function), *layers, *runtime])


def layer_code_paths(sdk: Path | None = None, packages: Path | None = None) -> list[str]:
    """Where the layers' code is imported from here: the qbo_connect package and the installed files of
    each distribution the layers pin (from the copies in `sdk` and `packages`, when given)."""
    paths = {str(LAYER / "qbo_connect")}
    for requirements, copy in ((SDK_REQUIREMENTS, sdk), (SHARED_REQUIREMENTS, packages)):
        for name in pinned_names(requirements):
            distribution = metadata.distribution(name)
            for file in distribution.files or []:
                if file.suffix == ".py" and file.parts[0] != ".." and ".dist-info" not in str(file):
                    top = file.parts[0]
                    paths.add(str(copy / top if copy else Path(distribution.locate_file(top)).resolve()))
    return sorted(paths)


def launch(
    mode: str,
    function: str,
    spec: dict[str, Any],
    environment: dict[str, str],
    *,
    python: str = sys.executable,
    log: Path | None = None,
    sdk: Path | None = None,
    packages: Path | None = None,
    wrapper: tuple[str, ...] = (),
) -> Run:
    """One fresh process (`python -S`: no site hooks of this virtual environment, which Lambda's
    interpreter does not have either; the packages come from PYTHONPATH as Lambda's come from sys.path)."""
    env = dict(environment, PYTHONPATH=_python_path(function, sdk, packages))
    with tempfile.TemporaryDirectory(prefix="qbo-cold-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        output = log.open("a", encoding="utf-8") if log else subprocess.DEVNULL
        read_end, write_end = os.pipe()
        started = time.perf_counter()
        try:
            process = subprocess.Popen(  # noqa: S603 - our interpreter, our script
                [*wrapper, python, "-S", str(CHILD), mode, str(spec_path), str(write_end)],
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
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = code = os.waitstatus_to_exitcode(status)
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
        cpu_ms=(usage.ru_utime + usage.ru_stime) * 1000,
    )


# --- the benchmark ---------------------------------------------------------------------------------


class Bench:
    """The world, each function's recording, and one sample of any kind."""

    def __init__(self, the_world: World, log: Path | None = None) -> None:
        self.world = the_world
        self.log = log
        self.sdk = layer_sdk()
        self.packages = layer_packages()
        self.layer_code = layer_code_paths(sdk=self.sdk, packages=self.packages)
        self.recordings = {function: self.record(function) for function in FUNCTIONS}
        for recording in self.recordings.values():
            self.check_floor(recording)

    def _function_spec(self, function: str, sample: Sample) -> dict[str, Any]:
        return {"events": sample.events, "context": self.world.context(function)}

    @contextmanager
    def _prepared(self, function: str, snapshot: dict[str, dict[str, Any] | None] | None = None) -> Iterator[Sample]:
        """The fixture's first-request state for the function (the touched items put back first, when
        given), and what the sample leaves behind cleared after it."""
        if snapshot is not None:
            self.world.restore(snapshot)
        sample = self.world.prepare(function)
        yield sample
        if sample.after:
            sample.after()

    def _launch_recording(self, mode: str, function: str, spec: dict[str, Any]) -> tuple[Run, list[dict[str, Any]]]:
        """One process of that mode that also records every call it makes (never a sample)."""
        with tempfile.TemporaryDirectory(prefix=f"qbo-cold-{mode}-") as tmp:
            recorded = Path(tmp) / "calls.json"
            spec = spec | {"record_to": str(recorded)}
            layers = {"sdk": self.sdk, "packages": self.packages} if mode == FUNCTION else {}
            run = launch(mode, function, spec, self.world.environment(function), log=self.log, **layers)
            return run, json.loads(recorded.read_text(encoding="utf-8"))

    def record(self, function: str) -> Recording:
        """The calls the function's first request makes, and the table items they touch as they were before."""
        with self._prepared(function) as sample:
            before = self.world.table_items()
            run, calls = self._launch_recording(FUNCTION, function, self._function_spec(function, sample))
        _expect_answers(function, run)
        snapshot = {key: before.get(key) for key in touched_keys(calls)}
        return Recording(function, calls, [report["calls"] for report in run.reports], sample.single_use, snapshot)

    def check_floor(self, recording: Recording) -> None:
        """A floor process, recorded too, makes exactly the calls its spec lists: the recorded ones."""
        function = recording.function
        with self._prepared(function, recording.snapshot) as sample:
            spec = recording.floor_spec(sample.single_use)
            run, made = self._launch_recording(FLOOR, function, spec)
        difference = first_difference(spec["calls"], made)
        if difference:
            raise RuntimeError(f"the floor of {function} does not make the recorded calls: {difference}")
        if [report["calls"] for report in run.reports] != recording.answers_after:
            raise RuntimeError(f"the floor of {function} answers at other points than the function")

    def sample(self, function: str, kind: str, wrapper: tuple[str, ...] = ()) -> Run:
        """One measured process of that kind, from the fixture's first-request state."""
        recording = self.recordings[function]
        with self._prepared(function, recording.snapshot) as sample:
            environment = self.world.environment(function)
            floor = kind in (FLOOR, FLOOR_ON_LAYER_SDK)
            spec = recording.floor_spec(sample.single_use) if floor else self._function_spec(function, sample)
            if kind == TRACED:
                environment["QBO_DETAILED_TRACING"] = "true"
            if kind == NO_BYTECODE:
                spec["compile_from_source"] = self.layer_code
            sdk = None if kind == FLOOR else self.sdk
            packages = None if floor else self.packages
            mode = FLOOR if floor else FUNCTION
            run = launch(mode, function, spec, environment, log=self.log, sdk=sdk, packages=packages, wrapper=wrapper)
        if not floor:
            _expect_answers(function, run)
        return run

    def instructions(self, function: str, kind: str) -> int | None:
        """The instructions one process of that kind executes, counted by valgrind's callgrind (None without
        valgrind): unlike its time, the count does not move with whatever else the machine is doing."""
        valgrind = shutil.which("valgrind")
        if not valgrind:
            return None
        with tempfile.TemporaryDirectory(prefix="qbo-cold-callgrind-") as tmp:
            counts = Path(tmp) / "callgrind.out"
            self.sample(function, kind, wrapper=(valgrind, "--tool=callgrind", f"--callgrind-out-file={counts}"))
            summary = next(line for line in counts.read_text().splitlines() if line.startswith("summary:"))
            return int(summary.split()[1])


def _expect_answers(function: str, run: Run) -> None:
    if run.answers != EXPECTED_ANSWERS[function]:
        raise RuntimeError(f"{function}'s first request answered {run.answers}, expected {EXPECTED_ANSWERS[function]}")


@dataclass
class ColdStart:
    """One function's figures: medians over `rounds` fresh processes of each kind, in milliseconds."""

    function: str
    import_ms: float
    first_request_ms: float
    floor_import_ms: float
    floor_ms: float
    rounds: int
    detailed_tracing_ms: float | None = None
    without_bytecode_ms: float | None = None
    cpu_ms: float | None = None  # the function's process, to its end (user + system)
    floor_cpu_ms: float | None = None
    floor_on_layer_sdk_ms: float | None = None  # the floor's calls, made with the layer's boto3 and botocore
    floor_on_layer_sdk_cpu_ms: float | None = None
    detailed_tracing_cpu_ms: float | None = None
    without_bytecode_cpu_ms: float | None = None
    calls: dict[str, Any] = field(default_factory=dict)
    # One process of each of INSTRUCTION_KINDS, in millions of instructions (callgrind), when valgrind is here.
    instructions: dict[str, float] = field(default_factory=dict)
    load_average: tuple[float, float] | None = None  # the machine's, at the start and at the end

    @property
    def ratio(self) -> float:
        return self.first_request_ms / self.floor_ms

    @property
    def holds(self) -> bool:
        return self.ratio <= RATIO_LIMIT

    @property
    def instruction_ratio(self) -> float | None:
        counted = self.instructions
        return counted[FUNCTION] / counted[FLOOR] if counted else None

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"ratio": self.ratio, "holds": self.holds, "instruction_ratio": self.instruction_ratio}


def summarize(function: str, runs: dict[str, list[Run]], rounds: int, **extra: Any) -> ColdStart:
    """Medians of each kind's processes."""

    def median(kind: str, figure: str) -> float | None:
        values = [getattr(run, figure) for run in runs.get(kind, [])]
        return statistics.median(values) if values else None

    return ColdStart(
        function=function,
        import_ms=median(FUNCTION, "imported_ms"),
        first_request_ms=median(FUNCTION, "first_request_ms"),
        floor_import_ms=median(FLOOR, "imported_ms"),
        floor_ms=median(FLOOR, "first_request_ms"),
        rounds=rounds,
        detailed_tracing_ms=median(TRACED, "first_request_ms"),
        without_bytecode_ms=median(NO_BYTECODE, "first_request_ms"),
        cpu_ms=median(FUNCTION, "cpu_ms"),
        floor_cpu_ms=median(FLOOR, "cpu_ms"),
        floor_on_layer_sdk_ms=median(FLOOR_ON_LAYER_SDK, "first_request_ms"),
        floor_on_layer_sdk_cpu_ms=median(FLOOR_ON_LAYER_SDK, "cpu_ms"),
        detailed_tracing_cpu_ms=median(TRACED, "cpu_ms"),
        without_bytecode_cpu_ms=median(NO_BYTECODE, "cpu_ms"),
        **extra,
    )


def run(
    rounds: int = 11, *, seed: int | None = None, log: Path | None = None, count_instructions: bool = True
) -> list[ColdStart]:
    rng = random.Random(seed)  # noqa: S311 - run order, not security
    load_at_start = os.getloadavg()[0]
    targets = [(function, kind) for function in FUNCTIONS for kind in KINDS]
    runs: dict[tuple[str, str], list[Run]] = {target: [] for target in targets}
    with world() as the_world:
        bench = Bench(the_world, log)
        for function, kind in targets:  # warm-up: bytecode and page caches, moto's and the emulator's paths
            bench.sample(function, kind)
        for _ in range(rounds):
            order = list(targets)
            rng.shuffle(order)
            for function, kind in order:
                runs[(function, kind)].append(bench.sample(function, kind))
        calls = {function: recording.summary() for function, recording in bench.recordings.items()}
        instructions = {
            function: _instructions(bench, function) if count_instructions else {} for function in FUNCTIONS
        }
    load = (round(load_at_start, 2), round(os.getloadavg()[0], 2))
    return [
        summarize(
            function,
            {kind: runs[(function, kind)] for kind in KINDS},
            rounds,
            calls=calls[function],
            instructions=instructions[function],
            load_average=load,
        )
        for function in FUNCTIONS
    ]


def _instructions(bench: Bench, function: str) -> dict[str, float]:
    counted = {kind: bench.instructions(function, kind) for kind in INSTRUCTION_KINDS}
    return {kind: count / 1e6 for kind, count in counted.items() if count is not None}


def layer_size(build_dir: Path = ROOT / ".aws-sam" / "build" / "SharedLayer") -> int | None:
    """Bytes in the built layer (`make build`), or None when it has not been built."""
    if not build_dir.is_dir():
        return None
    return sum(path.stat().st_size for path in build_dir.rglob("*") if path.is_file())


def main(argv: list[str]) -> int:
    rounds = int(argv[0]) if argv else 11
    results = run(rounds)
    start, end = results[0].load_average or (0, 0)
    print(f"{rounds} rounds; load average {start:.1f} at the start, {end:.1f} at the end; medians")
    print(
        f"{'':10} {'import':>7} {'first request':>14} {'floor':>6} {'ratio':>6}       {'CPU / floor':>13}  "
        f"{'+traced CPU':>11} {'+no bytecode CPU':>16} {'floor, layer SDK':>16}  calls (floor = the same)"
    )
    for r in results:
        calls = ", ".join(f"{name} {count}" for part in r.calls.values() for name, count in part.items())
        print(
            f"{r.function:10} {r.import_ms:4.0f} ms {r.first_request_ms:11.0f} ms {r.floor_ms:3.0f} ms {r.ratio:6.2f} "
            f"{'ok' if r.holds else 'ABOVE':5} {r.cpu_ms:4.0f} / {r.floor_cpu_ms:3.0f} ms  "
            f"{r.detailed_tracing_cpu_ms - r.cpu_ms:+8.0f} ms {r.without_bytecode_cpu_ms - r.cpu_ms:+13.0f} ms "
            f"{r.floor_on_layer_sdk_ms:13.0f} ms  {calls}"
        )
        if r.instructions:
            counted = " / ".join(f"{r.instructions[kind]:,.0f}" for kind in INSTRUCTION_KINDS)
            print(f"{'':10} instructions (millions), function / floor / floor on the layer's SDK: {counted}")
    print(json.dumps([r.as_json() for r in results]))
    return 0 if all(r.holds for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
