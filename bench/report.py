"""The table `make bench` prints, and docs/performance.md around it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench import cost


@dataclass(frozen=True)
class Row:
    metric: str
    result: str
    floor: str = ""
    holds: bool | None = None  # None: reported, no floor


def _mark(holds: bool | None) -> str:
    return {True: "yes", False: "NO", None: ""}[holds]


def rows(results: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    out += cold_start_rows(results["cold_start"])
    layer = results["layer"]
    size = f"{layer['bytes'] / 1024 / 1024:.1f} MiB ({layer['files']} files)" if layer.get("bytes") else layer["note"]
    out.append(Row("Built layer (.aws-sam/build/SharedLayer)", size))
    for run in results["throughput"]:
        n = f"{run['connections']:,}"
        floor = 0.9 * run["budget_per_second"]
        out += [
            Row(
                f"Throughput, {n} due: refreshes per second",
                f"{run['refreshes_per_second']:.1f}/s (budget {run['budget_per_second']:.0f}/s)",
                f">= {floor:.0f}/s",
                run["refreshes_per_second"] >= floor,
            ),
            Row(f"Throughput, {n} due: wall time, sweep to empty queue", f"{run['wall_seconds']:.1f} s"),
            Row(
                f"Throughput, {n} due: AWS calls per refresh (refresh function)",
                f"{run['function_calls_per_refresh']:.2f} ({_calls(run['function_calls'])})",
                "<= 4",
                run["function_calls_per_refresh"] <= 4,
            ),
            Row(
                f"Throughput, {n} due: sweep's AWS calls per refresh (amortised)",
                f"{run['sweep_calls_per_refresh']:.3f} ({_calls(run['sweep_calls'])})",
            ),
            Row(
                f"Throughput, {n} due: event source's SQS calls per refresh",
                f"{run['event_source_calls_per_refresh']:.3f} ({_calls(run['event_source_calls'])})",
            ),
            Row(
                f"Throughput, {n} due: Intuit calls per refresh",
                f"{run['intuit_calls_per_refresh']:.3f}",
                "= 1",
                run["intuit_calls_per_refresh"] == 1,
            ),
            Row(f"Throughput, {n} due: connections lost", f"{run['lost']}", "= 0", run["lost"] == 0),
            Row(
                f"Throughput, {n} due: deferred to the next sweep (token kept), retried AWS attempts",
                f"{run.get('deferred', 0)}, {run.get('retried_attempts', 0)}",
            ),
        ]
    due = results["due_finding"]
    flat = len({(d["items_read"], d["read_capacity_units"]) for d in due}) == 1 and all(
        d["due_found"] == d["items_read"] for d in due
    )
    for d in due:
        out.append(
            Row(
                f"Finding due: {d['stored']:,} stored, 100 due",
                f"{d['read_capacity_units']:.1f} RCU ({d['items_read']} index entries, {d['read_bytes']:,} bytes, "
                f"{d['pages']} page)",
                "flat in stored",
                flat,
            )
        )
    token = results["token_read"]
    out.append(
        Row(
            "Token read from cache: median / p99",
            f"{token['cached_median_us']:.1f} us / {token['cached_p99_us']:.1f} us",
            "median < 1 ms",
            token["cached_median_us"] < 1000,
        )
    )
    per_read = {k: v / token["cold_calls"] for k, v in token["cold_aws_calls"].items()}
    out.append(
        Row(
            "Token read, cold cache: AWS calls per read",
            ", ".join(f"{k.split('.')[1]} {v:.2f}" for k, v in per_read.items())
            + f" (moto: median {token['cold_median_ms']:.1f} ms, p99 {token['cold_p99_ms']:.1f} ms)",
            "<= 1 GetItem, <= 1 GetSecretValue",
            token["holds"],
        )
    )
    money = results["cost"]
    ceiling = money["ceiling"]
    out += [
        Row("Cost per connection-month (default schedule)", f"${money['per_connection_month']:.3f}"),
        Row(
            "Scale ceiling per region (Secrets Manager writes)",
            f"{ceiling['connections_at_budget']:,} connections at the 40/s budget; "
            f"{ceiling['connections_at_region_quota']:,} at the 50/s quota",
        ),
    ]
    return out


def cold_start_rows(cold_starts: list[dict[str, Any]]) -> list[Row]:
    """Per function its first request against its floor, and its import; then what each variant adds."""
    out: list[Row] = []
    for cold in cold_starts:
        name = cold["function"]
        out += [
            Row(
                f"Cold start: {name}, import and first request",
                f"{cold['first_request_ms']:.0f} ms = {cold['ratio']:.2f} x floor ({cold['floor_ms']:.0f} ms)",
                "<= 1.0 x floor",
                cold["first_request_ms"] <= cold["floor_ms"],
            ),
            Row(
                f"Cold start: {name}, import only",
                f"{cold['import_ms']:.0f} ms (floor's boto3 and clients: {cold['floor_import_ms']:.0f} ms)",
            ),
        ]
    for key, what in (
        ("detailed_tracing_ms", "with DetailedTracing=true"),
        ("without_bytecode_ms", "with the layer built without bytecode"),
    ):
        if all(cold.get(key) is not None for cold in cold_starts):
            added = ", ".join(f"{c['function']} {c[key] - c['first_request_ms']:+.0f} ms" for c in cold_starts)
            out.append(Row(f"Cold start: first request {what}", added))
    return out


COLD_START_EVENTS = {
    "authorize": "a valid signed link, answered with the redirect to Intuit's consent page",
    "callback": "Intuit's redirect after a complete consent on the emulator (code, state, realm ID and the "
    "browser's state cookie), answered with the result page",
    "refresh": "the schedule's sweep with one due connection, then the queue record that sweep sent, in the same "
    "process (a container takes the next invocation)",
    "test": '`{"connection_id": ...}` for a connection connected through the emulator: it reads CompanyInfo',
}


def _cold_start_table(cold_starts: list[dict[str, Any]]) -> str:
    lines = [
        "| Function | Import only | First request | Floor | Ratio | CPU, function / floor | DetailedTracing=true "
        "| Layer without bytecode |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cold_starts:

        def ms(key: str, cold: dict[str, Any] = c) -> str:
            return f"{cold[key]:.0f} ms" if cold.get(key) is not None else "-"

        cpu = f"{c['cpu_ms']:.0f} / {c['floor_cpu_ms']:.0f} ms" if c.get("cpu_ms") else "-"
        lines.append(
            f"| {c['function']} | {ms('import_ms')} | {ms('first_request_ms')} | {ms('floor_ms')} | "
            f"{c['ratio']:.2f} | {cpu} | {ms('detailed_tracing_ms')} | {ms('without_bytecode_ms')} |"
        )
    lines += ["", "| Function | AWS calls of the first request (the floor makes the same) | Intuit calls |"]
    lines.append("| --- | --- | --- |")
    for c in cold_starts:
        calls = c.get("calls") or {}
        aws = ", ".join(f"{name.split('.')[1]} {n}" for name, n in (calls.get("aws") or {}).items()) or "none"
        http = ", ".join(f"{name} {n}" for name, n in (calls.get("http") or {}).items()) or "none"
        lines.append(f"| {c['function']} | {aws} | {http} |")
    return "\n".join(lines)


def cold_start_section(results: dict[str, Any]) -> str:
    cold_starts = results["cold_start"]
    first = cold_starts[0]
    above = [c["function"] for c in cold_starts if c["first_request_ms"] > c["floor_ms"]]
    verdict = (
        "The first request is within its floor for all four functions."
        if not above
        else f"The first request is above its floor for {', '.join(above)} (see below for why)."
    )
    load = first.get("load_average") or (None, None)
    load_text = f"load average {load[0]:.1f} at the start and {load[1]:.1f} at the end" if load[0] is not None else ""
    layer = results["layer"]
    layer_text = (
        f"{layer['bytes'] / 1024 / 1024:.1f} MiB in {layer['files']} files"
        if layer.get("bytes")
        else f"not measured ({layer.get('note')})"
    )
    events = "\n".join(f"- **{name}**: {what};" for name, what in COLD_START_EVENTS.items())
    return f"""## Cold start

What a caller waits for when a new Lambda container serves its request. Per function, a fresh Python
process imports the handler (Lambda's init phase) and serves one realistic first request:

{events}

AWS is moto in server mode and Intuit the emulator, each a process of its own, as the local stack has
them, so that the measured process holds the function's own work only (`bench/cold_world.py`). The
process gets the environment Lambda gives the function (template.yaml's variables, Lambda's own,
active tracing's trace header) and Lambda's `sys.path`: the function's folder, the layer, then the
packages (`python -S`: no hooks of the development virtual environment). Time runs from just before
the process is started to the moment its answer arrives in the benchmark's process: interpreter
start-up is included, for every process alike. Import only stops the same clock when the handler
module is imported.

**The floor** of a function is a fresh process that imports boto3 (and requests, when the function
calls Intuit), creates the clients the function used and makes exactly the calls its first request
made, in the same order, with no service code: what the same I/O costs at the least. The calls are
recorded, not guessed: the function's first request runs once with a botocore hook that records
each AWS call's operation and final parameters (after the DynamoDB transformation) and one on
requests' sessions that records each HTTP request; the floor replays that recording, with Intuit's
single-use values (the authorization code, the refresh token) swapped for fresh ones. Every run
checks once that a floor, recorded the same way, makes exactly the recorded calls. Both sides start
from the same state: before every sample the connection is deleted and created (and connected through
the emulator) again, and the table items the recorded calls touch are put back.

Each round runs the four functions, their floors and two variants (below) in a shuffled order, 16 fresh
processes; {first["rounds"]} rounds after one warm-up round (bytecode and page caches), {load_text}. Each
figure is the median. {verdict}

{_cold_start_table(cold_starts)}

CPU is the process's own user and system time, to its end: unlike the wall clock it hardly moves with
the machine's load, and the difference between the two columns is the service's own work. The
variants: **DetailedTracing=true** is the first request with the X-Ray SDK patching botocore and
requests (the opt-in below); **layer without bytecode** is the first request with every module of the
layer (qbo_connect and the pinned dependencies, not boto3 and botocore, which the runtime ships
compiled) compiled from source at import, as Lambda must when the layer ships no bytecode: `/opt` is
read-only, so nothing is cached from one cold start to the next.

What made the first request shorter. The issue measured the test function's whole process at about
1.4 times a boto3 process making the same call, and 1.9 to 2.5 times in-process for the four functions.
Profiles (cProfile, `-X importtime`, and instruction counts under valgrind's callgrind, which the
machine's load does not move) showed, in instructions of a first request on top of the floor's
boto3, requests and two clients (about 1,200 million):

- **Tracing** (about 120 million, the largest single cost): Powertools' Tracer imported the X-Ray SDK and
  patched every library it knows at import. Lambda's active tracing records each invocation
  (initialization, invocation, errors, the caller's trace) with no SDK in the function, so that is the
  default now; the SDK's subsegments per AWS call and Intuit request are opt-in (`DetailedTracing=true`,
  `QBO_DETAILED_TRACING`), and the SDK loses AWS support on 2027-02-25.
- **Clients nobody calls**: building the test function's services created five AWS clients (the
  lifecycle holds an SQS queue, an event bus and a KMS sealer for failures) to call two. Each client is
  now created at its adapter's first call, one per AWS service. The table runs on a plain client with
  boto3's own DynamoDB transformation instead of the Table resource, which loads a model of its own.
- **Imports for what the request does not do**: requests and requests-oauthlib are imported by the
  calls that send something (the authorize function only builds the consent URL; the test function
  seldom refreshes); the consent URL is built without oauthlib (about 40 million).
- **Utilities bigger than their use**: the two consent routes answer without Powertools' event handler
  (their route table has one route; importing every resolver and asyncio was about a third of their
  cold start) and read the event as a dictionary (Powertools' event classes come as one package of every
  source's, about 90 million); the signing key is cached by its adapter, not by the parameters utility
  (about 60 million); refresh batches run on a thread pool with SQS's partial batch response built in
  `refresh_runs.py`, not on the async batch utility (asyncio and the event classes, about 135 million).
- **Bytecode**: the layer's Makefile compiles the layer's `.pyc` with a Python of the runtime's version
  (unchecked hash-based, so file times in the zip do not matter). Lambda cannot write a cache under
  `/opt`, and without them every cold start compiled Powertools, requests, urllib3 and qbo_connect from
  source: the **layer without bytecode** column. `make build` says when the build host has no Python 3.13.

What the service still adds to the floor's work is its own code: importing Powertools' Logger and
Metrics (about 35 million instructions) and qbo_connect's domain, ports and settings (about 110 million,
two thirds of it the dataclass decorator compiling the frozen dataclasses' methods at import), with
requests-oauthlib where a function exchanges or refreshes a token (about 50 million): 13 to 17 per
cent of the floor's instructions. The waits on AWS and Intuit, the same on both sides, hide part of it
in wall-clock time; the functions with the fewest calls show it most. The processes run the project's
Python 3.11; Lambda runs 3.13, where the same comparison (instruction counts of the set-up) differs by
under a per cent.

Rerun: `python -m bench.cold_start [ROUNDS]` (11 rounds take about four minutes on two cores) prints the
figures and the calls; `make bench` runs it with everything else. The machine is shared and noisy:
single samples vary by a factor of two under load, medians by a few per cent from run to run; the CPU
column moves least.

Built layer: {layer_text} (`make build`; pinned dependencies for arm64 and the `qbo_connect` package,
with their bytecode when a Python 3.13 is at hand; boto3 and botocore come from the runtime). The
measure is the sum of the files' sizes in MiB, which is what counts towards Lambda's 250 MB unzipped
limit: `find .aws-sam/build/SharedLayer -type f -printf '%s\\n' | awk '{{s += $1}} END {{print s / 1048576}}'`.
`du -sh` shows more: it counts whole disk blocks and the directories too."""


def _calls(calls: dict[str, int]) -> str:
    return ", ".join(f"{name.split('.')[1]} {count:,}" for name, count in calls.items()) or "none"


def table(table_rows: list[Row]) -> str:
    header = ("Metric", "Result", "Floor", "Holds")
    cells = [header, *[(r.metric, r.result, r.floor, _mark(r.holds)) for r in table_rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(4)).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(table_rows: list[Row]) -> str:
    lines = ["| Metric | Result | Floor | Holds |", "| --- | --- | --- | --- |"]
    lines += [f"| {r.metric} | {r.result} | {r.floor} | {_mark(r.holds)} |" for r in table_rows]
    return "\n".join(lines)


def _cost_table(money: dict[str, Any]) -> str:
    lines = ["| Per connection, per month | Count | USD |", "| --- | ---: | ---: |"]
    for line in money["model"]["lines"]:
        lines.append(f"| {line['what']} | {line['count_per_month']:,.1f} | {line['usd_per_month']:.5f} |")
    lines.append(f"| **Total** | | **{money['per_connection_month']:.4f}** |")
    lines += [
        "",
        "| Per deployment, per month (whatever the number of connections) | Count | USD |",
        "| --- | ---: | ---: |",
    ]
    for line in money["model"]["fixed_per_deployment"]:
        lines.append(f"| {line['what']} | {line['count_per_month']:,.0f} | {line['usd_per_month']:.4f} |")
    return "\n".join(lines)


def document(results: dict[str, Any], table_rows: list[Row]) -> str:
    m = results["machine"]
    runs = {run["connections"]: run for run in results["throughput"]}
    big = results["throughput"][-1]
    ceiling = results["cost"]["ceiling"]
    model = results["cost"]["model"]
    return f"""# Performance

Figures from `make bench` on {m["date"]}; this run took {results["elapsed_seconds"]:.0f} s.

To rerun: `make bench` (under ten minutes). It prints the same table and rewrites this file; raw
numbers land in `bench/out/results.json` and the handlers' logs in `bench/out/*.log`.
`python -m bench --report-only` rebuilds the table and this file from `results.json`;
`python -m bench --quick` tries the machinery in a minute or two with small runs and writes nothing
here. Every part also runs alone: `python -m bench.cold_start`, `python -m bench.throughput 1000`,
`python -m bench.due_finding`, `python -m bench.token_read`, `python -m bench.cost`.

Machine: {m["cpu"]}, {m["cores"]} cores, {m["memory_gb"]} GB, {m["os"]}, Python {m["python"]}, boto3
{m["boto3"]}, moto {m["moto"]}. Load average {m["load_average_at_start"]:.1f} at the start and
{m["load_average_at_end"]:.1f} at the end (other work shared the machine: throughput and cold start
are the figures it moves).

{markdown_table(table_rows)}

{cold_start_section(results)}

## Refresh throughput

The local stack (`qbo_local.stack.LocalStack`, what `make dev` runs), with due connections seeded,
then one sweep through the real fan-out path: the schedule invokes the refresh function with
`{{"action": "sweep"}}`; it queries the `refresh-due` index and sends the IDs to SQS in batches of 10;
the local event source mapping (`qbo_local.scheduler.QueueEventSource`) receives batches of 10 with
the template's batching window and `RefreshMaxConcurrency` ({big["concurrency"]}) pollers, each invoking
its own container of the refresh function, which refreshes the batch's records concurrently
(Powertools `AsyncBatchProcessor`, each record in a worker thread) through `TokenLifecycle.refresh`:
lease `UpdateItem`, `GetSecretValue`, Intuit, `PutSecretValue`, `UpdateItem` that saves and releases.
The Intuit emulator answers each token call after 150 ms. Wall time runs from the sweep's start until
the event source has deleted every message.

- **Refreshes per second**: connections refreshed divided by the wall time. The ceiling is the
  Secrets Manager write budget (`SecretsWriteBudgetPerSecond`, 40/s, enforced by the vault's rate
  limiter). In AWS each of the five instances holds a fifth of it; locally one process holds all of
  it. The floor is 90% of the budget.
- **AWS calls per refresh** are counted, not estimated: a botocore `before-call` hook on the boto3
  session the functions use counts every call by operation. The refresh function's calls (the four
  above) are reported apart from the sweep's (`Query` pages and `SendMessageBatch`, amortised over
  the refreshes) and from the event source's own SQS calls (`ReceiveMessage`, `DeleteMessageBatch`,
  which Lambda makes, and bills, outside the function). Counted per refresh with the sweep, the
  refresh path costs {big["function_calls_per_refresh"] + big["sweep_calls_per_refresh"]:.2f} calls
  ({runs.get(10_000, big)["connections"]:,} due).
- **Intuit calls per refresh**: the emulator's counter of `refresh_token` grants, divided by the
  refreshes. Exactly 1: no retries, no double refresh.
- **Connections lost**: afterwards, for every seeded connection, the item must say `connected`, both
  the item and the secret must be at generation 2, the secret's refresh token must be a new one, and
  the emulator's grant for it must have been refreshed exactly once and not revoked (the emulator
  rotates strictly: presenting a spent refresh token revokes the grant). Any connection failing one
  of these counts as lost, except one this sweep left untouched (item, secret and grant as seeded,
  its refresh token still good): that one is counted as deferred, because the next sweep refreshes
  it; it is not counted as refreshed either. Retried AWS attempts are the HTTP attempts beyond the
  calls (boto3's standard retry mode).

How it was made to reach the budget: the refresh function used to process a batch's ten records one
after another, so each instance waited on Intuit for ten 150 ms answers in a row; it now refreshes
them concurrently (commit "Refresh batches: refresh a batch's records concurrently"). The local stack
used one poller; it now runs `RefreshMaxConcurrency` pollers, as Lambda does (`--refresh-concurrency`
or `QBO_LOCAL_REFRESH_CONCURRENCY` to change it). And the benchmark found one connection in a few
thousand left for the next sweep: when the response to the lease `UpdateItem` was lost, boto3's retry
found the lease taken (by itself) and the refresh reported the connection busy; taking the lease is
now idempotent for its owner (commit "Lease: taking it is idempotent for its owner").

What the benchmark changes in the local stack, and why: moto runs in three processes of its own
(DynamoDB and EventBridge; Secrets Manager; SQS; boto3's per-service endpoint variables route each
client), because on a two-core machine moto's request handling in one interpreter with the functions
would be the bottleneck, and `bench/moto_server.py` fixes four places where moto's work per call grows
with what it holds (a scan of all secrets per lookup, quadratic SQS deletes, SQS attributes recounted
per message, a quadratic update-expression check): AWS does none of that, and without the fixes the
figure would measure moto. Seeding (connections, secrets, and grants from the emulator through
`POST /_emulator/grants`, the consent's code and exchange without a browser) is not timed.

## Finding due connections

What the scheduled run reads to find 100 due connections among 1,000, 10,000 and 100,000 stored:
`TokenLifecycle.due_connection_ids`, one `Query` on the sparse `refresh-due` index with
`access_token_expires_at <= now + margin`, `KEYS_ONLY` projection. moto answers `ConsumedCapacity`
with a constant (it does not model capacity), so the read capacity is computed from what the query
returned, as DynamoDB bills a query: the sizes of the index entries read (the table key and the index
keys) summed per page, rounded up to 4 KB, half a unit per 4 KB (index reads are eventually
consistent). DynamoDB reads only the key range the condition selects, so the entries read are the
due ones: the figure is flat in the number stored, and a sweep costs about one read unit per hundred
due connections (about 72 bytes per index entry). (moto itself scans every item to answer, which is why its own query time
grows with the table; DynamoDB does not.)

## Token read

`qbo_connect.token_access.get_access_token(connection_id)` for a connected connection, on moto in
process. From the cache: {results["token_read"]["cached_calls"]:,} calls, each timed alone. On a cold
cache (the cache forgotten before each of {results["token_read"]["cold_calls"]} calls, as in a new
container): the AWS calls per read, counted by the same botocore hook: one `GetItem` (the
connection's status and realm) and one `GetSecretValue` (the token), no refresh because the schedule
keeps the stored token valid. The cold times are moto's in-process times, not AWS's.

## Cost

Per connection and month at the default schedule (access tokens live one hour, margin 15 minutes,
sweep every 5 minutes). Prices: {cost.SOURCE}.
Secrets Manager $0.40 per secret-month and $0.05 per 10,000 calls; DynamoDB on-demand $0.625 per
million write and $0.125 per million read request units; Lambda arm64 $0.0000133334 per GB-second and
$0.20 per million requests; SQS $0.40 per million requests; EventBridge Scheduler free for the first
14 million invocations, then $1.00 per million; custom events $1.00 per million.

A connection is refreshed when its token comes within the margin of expiring, at the next sweep:
every 3600 - 900 + 300/2 = {ceiling["refresh_interval_seconds"]:.0f} s on average, so
{model["refreshes_per_day"]:.1f} refreshes a day and {model["refreshes_per_month"]:.0f} a month (not 24
a day: the margin refreshes a token a quarter of an hour before it expires). Each refresh makes the
calls counted above: two Secrets Manager calls, two DynamoDB updates (each writes the item and its
copy in the `by-name` index, which projects all attributes; the save also moves the entry in the
`refresh-due` index: 6 write units for a 1 KB item), and a tenth of each SQS call and of a Lambda
invocation (batches of 10; the duration is an estimate, about 0.6 s a batch at 512 MB, mostly
waiting on Intuit's answers, not a measurement in AWS).

{_cost_table(results["cost"])}

The secret itself is {100 * 0.40 / results["cost"]["per_connection_month"]:.0f}% of the cost. Not modelled: CloudWatch (metrics, logs, alarms) and X-Ray
traces, which depend on retention and sampling choices and not on the connection count in a simple
way; workflows' own `GetSecretValue` reads ($0.05 per 10,000).

## Scale ceiling per region

Every refresh writes the connection's secret once (`PutSecretValue`), and Secrets Manager allows 50
writes per second per region (`PutSecretValue` and the other write calls together). At
{ceiling["writes_per_connection_per_day"]:.1f} writes per connection per day, the service's 40/s budget
serves {ceiling["connections_at_budget"]:,} connections per region ({ceiling["connections_at_region_quota"]:,}
at the full 50/s quota, leaving nothing to anyone else in the account). AWS's advice of at most one
write per secret every 10 minutes holds: each secret is written every {ceiling["refresh_interval_seconds"] / 60:.1f} minutes.

Beyond it, and in bursts: the budget does not drop work, it queues it. The vault's rate limiter makes
writers wait their turn, so refreshes stretch out instead of failing (messages wait in SQS, and
instances wait on the limiter), and the margin is the slack: a token becomes due 15 minutes before it
expires, so the budget refreshes {ceiling["burst_per_margin_window"]:,} connections that fall due
together before any of their tokens expires, and {ceiling["burst_within_guarantee"]:,} within the
README's guarantee (stored tokens valid for at least margin minus one period, 10 minutes). A burst
larger than that (every connection authorized in the same few minutes) serves some tokens with less
validity than promised once, then spreads out by itself, as each late refresh starts its next cycle
later. A steady load above the ceiling does not spread out: the queue grows and tokens expire. Past
{ceiling["connections_at_budget"]:,} connections, split them over stacks in two regions or accounts
(each region has its own quota), or ask AWS for a higher write quota.
"""
