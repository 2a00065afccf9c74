"""Settings: Intuit's endpoints by default, empty values fall back, bad values are named, API hosts are pinned."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from qbo_connect import intuit
from qbo_connect.settings import Settings, SettingsError
from qbo_local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
BASE = {"QBO_TABLE_NAME": "connections"}


def test_defaults_are_intuits_endpoints():
    settings = Settings.from_environment(BASE)

    assert settings.authorization_url == "https://appcenter.intuit.com/connect/oauth2"
    assert settings.token_url == "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
    assert settings.revocation_url == "https://developer.api.intuit.com/v2/oauth2/tokens/revoke"
    assert settings.production_api_base_url == "https://quickbooks.api.intuit.com"
    assert settings.sandbox_api_base_url == "https://sandbox-quickbooks.api.intuit.com"
    assert settings.minor_version >= 75
    assert settings.refresh_margin_seconds == 900
    assert settings.http_timeout == (5.0, 30.0)


def test_empty_values_fall_back_to_the_defaults():
    empty = {
        name: "  "
        for name in (
            "QBO_INTUIT_TOKEN_URL",
            "QBO_INTUIT_AUTHORIZATION_URL",
            "QBO_REFRESH_MARGIN_SECONDS",
            "QBO_READ_TIMEOUT_SECONDS",
            "QBO_EVENT_BUS_NAME",
            "QBO_ALLOWED_API_HOSTS",
        )
    }

    settings = Settings.from_environment({**BASE, **empty})

    assert settings.token_url == intuit.TOKEN_URL
    assert settings.authorization_url == intuit.AUTHORIZATION_URL
    assert settings.refresh_margin_seconds == 900
    assert settings.read_timeout_seconds == 30.0
    assert settings.event_bus_name == "default"
    assert settings.allowed_api_hosts == frozenset()


def test_endpoints_can_be_pointed_at_a_stand_in():
    settings = Settings.from_environment(
        {
            **BASE,
            "QBO_INTUIT_TOKEN_URL": "http://localhost:8765/oauth2/v1/tokens/bearer",
            "QBO_SANDBOX_API_BASE_URL": "http://localhost:8765/",
            "QBO_ALLOWED_API_HOSTS": "localhost:8765, ",
        }
    )

    assert settings.token_url == "http://localhost:8765/oauth2/v1/tokens/bearer"
    assert settings.sandbox_api_base_url == "http://localhost:8765"
    assert settings.is_allowed_api_base_url("http://localhost:8765")


def test_a_missing_table_name_says_how_to_deploy():
    with pytest.raises(SettingsError, match="QBO_TABLE_NAME"):
        Settings.from_environment({"QBO_TABLE_NAME": ""})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("QBO_REFRESH_MARGIN_SECONDS", "fifteen"),
        ("QBO_REFRESH_MARGIN_SECONDS", "1.5"),
        ("QBO_LEASE_SECONDS", "0"),
        ("QBO_LEASE_SECONDS", "-60"),
        ("QBO_READ_TIMEOUT_SECONDS", "30s"),
        ("QBO_CONNECT_TIMEOUT_SECONDS", "-1"),
        ("QBO_MINOR_VERSION", "v75"),
    ],
)
def test_a_bad_number_is_refused_naming_the_variable(name, value):
    with pytest.raises(SettingsError) as raised:
        Settings.from_environment({**BASE, name: value})

    assert name in str(raised.value)
    assert "fix the setting" in str(raised.value)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "infinity"])
def test_a_timeout_must_be_a_finite_number(value):
    """An infinite (or NaN) timeout would let a call hang: every outbound call needs a real one."""
    with pytest.raises(SettingsError, match="QBO_READ_TIMEOUT_SECONDS"):
        Settings.from_environment({**BASE, "QBO_READ_TIMEOUT_SECONDS": value})


@pytest.mark.parametrize("url", ["https://quickbooks.api.intuit.com", "https://sandbox-quickbooks.api.intuit.com"])
def test_intuits_two_api_hosts_over_https_are_allowed(url):
    assert Settings.from_environment(BASE).is_allowed_api_base_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://quickbooks.api.intuit.com",
        "http://sandbox-quickbooks.api.intuit.com",
        "https://evil.example",
        "https://quickbooks.api.intuit.com@evil.example",
        "https://user:pass@quickbooks.api.intuit.com",
        "https://quickbooks.api.intuit.com.evil.example",
        "https://evil-quickbooks.api.intuit.com",
        "https://quickbooks-api-intuit.com",
        "https://quickbooks.api.intuit.com:8443",
        "https://sandbox-quickbooks.api.intuit.co",
        "ftp://quickbooks.api.intuit.com",
        "quickbooks.api.intuit.com",
        "//quickbooks.api.intuit.com",
        "",
    ],
)
def test_other_hosts_plain_http_and_userinfo_tricks_are_refused(url):
    assert not Settings.from_environment(BASE).is_allowed_api_base_url(url)


def test_explicitly_allowed_hosts_are_accepted_and_only_those():
    settings = Settings.from_environment({**BASE, "QBO_ALLOWED_API_HOSTS": "localhost:8765,qbo.emulator.test"})

    assert settings.is_allowed_api_base_url("http://localhost:8765")
    assert settings.is_allowed_api_base_url("https://qbo.emulator.test")
    assert not settings.is_allowed_api_base_url("http://localhost:8766")
    assert not settings.is_allowed_api_base_url("https://localhost:8765@evil.example")
    assert not settings.is_allowed_api_base_url("ftp://localhost:8765")


@given(host=st.from_regex(r"[a-z0-9.-]{1,40}", fullmatch=True))
def test_no_unlisted_host_is_ever_allowed(host):
    settings = Settings.from_environment(BASE)
    intuit_hosts = {"quickbooks.api.intuit.com", "sandbox-quickbooks.api.intuit.com"}

    assert settings.is_allowed_api_base_url(f"https://{host}") == (host in intuit_hosts)


@pytest.mark.parametrize(
    ("schedule", "period", "expected"),
    [
        ("rate(5 minutes)", None, 300),
        ("rate(1 minute)", None, 60),
        ("rate(2 hours)", None, 7200),
        ("rate(10 minutes)", "600", 600),
        ("cron(0/5 * * * ? *)", "300", 300),
        (None, None, 300),
        (None, "120", 120),
    ],
)
def test_the_sweep_period_is_derived_from_a_rate_schedule_or_given_for_a_cron_one(schedule, period, expected):
    env = {**BASE, "QBO_REFRESH_SCHEDULE": schedule, "QBO_REFRESH_PERIOD_SECONDS": period}

    settings = Settings.from_environment({k: v for k, v in env.items() if v is not None})

    assert settings.refresh_period_seconds == expected


@pytest.mark.parametrize(
    ("schedule", "period", "named"),
    [
        ("rate(10 minutes)", "300", "disagrees with RefreshSchedule 'rate(10 minutes)' (600 s)"),
        ("cron(0/5 * * * ? *)", None, "set RefreshPeriodSeconds"),
    ],
)
def test_a_period_that_disagrees_with_the_schedule_or_is_missing_for_cron_is_refused(schedule, period, named):
    env = {**BASE, "QBO_REFRESH_SCHEDULE": schedule} | ({"QBO_REFRESH_PERIOD_SECONDS": period} if period else {})

    with pytest.raises(SettingsError, match=re.escape(named)):
        Settings.from_environment(env)


def test_the_templates_refresh_defaults_let_a_batch_wait_for_the_write_budget_within_the_vault_deadline() -> None:
    template = load_template(ROOT / "template.yaml")["Parameters"]
    env = {
        **BASE,
        "QBO_SECRETS_WRITE_BUDGET": str(template["SecretsWriteBudgetPerSecond"]["Default"]),
        "QBO_WRITE_BUDGET_SHARES": str(template["RefreshMaxConcurrency"]["Default"]),
        "QBO_REFRESH_BATCH_SIZE": str(template["RefreshBatchSize"]["Default"]),
    }

    settings = Settings.from_environment(env)

    assert (
        settings.refresh_batch_size / settings.secrets_writes_per_second_here <= settings.vault_write_deadline_seconds
    )


def test_a_batch_that_would_wait_past_the_vault_deadline_for_the_write_budget_is_refused() -> None:
    # 100 records on a 40/s budget shared by 50 instances: 125 s in memory before the last write.
    env = {**BASE, "QBO_SECRETS_WRITE_BUDGET": "40", "QBO_WRITE_BUDGET_SHARES": "50", "QBO_REFRESH_BATCH_SIZE": "100"}

    with pytest.raises(SettingsError, match="lower RefreshBatchSize or RefreshMaxConcurrency"):
        Settings.from_environment(env)
