"""The runbook an operator opens when an alarm notifies them (docs/alarms.md) names every alarm of
template.yaml as CloudWatch shows it (the logical ID inside the generated alarm name) and says what to
do; nothing in the docs points them to an alarm the template does not have."""

from __future__ import annotations

import re
from pathlib import Path

from qbo_local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "alarms.md"
ALARMS = {
    name
    for name, resource in load_template(ROOT / "template.yaml")["Resources"].items()
    if resource["Type"] == "AWS::CloudWatch::Alarm"
}
# "alarm `X`", "`X` alarm", "the X alarm", or any word ending in Alarm: what a reader would search for.
MENTIONS = re.compile(r"alarms? `(\w+)`|`(\w+)` alarm|\bthe (\w+) alarm|\b([A-Z]\w*Alarm)\b")


def _sections() -> dict[str, str]:
    text = RUNBOOK.read_text()
    parts = re.split(r"^### (\S+)\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_alarm_has_a_runbook_section_that_says_what_to_do():
    sections = _sections()

    assert set(sections) == ALARMS
    for name, body in sections.items():
        assert "**Do:**" in body, f"{name}: the section says what it means but not what to do"


def test_the_docs_name_only_alarms_the_template_has():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        named = {next(group for group in match.groups() if group) for match in MENTIONS.finditer(page.read_text())}
        assert named <= ALARMS, f"{page.relative_to(ROOT)} names alarms the template lacks: {sorted(named - ALARMS)}"
