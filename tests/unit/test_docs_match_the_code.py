"""What the README and docs/ tell a user, checked against what the code does, so the two cannot drift apart:
the tests a threat model cites exist, the connection secret's documented fields are the ones written, the
error-code tables list every code the test function answers with, the documented JSON examples have the
fields the code produces, and the CLI reference names exactly the options the CLI takes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import pytest
from qbo_connect.domain.connection import Connection, RefreshPolicy
from qbo_connect.domain.events import EventType, connection_event
from qbo_connect.domain.secret_document import ConnectionSecret
from qbo_connect.domain.token_set import TokenSet
from qbo_connect.domain.webhooks import EntityChange, entity_changed_event
from qbo_connect.intuit import Environment
from qbo_connect_cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
WORKFLOWS = (ROOT / "docs/workflows.md").read_text()
DOCS = {path.relative_to(ROOT).as_posix(): path.read_text() for path in [ROOT / "README.md", *ROOT.glob("docs/*.md")]}
TEST_RESPONSE = json.loads((ROOT / "docs/schemas/test-function.response.schema.json").read_text())
TOKEN_RESPONSE = json.loads((ROOT / "docs/schemas/token-function.response.schema.json").read_text())


def section(text: str, heading: str) -> str:
    """The text under a markdown heading, up to the next heading of the same or a higher level (lines in code
    blocks are never headings)."""
    lines, level, fenced = [], None, False
    for line in text.splitlines(keepends=True):
        fenced = fenced != line.startswith("```")
        hashes = len(line) - len(line.lstrip("#"))
        is_heading = not fenced and hashes and line[hashes : hashes + 1] == " "
        if level is None:
            if is_heading and line[hashes + 1 :].strip() == heading:
                level = hashes
            continue
        if is_heading and hashes <= level:
            break
        lines.append(line)
    assert level is not None, f"no section {heading!r}"
    return "".join(lines)


def json_blocks(text: str) -> list[Any]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]


def dotted_fields(document: dict[str, Any], prefix: str = "") -> set[str]:
    fields = set()
    for key, value in document.items():
        fields.add(prefix + key)
        if isinstance(value, dict):
            fields |= dotted_fields(value, f"{prefix}{key}.")
    return fields


def first_column(table_text: str) -> list[str]:
    """The backquoted names in the first column of a markdown table's rows (header and rule excluded)."""
    rows = [line for line in table_text.splitlines() if line.startswith("|")][2:]
    return [name for row in rows for name in re.findall(r"`([^`]+)`", row.split("|")[1])]


# --- the tests a page cites -----------------------------------------------------------------------------
def test_every_test_the_docs_cite_exists():
    """docs/security.md proves each defence by naming its test (`module::test_name`): a name that no test has
    is a defence nobody checks."""
    test_names = {
        match
        for path in (ROOT / "tests").rglob("test_*.py")
        for match in re.findall(r"^def (test_\w+)", path.read_text(), re.M)
    }
    cited = {
        (page, reference) for page, text in DOCS.items() for reference in re.findall(r"`([\w/.]+::test_\w+)`", text)
    }
    assert cited, "the docs cite no test: the pattern above no longer finds them"
    missing = sorted(f"{page}: {reference}" for page, reference in cited if reference.split("::")[1] not in test_names)
    assert missing == []


# --- the connection secret -------------------------------------------------------------------------------
def written_secret() -> dict[str, Any]:
    token_set = TokenSet(
        access_token="a" * 20,
        refresh_token="r" * 20,
        expires_at=1795880000.5,
        refresh_token_expires_at=1804600000.5,
        refresh_token_hard_expires_at=1953000000.5,
        scopes=("com.intuit.quickbooks.accounting",),
        obtained_at=1795876400.5,
    )
    secret = ConnectionSecret(
        connection_id="qbc-1a2b3c4d5e6f",
        client_id="ABc",
        base_url="https://sandbox-quickbooks.api.intuit.com",
        client_secret="s" * 20,
        token_set=token_set,
        realm_id="9341453050000001",
        generation=42,
        updated_at=1795876400.5,
        refresh_policy=RefreshPolicy.EAGER,
    )
    return json.loads(secret.to_json())


def test_the_readmes_secret_example_has_exactly_the_fields_written():
    (example,) = [block for block in json_blocks(README) if block.get("schema") == "qbo-connect/connection-secret/v1"]
    written = written_secret()
    assert dotted_fields(example) == dotted_fields(written)
    assert {key: type(value) for key, value in example["token_set"].items()} == {
        key: type(value) for key, value in written["token_set"].items()
    }


def test_the_workflows_pages_secret_table_lists_every_field_written():
    """A reader in another language learns the contract from this table: a field missing from it (such as
    `refresh_policy`, which says whether the stored access token is kept valid at all) is one they never check."""
    table = section(WORKFLOWS, "The connection secret")
    assert sorted(first_column(table.split("**What is guaranteed fresh")[0])) == sorted(dotted_fields(written_secret()))


# --- the test and token functions ------------------------------------------------------------------------
def schema_error_codes(schema: dict[str, Any]) -> set[str]:
    return {entry["const"] for entry in schema["$defs"]["error_code"]["oneOf"]}


@pytest.mark.parametrize(
    ("page", "heading"),
    [("README.md", "The test function (JSON contract)"), ("docs/workflows.md", "The test function")],
)
def test_each_error_code_table_lists_every_code_the_test_function_answers_with(page, heading):
    table = section(DOCS[page], heading).split("| `error.code` |", 1)[1]
    listed = {code for cell in first_column("| `error.code` |" + table) for code in re.split(r",\s*", cell)}
    assert listed == schema_error_codes(TEST_RESPONSE)


def test_the_readmes_test_function_answers_have_the_schemas_fields():
    success, failure = json_blocks(section(README, "The test function (JSON contract)"))[:2]
    branches = TEST_RESPONSE["$defs"]
    assert set(branches["success"]["required"]) <= set(success) <= set(branches["success"]["properties"])
    assert set(branches["failure"]["required"]) <= set(failure) <= set(branches["failure"]["properties"])
    assert set(failure["error"]) <= set(branches["error"]["properties"])
    deep = next(block for block in json_blocks(section(WORKFLOWS, "The test function")) if "checks" in block)
    assert set(branches["success"]["required"]) <= set(deep) <= set(branches["success"]["properties"])


def test_the_readmes_token_function_answer_and_codes_are_the_schemas():
    text = section(README, "The token function (JSON contract)")
    (answer,) = json_blocks(text)
    success = TOKEN_RESPONSE["$defs"]["success"]
    assert set(success["required"]) <= set(answer) <= set(success["properties"])
    listed = set(re.findall(r"`([a-z_]+)`", text.split("with the test function's codes", 1)[1].split(")", 1)[0]))
    assert listed == schema_error_codes(TOKEN_RESPONSE)


# --- events -------------------------------------------------------------------------------------------------
def test_the_readmes_event_detail_example_has_the_fields_every_event_carries():
    (example,) = [block for block in json_blocks(section(README, "Events (EventBridge, source `qbo-connect`)"))]
    connection = Connection(
        connection_id="qbc-1", name="Acme US", environment=Environment.PRODUCTION, client_id="ABc", base_url="https://x"
    )
    published = connection_event(EventType.RESET, connection, now=1795876400.0).detail
    assert set(example) - {"..."} == set(published)
    listed = re.findall(r"`(Connection [A-Za-z ]+)`", section(README, "Events (EventBridge, source `qbo-connect`)"))
    assert set(listed) >= {kind.value for kind in EventType}


def test_the_readmes_entity_changed_example_has_the_fields_published():
    example = next(block for block in json_blocks(README) if "entity_id" in block)
    change = EntityChange(
        event_id="e", realm_id="1", entity="Invoice", entity_id="145", operation="Create",
        occurred_at="2026-11-28T14:41:41.179+00:00", payload_format="cloudevents",
    )  # fmt: skip
    connection = Connection(
        connection_id="qbc-1", name="Acme US", environment=Environment.PRODUCTION, client_id="ABc", base_url="https://x"
    )
    assert set(example) == set(entity_changed_event(connection, change).detail)


# --- the CLI reference ----------------------------------------------------------------------------------------
def cli_reference_rows() -> list[tuple[str, str]]:
    """(command words, documented synopsis) for each row of the README's CLI table."""
    rows = []
    for line in section(README, "CLI reference").splitlines():
        for synopsis in re.findall(r"^\| `([a-z][^`]*)`|/ `([a-z][^`]*)`", line):
            text = next(s for s in synopsis if s)
            words = re.match(r"[a-z][a-z-]*(?: [a-z][a-z-]*)?", text).group(0).split()
            rows.append((words, text))
    return rows


def command_for(words: list[str]) -> click.Command:
    command: click.Command = cli
    for word in words:
        assert isinstance(command, click.Group), words
        found = command.commands.get(word)
        if found is None:
            break
        command = found
    return command


def documented_command_options() -> list[tuple[str, set[str], set[str]]]:
    """(command, options the README names, option names the command takes); --output and --help are global."""
    cases = []
    for words, synopsis in cli_reference_rows():
        command = command_for(words)
        documented = set(re.findall(r"(--[a-z-]+)", synopsis))
        taken = {
            tuple(name for name in [*param.opts, *param.secondary_opts] if name.startswith("--"))
            for param in command.params
            if isinstance(param, click.Option) and "--output" not in param.opts and "--help" not in param.opts
        }
        cases.append((" ".join(words), documented, taken))
    return cases


def test_the_cli_reference_covers_every_command():
    documented = {" ".join(words) for words, _ in cli_reference_rows()}
    real = set()
    for name, command in cli.commands.items():
        if isinstance(command, click.Group):
            real |= {f"{name} {sub}" for sub in command.commands}
        else:
            real.add(name)
    assert real == documented


CLI_CASES = documented_command_options()


@pytest.mark.parametrize(("command", "documented", "taken"), CLI_CASES, ids=[case[0] for case in CLI_CASES])
def test_the_cli_reference_names_exactly_the_options_each_command_takes(command, documented, taken):
    unknown = {option for option in documented if not any(option in names for names in taken)}
    undocumented = {names[0] for names in taken if not documented & set(names)}
    assert (unknown, undocumented) == (set(), set())
