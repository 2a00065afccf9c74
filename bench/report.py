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
    for cold in results["cold_start"]:
        out.append(
            Row(
                f"Cold start: {cold['function']} handler import",
                f"{cold['median_ms']:.0f} ms = {cold['ratio']:.2f} x floor ({cold['floor_ms']:.0f} ms)",
                "<= 1.15 x floor",
                cold["holds"],
            )
        )
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
    floor_ms = results["cold_start"][0]["floor_ms"]
    layer = results["layer"]
    layer_text = (
        f"{layer['bytes'] / 1024 / 1024:.1f} MiB in {layer['files']} files"
        if layer.get("bytes")
        else f"not measured ({layer.get('note')})"
    )
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

## Cold start

For each function, a fresh Python process imports the handler module (`functions/<name>/app.py`)
and runs its module-level set-up, with the function's folder and the layer folder on `sys.path` and
the environment Lambda gives it (the template's `QBO_*` and `POWERTOOLS_*` variables,
`AWS_LAMBDA_FUNCTION_NAME`, `LAMBDA_TASK_ROOT`; tracing is active in the template, so the X-Ray
tracer is on and patches boto3 and requests, as in Lambda). The floor is a process that only imports
boto3 and creates a DynamoDB and a Secrets Manager client. The time is taken inside each process from
just before the import to just after, so interpreter start-up (the same for all) is left out. The
floor and the four functions run interleaved, in a shuffled order each round, 11 rounds after one
warm-up round; each figure is the median (floor: {floor_ms:.0f} ms).

The handlers stay near the floor because their module-level set-up is cheap: `runtime.services()`
creates no client until a request needs one, and `runtime.py` imports each adapter (boto3's
DynamoDB resource, requests-oauthlib, Powertools' batch utility and parameters) only when it first
builds it. What a handler still imports at load is Powertools' Logger, Metrics and Tracer (whose
X-Ray recorder creates its own botocore clients and patches boto3 and requests), plus the event
handler for the two HTTP functions: about what the floor's two clients cost (loading endpoint rules
and service models). Before the lazy imports the two HTTP handlers measured 1.18 and 1.26 times
the floor. The machine is shared and noisy: single runs vary by a factor of two, the medians by a
few per cent from one run to the next.

Built layer: {layer_text} (`make build`; pinned dependencies for arm64 and the `qbo_connect`
package; boto3 and botocore come from the runtime). The measure is the sum of the files' sizes in
MiB, which is what counts towards Lambda's 250 MB unzipped limit:
`find .aws-sam/build/SharedLayer -type f -printf '%s\\n' | awk '{{s += $1}} END {{print s / 1048576}}'`.
`du -sh` shows more (about 11M): it counts whole disk blocks and the directories too.

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
