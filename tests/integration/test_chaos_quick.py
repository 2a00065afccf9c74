"""The quick profile of `make chaos`: six rounds of the randomized soak, judged like the full one."""

from __future__ import annotations

import os

from chaos.soak import QUICK, run


def test_the_quick_soak_loses_no_grant_it_could_have_kept_and_reports_each_loss_within_a_period() -> None:
    environment = dict(os.environ)

    result = run(QUICK)

    # Its AWS endpoint and keys were for its own servers: a later test in this process must not inherit them.
    # (The OAuth adapter allows http to a loopback emulator process-wide, on purpose: that one may stay.)
    names = (environment.keys() | os.environ.keys()) - {"OAUTHLIB_INSECURE_TRANSPORT"}
    changed = {name for name in names if environment.get(name) != os.getenv(name)}
    assert not changed, f"the soak left these variables changed: {sorted(changed)}"

    assert result.profile.refreshers >= 8 and result.profile.connections >= 20
    assert result.refreshes >= QUICK.cycles * 0.8, result.outcomes  # most cycles refreshed despite faults
    assert result.avoidable == 0, result.incidents
    assert result.resends_without_unknown_outcome == 0, result.incidents
    assert result.connected_while_dead == 0
    assert result.worst_report_seconds <= 300
    # Faults really happened: answers were lost (and reported), and the vault refused writes.
    assert result.outcomes["outcome_unknown"] >= 1 and result.grants_lost >= 1
    assert sum(
        result.scenarios[k].runs for k in ("InternalServiceError", "ThrottlingException", "LimitExceededException")
    )
    # One Intuit call per refresh, plus at most one check per unknown outcome.
    assert result.intuit_refresh_calls <= result.refreshes + result.outcomes["outcome_unknown"] + result.grants_lost
