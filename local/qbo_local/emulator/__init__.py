"""A development and test emulator of Intuit's OAuth 2.0 server and the QuickBooks Online accounting API.

It never ships in the Lambda layer. Paths mirror Intuit's, so a client only swaps the host:

    GET  /connect/oauth2                 consent page (HTML, no script); POST /connect/oauth2/decision
    POST /oauth2/v1/tokens/bearer        authorization_code and refresh_token grants (strict rotation)
    POST /v2/oauth2/tokens/revoke        JSON {"token": ...}, HTTP Basic client auth: disconnects the app from
                                         the token's company (every grant of the app there ends)
    GET  /.well-known/openid_sandbox_configuration   discovery pointing at this emulator
    GET  /v1/openid_connect/userinfo     who consented (openid scope): sub, and email/names as the scopes allow
    GET  /op/v1/jwks                     the RS256 key the ID tokens are signed with (ID token and userinfo
                                         name the same person: whoever was signed in when Connect was clicked)
    /v3/company/<realm>/companyinfo/<realm>, /preferences, /customer, /invoice, /query, /reports/ProfitAndLoss,
    /cdc (change data capture, deleted objects included), /batch (up to Intuit's per-request limit)
                                         a query leaves inactive customers out unless its where clause
                                         names Active (`Active IN (true, false)`), as Intuit's does

Python:

    from qbo_local.emulator import EmulatorConfig, EmulatorServer, create_app
    app = create_app(EmulatorConfig(clock=fake_clock, sleep=fake_sleep))   # app.emulator: the state
    app.emulator.faults.inject("token", "http_503", times=2)
    app.emulator.stats.grant_type("refresh_token")
    with EmulatorServer(EmulatorConfig(), port=0) as server:               # server.url, server.emulator
        ...

Standalone: ``python -m qbo_local.emulator --port 8181``.

Admin API (JSON in and out, for tests and the local stack only):

    GET    /_emulator/health             {"status": "ok", "companies": n, "now": epoch}
    GET    /_emulator/stats              {"calls": {"authorize", "decision", "token", "revoke", "api": n},
                                          "grant_types": {"authorization_code": n, "refresh_token": n},
                                          "api_resources": {"companyinfo": n, "customer": n, "query": n, ...}}
    DELETE /_emulator/stats              zero the counters
    GET    /_emulator/faults             the knobs now set
    POST   /_emulator/faults             one knob object, or a list of them:
             {"group": "token"|"revoke"|"api"|"userinfo", "delay": seconds}
             {"group": ..., "latency": "long_tail" | {"median_seconds", "p99_seconds", "slow_share",
              "slow_min_seconds", "slow_max_seconds", "seed"}}: each answer waits a delay drawn from a
              lognormal (median, p99) with a share sent to a slow tail (latency.py)
             {"group": ..., "fault": KIND, "times": n (default 1; null or "until_cleared": true = until
              cleared), "seconds": stall for timeout (default 130), "process": true (timeout: handle the
              request after the stall; false: answer 504), "retry_after": 60 (http_429),
              "grant_type": "refresh_token" (token group: match only that grant type)}
             {"include_hard_expiry": "header" (default, like Intuit) | "always" | "never"}
           KIND: http_500, http_503, http_429, timeout, invalid_grant, invalid_client, connection_reset
           (on the api group, invalid_grant and invalid_client answer the 401 AuthenticationFailed fault)
    DELETE /_emulator/faults[?group=api] clear faults and delays (all groups: also include_hard_expiry)
    POST   /_emulator/clients            {"client_id": ..., "client_secret": ...}
    GET    /_emulator/companies          {"companies": [{"realm_id", "name"}]}
    POST   /_emulator/companies          {"realm_id": ..., "name": ...}  (seeded with seed_customers customers)
    POST   /_emulator/companies/<realm>/customers   {"count": 250}  -> {"created", "total"}
    POST   /_emulator/companies/<realm>/subscription {"lapsed": true}: the company's QuickBooks subscription
                                         lapsed: every accounting call answers 403, fault 3100
                                         (ApplicationAuthorizationFailed); OAuth and refreshes keep
                                         working. {"lapsed": false}: renewed. Or the other shape Intuit
                                         documents, {"status": "SUSPENDED"}: CompanyInfo reports it
                                         (NameValue SubscriptionStatus, default SUBSCRIBED); in CANCELED,
                                         CANCELLED, EXPIRED, SUSPENDED or RESTRICTED the company is read only:
                                         reads answer, writes (entities, batch items) get fault 6190
                                         (Invalid Company Status)
    GET    /_emulator/config             the run-time tunable settings
    POST   /_emulator/config             any of access_token_seconds, refresh_token_seconds,
                                         hard_expiry_seconds, refresh_token_rotation_seconds (0: every
                                         refresh rotates; 86400: the same refresh token for a day, as
                                         Intuit), auth_code_seconds, open_registration,
                                         rate_limits, rate_limit_per_second, rate_limit_per_minute,
                                         max_concurrent, rate_limit_batch_per_minute
    GET    /_emulator/person             who is signed in: {"sub", "email", "given_name", "family_name"}
    POST   /_emulator/person             {"email", "given_name", "family_name"}: sign someone else in; the
                                         next consent is theirs (sub is stable per email)
    GET    /_emulator/grants             grants without token values (refresh_count, revoked, ...)
    POST   /_emulator/grants             {"client_id", "realm_id", "count": n, "scopes": [...]}: n consents at
                                         once (benchmarks) -> {"grants": [{"grant_id", "access_token",
                                         "refresh_token", "expires_in", ...}]}
    POST   /_emulator/grants/<id>/revoke as if the user disconnected the app in QuickBooks
    POST   /_emulator/clock              {"advance": seconds}: move the emulator's time forward
    GET    /_emulator/webhooks           {"subscriptions": [{"client_id", "url", "format"}], "deliveries":
                                          [{"client_id", "realm_id", "changes", "attempts", "delivered"}]}
    POST   /_emulator/webhooks           {"client_id", "url", "verifier_token", "format": "cloudevents"
                                         (default) | "legacy"}: send that app signed webhooks whenever
                                         an entity of a company it holds a grant on changes
    DELETE /_emulator/webhooks[?client_id=]  stop sending
    POST   /_emulator/webhooks/flush     {"timeout": 30}: wait until every queued change was delivered
    POST   /_emulator/reset              forget codes, grants, tokens, counters, rate windows, clock offset
"""

from .config import EmulatorConfig
from .faults import FaultKind, Group, HardExpiryMode
from .server import EmulatorServer, create_app
from .state import EmulatorState

__all__ = [
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorState",
    "FaultKind",
    "Group",
    "HardExpiryMode",
    "create_app",
]
