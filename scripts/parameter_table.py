"""Regenerate the parameter table of ``fits/data/README.md`` (fixed or estimated, bounds, why,
source) from ``model/abscopal/data/parameters.csv``, the one source of what the fit estimates.

Run: python scripts/parameter_table.py          (rewrites the table in place)
     python scripts/parameter_table.py --check  (exit 1 when the README is out of date)
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "model/abscopal/data/parameters.csv"
README = ROOT / "fits/data/README.md"
HEADER = "| parameter | fixed or estimated | bounds | why | source |"
LAST = "| drug PK (`ka_*`, `ke_*`, `vd_*`, `ec50_*`)"

WHY_ESTIMATED = {
    "yes": "estimated (shared): a mechanism the records constrain",
    "line": "estimated per tumour line of the fitted records: the absolute immune strength of a line is set by the "
    "fitted shared parameters, so no table value can stand for it",
    "growth": "estimated per line with growth data (fitted time courses); other lines keep tumour_lines.csv",
}
STATUS = {"yes": "estimated", "line": "estimated per line", "growth": "estimated per line with growth data", "no": "fixed"}


def table() -> list[str]:
    out = [HEADER, "| --- | --- | --- | --- | --- |"]
    for r in csv.DictReader(CSV.open()):
        # drug PK, and the PD of agents left at assumed values, are summarised in one last row
        if r["group"] == "pk" or (r["group"] == "pd" and r["estimate"] == "no" and r["source"].startswith("assumed")):
            continue
        est = r["estimate"]
        if est == "no":
            why = (
                "not identified by the records: fixed at an assumed value"
                if r["source"].startswith("assumed")
                else "literature value"
            )
            if r["group"] == "numerics":
                why = "numerical guard"
            if r["name"] == "sting":
                why = "a switch (STING-deficient arms set 0)"
        else:
            why = WHY_ESTIMATED[est]
        src = r["source"].replace("|", "/")
        out.append(f"| `{r['name']}` | {STATUS[est]} | [{r['lower']}, {r['upper']}] {r['unit']} | {why} | {src} |")
    out.append(
        f"{LAST} and the PD of the agents not listed above | fixed | see `parameters.csv` | no fitted record uses the "
        "agent, or its PK is not observed | `parameters.csv` (Kosinsky 2018 for IgG PK, else assumed) |"
    )
    return out


def updated(text: str) -> str:
    lines = text.splitlines()
    start = lines.index(HEADER)
    end = next(i for i in range(start, len(lines)) if lines[i].startswith(LAST))
    return "\n".join(lines[:start] + table() + lines[end + 1 :]) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check that the README is up to date")
    args = ap.parse_args()
    text = README.read_text()
    new = updated(text)
    if args.check:
        if new != text:
            print(f"{README} is out of date: run python scripts/parameter_table.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
