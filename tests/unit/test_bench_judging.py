"""How the benchmark judges its runs: floors only where a run can show them, the scale model's arithmetic,
and progress lines that name the sizes actually run (a quick run once failed its own full-size floors)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench import cost
from bench.__main__ import Plan
from bench.throughput import RunResult, parse_runs


def a_run(**changes) -> RunResult:
    run = RunResult(
        connections=2_500,
        region_connections=10_000,
        slice=0.25,
        profile="long_tail",
        due=2_500,
        enqueued=2_500,
        wall_seconds=270.0,
        refreshed=2_500,
        refreshes_per_second=9.3,
        budget_per_second=10.0,
        concurrency=12,
        batch_size=20,
        period_seconds=300,
        function_calls={
            "dynamodb.UpdateItem": 5_000,
            "secretsmanager.GetSecretValue": 2_500,
            "secretsmanager.PutSecretValue": 2_500,
        },
        function_calls_per_refresh=4.0,
        sweep_calls={},
        sweep_calls_per_refresh=0.1,
        attempts_per_refresh=4.0,
        event_source_calls={},
        event_source_calls_per_refresh=0.2,
        intuit_calls_per_refresh=1.0,
        lost=0,
        function_cpu_ms_per_refresh=16.0,
        sustained_per_second=9.6,
        due_to_saved_p99=256.0,
        outcomes={"refreshed": 2_500},
    )
    return replace(run, **changes)


def test_a_full_run_is_judged_on_every_floor():
    assert a_run().holds
    assert a_run(refreshes_per_second=8.9).checks["rate"] is False  # the whole sweep, drain included
    assert a_run(due_to_saved_p99=301.0).checks["due_to_saved_p99"] is False
    assert a_run(function_cpu_ms_per_refresh=20.5).checks["function_cpu"] is False
    assert a_run(lost=1).holds is False


def test_a_run_too_small_to_reach_its_steady_rate_is_not_judged_on_rate_or_delay_but_on_the_rest():
    # 200 due over 5 instances of 20: each instance takes two batches, all ramp-up and drain.
    small = a_run(connections=200, concurrency=5, sustained_per_second=3.0, due_to_saved_p99=900.0)

    assert small.checks["rate"] is None and small.checks["due_to_saved_p99"] is None
    assert small.holds
    assert a_run(connections=200, concurrency=5, intuit_calls_per_refresh=1.02).holds is False


def test_a_message_delivered_twice_may_cost_one_more_lease_attempt_and_no_more():
    twice = {
        "dynamodb.UpdateItem": 5_003,
        "secretsmanager.GetSecretValue": 2_500,
        "secretsmanager.PutSecretValue": 2_500,
    }

    assert a_run(function_calls=twice, outcomes={"refreshed": 2_500, "busy": 3}).checks["aws_calls"] is True
    assert a_run(function_calls=twice, outcomes={"refreshed": 2_500, "busy": 2}).checks["aws_calls"] is False


def test_a_million_connections_five_percent_eager_stay_within_the_write_budget():
    mix = cost.PolicyMix(1_000_000, 0.05)
    eager_per_day = 86_400 / cost.refresh_interval_seconds()

    assert mix.writes_per_second == pytest.approx((50_000 * eager_per_day + 950_000 * 1.0) / 86_400)
    assert mix.holds
    assert (
        cost.PolicyMix(1_000_000, 0.05, on_demand_refreshes_per_day=mix.most_on_demand_refreshes_per_day + 0.01).holds
        is False
    )
    assert cost.PolicyMix(1_000_000, 1.0).holds is False  # all eager: far past one region's quota


def test_an_on_demand_connection_costs_less_than_an_eager_one_and_the_secret_is_most_of_either():
    prices = cost.per_policy()

    assert cost.SECRET_MONTH < prices["on_demand"] < prices["eager"] < 1.1 * cost.SECRET_MONTH


def test_the_quick_plan_names_the_sizes_it_runs():
    quick = Plan.quick()

    assert quick.describe("throughput") == "2,000 due (constant), 2,000 due (long_tail) in a region, run as a 0.1 slice"
    assert quick.describe("due_finding").startswith("1,000 / 5,000 stored")
    assert quick.describe("on_demand").startswith("40 cold requests, 5 connections")
    assert Plan().describe("throughput") == (
        "10,000 due (constant), 10,000 due (long_tail) in a region, run as a 0.25 slice"
    )


@pytest.mark.parametrize("argv", [["10000:slow"], ["ten"], ["--slice", "2", "100"], ["--slice"]])
def test_a_run_the_benchmark_cannot_make_is_refused_with_what_it_takes(argv):
    with pytest.raises(SystemExit, match=r"bench\.throughput"):
        parse_runs(argv)


def test_a_webhook_part_that_runs_over_its_time_keeps_the_runs_other_figures_and_fails_its_row(monkeypatch):
    import subprocess

    import bench.__main__ as bench_main

    def over_time(module, args, timeout):
        raise subprocess.TimeoutExpired(module, timeout)

    monkeypatch.setattr(bench_main, "_run_module", over_time)

    part = bench_main._webhook_answer(())

    assert part["sizes"] == []
    assert part["rows"] == [
        {
            "metric": "webhook answer",
            "result": "not measured: it ran over 900 s (bench/out/webhook_answer.log)",
            "floor": "p99 < 3,000 ms (Intuit's limit)",
            "holds": False,
        }
    ]
