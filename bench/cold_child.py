"""What runs inside one measured process of the cold-start benchmark (bench/cold_start.py starts it).

    python -S bench/cold_child.py function SPEC REPORT_FD   # import functions/<name>/app.py, invoke it
    python -S bench/cold_child.py floor SPEC REPORT_FD      # boto3 + requests making the recorded calls

`function`: import the handler module (Lambda's init), then call `handler(event, context)` for each
event of the spec, serialising each answer as Lambda's runtime does. `floor`: import boto3 (and
requests when the function talks to Intuit), create the clients the function used, then make the
recorded AWS and HTTP calls in their order, with no service code at all.

The process reports on REPORT_FD (a pipe from the parent; stdout is the function's, which prints its
metrics there) one JSON line per milestone: "imported" after the import phase, "answered" after each
invocation. The parent timestamps each line as it arrives. A spec with "record_to" also records every
AWS call (operation and final parameters, after the DynamoDB resource's serialisation) and every HTTP
request the process makes, and writes them there: how the benchmark learns what the floor must do, and
checks that the floor does exactly that. Recording costs time, so a recording run is never a sample.

Only the standard library is imported before the measured work starts.
"""

import json
import os
import sys

if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]  # this script's folder (bench/): the function's folder and PYTHONPATH decide imports


_recorded: list | None = None  # the calls so far, when recording


def _report(fd: int, milestone: str, **facts: object) -> None:
    if _recorded is not None:
        facts["calls"] = len(_recorded)
    os.write(fd, (json.dumps({"milestone": milestone, **facts}) + "\n").encode())


class _Context:
    """The attributes of Lambda's context object that Powertools and the handlers read."""

    def __init__(self, facts: dict) -> None:
        self.function_name = facts["function_name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn = facts["invoked_function_arn"]
        self.memory_limit_in_mb = facts["memory_limit_in_mb"]
        self.aws_request_id = facts["aws_request_id"]
        self.log_group_name = "/aws/lambda/" + self.function_name
        self.log_stream_name = facts["log_stream_name"]
        self.identity = None
        self.client_context = None
        self._deadline_ms = facts["timeout_seconds"] * 1000

    def get_remaining_time_in_millis(self) -> int:
        return self._deadline_ms  # a fresh invocation: the whole timeout


def _summary(answer: object) -> dict:
    """What the parent checks about an answer: never a body (a callback page, a token)."""
    if not isinstance(answer, dict):
        return {"type": type(answer).__name__}
    summary: dict[str, object] = {}
    for key in ("statusCode", "ok", "status", "due", "enqueued", "error"):
        if key in answer:
            value = answer[key]
            summary[key] = value if isinstance(value, str | int | bool) or value is None else "..."
    if "batchItemFailures" in answer:
        summary["batchItemFailures"] = len(answer["batchItemFailures"])
    return summary


def compile_from_source(paths: list[str]) -> None:
    """Import the modules under these paths from source every time, ignoring bytecode caches: what Lambda
    does for a layer that ships no bytecode (/opt is read-only, so nothing is cached between cold starts)."""
    from importlib.machinery import SourceFileLoader

    cached_code = SourceFileLoader.get_code

    def get_code(self, fullname):
        path = self.get_filename(fullname)
        if any(path == root or path.startswith(root + os.sep) for root in paths):
            return self.source_to_code(self.get_data(path), path)
        return cached_code(self, fullname)

    SourceFileLoader.get_code = get_code


def run_function(spec: dict, fd: int) -> None:
    if spec.get("compile_from_source"):
        compile_from_source(spec["compile_from_source"])
    import app  # Lambda's init phase: the handler module and its module-level set-up

    _report(fd, "imported")
    for number, event in enumerate(spec["events"]):
        context = _Context(dict(spec["context"], aws_request_id=f"{spec['context']['aws_request_id']}-{number}"))
        answer = app.handler(event, context)
        json.dumps(answer)  # Lambda's runtime serialises the answer before the caller gets it
        _report(fd, "answered", summary=_summary(answer))


def run_floor(spec: dict, fd: int) -> None:
    import boto3
    from botocore import xform_name
    from botocore.config import Config

    http = None
    if any(call["kind"] == "http" for call in spec["calls"]):
        import requests

        http = requests.Session()
        http.headers.clear()  # the recorded headers are all requests sent: not its defaults on top of them
    # The functions' client configuration (runtime._aws_config), copied: the floor does not import the service.
    config = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=20)
    clients = {service: boto3.client(service, config=config) for service in spec["services"]}
    _report(fd, "imported")
    answers_after = list(spec["answers_after"])
    while answers_after and answers_after[0] == 0:
        _report(fd, "answered", summary={})
        answers_after.pop(0)
    for made, call in enumerate(spec["calls"], start=1):
        if call["kind"] == "aws":
            method = getattr(clients[call["service"]], xform_name(call["operation"]))
            method(**_decode(call["params"]))
        else:
            answer = http.request(
                call["method"], call["url"], headers=call["headers"], data=call["body"], timeout=(5, 30)
            )
            if answer.status_code != call["status"]:
                raise RuntimeError(f"{call['method']} {call['url']}: {answer.status_code}, recorded {call['status']}")
        while answers_after and answers_after[0] == made:
            _report(fd, "answered", summary={})
            answers_after.pop(0)


# --- recording (never in a timed run) --------------------------------------------------------------


def _encode(value: object) -> object:
    """JSON for AWS parameters: bytes (binary attributes, ciphertexts) as {"__bytes__": base64}."""
    import base64

    if isinstance(value, bytes | bytearray):
        return {"__bytes__": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot record a parameter of type {type(value).__name__}")


def _decode(value: object) -> object:
    import base64

    if isinstance(value, dict):
        if set(value) == {"__bytes__"}:
            return base64.b64decode(value["__bytes__"])
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


def start_recording(calls: list) -> None:
    """Record every AWS call and HTTP request of this process into `calls`, in the order they are sent."""
    import copy
    import threading

    import botocore.session
    import requests

    lock = threading.Lock()
    built = threading.local()

    def on_parameters(params: dict, model: object, **_: object) -> None:
        # Registered last: the DynamoDB resource has turned Python values into typed attributes by now.
        built.params = copy.deepcopy(params)

    def on_call(model: object, **_: object) -> None:
        entry = {
            "kind": "aws",
            "service": model.service_model.service_name,
            "operation": model.name,
            "params": _encode(built.params),
        }
        with lock:
            calls.append(entry)

    create_client = botocore.session.Session.create_client

    def recording_create_client(self, *args, **kwargs):
        client = create_client(self, *args, **kwargs)
        client.meta.events.register_last("before-parameter-build", on_parameters)
        client.meta.events.register_last("before-call", on_call)
        return client

    botocore.session.Session.create_client = recording_create_client

    send = requests.Session.send

    def recording_send(self, request, **kwargs):
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        headers = {name: value for name, value in request.headers.items() if name.lower() != "content-length"}
        entry = {"kind": "http", "method": request.method, "url": request.url, "headers": headers, "body": body}
        with lock:
            calls.append(entry)
        response = send(self, request, **kwargs)
        entry["status"] = response.status_code
        return response

    requests.Session.send = recording_send


def main(argv: list[str]) -> int:
    global _recorded
    mode, spec_path, fd = argv[0], argv[1], int(argv[2])
    with open(spec_path, encoding="utf-8") as file:
        spec = json.load(file)
    if spec.get("record_to"):
        _recorded = []
        start_recording(_recorded)
    if mode == "function":
        run_function(spec, fd)
    elif mode == "floor":
        run_floor(spec, fd)
    else:
        raise SystemExit(f"unknown mode {mode!r}: function or floor")
    if spec.get("record_to"):
        with open(spec["record_to"], "w", encoding="utf-8") as file:
            json.dump(_recorded, file)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # Lambda freezes a container once it has answered and never runs the interpreter's shutdown (module
    # teardown, a last garbage collection): the CPU time and instruction count stop here, as the clock does.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
