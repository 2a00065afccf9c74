"""python -m chaos [--quick] [--rounds N] [--no-write]: run the soak, print the table, write docs/reliability.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chaos.report import render
from chaos.soak import FULL, QUICK, run, with_rounds

REPORT = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few rounds (what `make test` runs)")
    parser.add_argument("--rounds", type=int, help="rounds to run instead of the profile's")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/reliability.md alone")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    if args.rounds:
        profile = with_rounds(profile, args.rounds)
    print(
        f"chaos: {profile.rounds} rounds x {profile.connections} connections = {profile.cycles} refresh cycles, "
        f"{profile.refreshers} refresher processes",
        flush=True,
    )
    result = run(profile)
    text = render(result)
    print(text)
    if not args.no_write and not args.quick:
        REPORT.write_text(text)
        print(f"wrote {REPORT.relative_to(REPORT.parent.parent)}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
