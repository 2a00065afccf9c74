"""Load the functions' handlers the way Lambda does and invoke them with a Lambda-like context.

Lambda imports `app.handler` from the function's CodeUri with the layer on sys.path. Here each
function's module is loaded from its file under a name of its own (all four are called `app`), and
the layer is whatever `qbo_connect` the process imports (the editable install, or the checkout's
layer folder put first on sys.path).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import os
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from qbo_local.config import ACCOUNT_ID, REGION, STACK_NAME
from qbo_local.template import function_properties, functions, load_template

Handler = Callable[[Any, Any], Any]

DEFAULT_TIMEOUT_SECONDS = 3  # Lambda's own defaults, for a template that leaves them out
DEFAULT_MEMORY_MB = 128


class FunctionNotFound(LookupError):
    """No function of that name in template.yaml."""


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str  # "app.handler": module path, then the attribute
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    memory_mb: int = DEFAULT_MEMORY_MB
    # The function's own environment variables in the template (beside Globals, which the stack's one
    # environment holds): literal values only; a reference (!Ref ...) is the stack's to resolve.
    environment: tuple[tuple[str, str], ...] = ()

    @property
    def short_name(self) -> str:
        """The folder name, e.g. "test" for functions/test/."""
        return self.code_dir.name

    @property
    def function_name(self) -> str:
        return f"{STACK_NAME}-{self.logical_id}"

    def handler_file(self) -> Path:
        module, _, _ = self.handler.rpartition(".")
        if not module:
            raise ValueError(f"{self.logical_id}: Handler {self.handler!r} is not MODULE.FUNCTION")
        return self.code_dir.joinpath(*module.split(".")).with_suffix(".py")


def _number(value: Any, default: int) -> int:
    # A template value may be an unresolved intrinsic (!Ref ...): Lambda's default then.
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def function_specs(root: Path, template: dict[str, Any] | None = None) -> dict[str, FunctionSpec]:
    """Every function in template.yaml, by logical ID, with Globals applied."""
    template = template if template is not None else load_template(root / "template.yaml")
    specs = {}
    for logical_id in functions(template):
        properties = function_properties(template, logical_id)
        code_uri, handler = properties.get("CodeUri"), properties.get("Handler")
        if not isinstance(code_uri, str) or not isinstance(handler, str):
            continue  # not code this stack can load (an S3 location, an image)
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            code_dir=(root / code_uri).resolve(),
            handler=handler,
            timeout_seconds=_number(properties.get("Timeout"), DEFAULT_TIMEOUT_SECONDS),
            memory_mb=_number(properties.get("MemorySize"), DEFAULT_MEMORY_MB),
            environment=_own_environment(template["Resources"][logical_id].get("Properties") or {}),
        )
    return specs


def _own_environment(properties: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    variables = (properties.get("Environment") or {}).get("Variables") or {}
    return tuple(
        sorted((name, str(value)) for name, value in variables.items() if isinstance(value, str | int | float))
    )


def find_spec(specs: dict[str, FunctionSpec], name: str) -> FunctionSpec:
    """By folder name ("test"), logical ID ("TestFunction") or either without regard to case."""
    wanted = name.strip().strip("/").removeprefix("functions/").casefold()
    for spec in specs.values():
        if wanted in {spec.short_name.casefold(), spec.logical_id.casefold()}:
            return spec
    known = ", ".join(sorted(spec.short_name for spec in specs.values()))
    raise FunctionNotFound(f"No function {name!r} in template.yaml: choose one of {known}")


class LambdaContext:
    """What the Python runtime passes as `context` (the attributes Powertools and handlers read)."""

    def __init__(self, spec: FunctionSpec, *, request_id: str | None = None, now: float | None = None) -> None:
        started = time.time() if now is None else now
        self.function_name = spec.function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"
        # A string, as the Python runtime gives it (it reads AWS_LAMBDA_FUNCTION_MEMORY_SIZE).
        self.memory_limit_in_mb = str(spec.memory_mb)
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        day = datetime.fromtimestamp(started, UTC).strftime("%Y/%m/%d")
        self.log_stream_name = f"{day}/[$LATEST]{secrets.token_hex(16)}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + spec.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _FunctionOutput:
    """Whether the running code is a handler's, and where its output goes: the function log (a file the
    local stack names, as a Lambda's output goes to CloudWatch Logs), else stderr. A context variable, not
    a thread-local: the worker threads a handler starts (asyncio.to_thread) inherit it."""

    def __init__(self, stderr: Any) -> None:
        self.stderr = stderr
        self.function_log: Any | None = None

    @property
    def active(self) -> bool:
        return _in_function.get()


_in_function: contextvars.ContextVar[bool] = contextvars.ContextVar("qbo_local_in_function", default=False)


class _InvocationStream:
    """sys.stdout or sys.stderr, routed per thread: while a handler runs, its prints and log lines
    (Powertools' JSON lines and metrics) go to the function output. The stack's banner, its own log lines
    and `invoke`'s JSON answer keep the real streams to themselves."""

    def __init__(self, outside: Any, routing: _FunctionOutput) -> None:
        self._outside = outside
        self._routing = routing

    @property
    def _target(self) -> Any:
        if self._routing.active:
            return self._routing.function_log or self._routing.stderr
        return self._outside

    def write(self, text: str) -> int:
        return self._target.write(text)

    def flush(self) -> None:
        self._target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


_routing_lock = threading.Lock()
_routing: _FunctionOutput | None = None


def _function_output() -> _FunctionOutput:
    """Installs the routing streams once (stdout and stderr) and answers the routing state."""
    global _routing
    with _routing_lock:
        if _routing is None:
            _routing = _FunctionOutput(sys.stderr)
        if not isinstance(sys.stdout, _InvocationStream):
            sys.stdout = _InvocationStream(sys.stdout, _routing)
        if not isinstance(sys.stderr, _InvocationStream):
            sys.stderr = _InvocationStream(sys.stderr, _routing)
        return _routing


def send_function_output_to(stream: Any | None) -> None:
    """Where handlers' stdout goes from now on: a file (the stack's function log), or None for stderr.
    Call before qbo_connect is first imported: its logger keeps the stream it saw then."""
    _function_output().function_log = stream


@contextmanager
def as_function_output() -> Iterator[None]:
    """Code run under this writes where handlers do (the stack's own calls into the service, too)."""
    _function_output()
    token = _in_function.set(True)
    try:
        yield
    finally:
        _in_function.reset(token)


class LocalFunction:
    """One function, one "container": its module is imported once, and invocations run one at a time
    (a Powertools resolver keeps the current event on a module-level object, as Lambda allows)."""

    def __init__(self, spec: FunctionSpec, handler: Handler | None = None) -> None:
        self.spec = spec
        self._handler = handler
        self._given_handler = handler  # from_handler: shared by every container; else each loads its own
        self._load_lock = threading.Lock()
        self._invoke_lock = threading.Lock()
        self._services: Any = None  # built at the first invocation, when the stack's environment is complete

    @classmethod
    def from_handler(cls, name: str, handler: Handler, *, timeout_seconds: int = 30) -> LocalFunction:
        """A function around any callable (tests)."""
        return cls(FunctionSpec(name, Path(name), "app.handler", timeout_seconds=timeout_seconds), handler)

    @property
    def name(self) -> str:
        return self.spec.logical_id

    def another_container(self) -> LocalFunction:
        """A second instance of this function, with its own module and its own one-at-a-time invocations
        (a handler given directly is shared)."""
        return LocalFunction(self.spec, self._given_handler)

    def load(self) -> Handler:
        # Route stdout before the import: a logger made at module level keeps the stream it saw then.
        _function_output()
        with self._load_lock:
            if self._handler is None:
                self._handler = _load_handler(self.spec)
            return self._handler

    def invoke(self, event: Any, *, request_id: str | None = None) -> Any:
        """`request_id` is the context's aws_request_id (the Invoke API gives the caller the same one)."""
        handler = self.load()
        with self._invoke_lock:
            context = LambdaContext(self.spec, request_id=request_id)
            try:
                with as_function_output(), self._own_services():
                    return handler(event, context)
            finally:
                if context.get_remaining_time_in_millis() == 0:
                    print(
                        f"{self.spec.logical_id} ran longer than its {self.spec.timeout_seconds} s timeout: "
                        "Lambda would have stopped it",
                        file=sys.stderr,
                    )

    @contextmanager
    def _own_services(self) -> Iterator[None]:
        """A function with settings of its own in the template runs with services built from them over the
        stack's environment, as its Lambda container would; the others share the stack's."""
        if not self.spec.environment:
            yield
            return
        from qbo_connect.runtime import build_services, function_services
        from qbo_connect.settings import Settings

        with self._load_lock:
            if self._services is None:
                self._services = build_services(
                    Settings.from_environment({**os.environ, **dict(self.spec.environment)})
                )
        with function_services(self._services):
            yield


def _load_handler(spec: FunctionSpec) -> Handler:
    path = spec.handler_file()
    if not path.is_file():
        raise FileNotFoundError(f"{spec.logical_id}: {path} does not exist (Handler {spec.handler!r})")
    module_name = f"_qbo_local_function_{spec.logical_id}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"{spec.logical_id}: cannot load {path}")
    module: ModuleType = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    attribute = spec.handler.rpartition(".")[2]
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise AttributeError(f"{spec.logical_id}: {path} has no function {attribute!r}")
    return handler


def put_layer_first(root: Path) -> None:
    """The checkout's layer ahead of anything installed, as Lambda puts /opt/python on the path."""
    layer = str((root / "layers" / "qbo_connect").resolve())
    if layer in sys.path:
        sys.path.remove(layer)
    sys.path.insert(0, layer)


class FunctionFailed(RuntimeError):
    """The handler raised in its process; the message is the exception's type and text."""


class ProcessFunction:
    """One function instance in a process of its own, as each Lambda instance is: its own interpreter,
    module, services and clients, one invocation at a time, and a CPU time that can be read apart from
    the local stack's (the benchmarks judge the functions' own CPU per refresh with it).

    `setup` ("module:function") runs in the new process once the handler is loaded; `call` runs any
    such function there later and returns its (picklable) answer: instruments a benchmark reads."""

    def __init__(
        self, spec: FunctionSpec, *, root: Path, setup: str | None = None, environment: dict[str, str] | None = None
    ) -> None:
        import multiprocessing

        self.spec = spec
        self._root = root
        self._setup = setup
        self._environment = dict(environment or {})  # on top of this process's, as the function's own settings
        self._lock = threading.Lock()
        # spawn, not fork: the stack's process has threads (servers, pollers) that a fork would copy mid-work.
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_serve_function,
            args=(spec, str(root), setup, self._environment, child),
            name=f"function {spec.short_name}",
        )
        self._process.daemon = True
        self._process.start()
        child.close()
        kind, value = self._connection.recv()  # the handler is loaded (or could not be)
        if kind != "ready":
            self.close()
            raise FunctionFailed(value)

    @property
    def name(self) -> str:
        return self.spec.logical_id

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def another_container(self) -> ProcessFunction:
        return ProcessFunction(self.spec, root=self._root, setup=self._setup, environment=self._environment)

    def invoke(self, event: Any) -> Any:
        return self._request("invoke", event)

    def call(self, target: str) -> Any:
        return self._request("call", target)

    def _request(self, kind: str, value: Any) -> Any:
        with self._lock:
            self._connection.send((kind, value))
            answer, result = self._connection.recv()
        if answer == "error":
            raise FunctionFailed(result)
        return result

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used so far (Linux: /proc/<pid>/stat)."""
        return process_cpu_seconds(self.pid)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._connection.send(("exit", None))
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds, from /proc (fields 14 and 15, after the command name)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _resolve(target: str) -> Callable[[], Any]:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _serve_function(
    spec: FunctionSpec, root: str, setup: str | None, environment: dict[str, str], connection: Any
) -> None:
    """The instance's process: load the handler (as Lambda's init does), then answer requests until told to exit."""
    os.environ.update(environment)
    try:
        put_layer_first(Path(root))
        function = LocalFunction(spec)
        function.load()
        if setup:
            _resolve(setup)()
    except BaseException as error:
        connection.send(("failed", f"{type(error).__name__}: {error}"))
        return
    connection.send(("ready", None))
    while True:
        try:
            kind, value = connection.recv()
        except EOFError:
            return
        if kind == "exit":
            return
        try:
            result = function.invoke(value) if kind == "invoke" else _resolve(value)()
        except Exception as error:
            connection.send(("error", f"{type(error).__name__}: {error}"))
        else:
            connection.send(("ok", result))
