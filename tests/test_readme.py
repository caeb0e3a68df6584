"""The README is a user's guide whose examples run: its Python block executes, its test command is
the one CI runs, and every command of its table is one the CLI knows."""

import re
import shlex
from pathlib import Path

import pytest

from abscopal.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_python_example_runs():
    ns = {}
    exec(compile(_blocks("python")[0], "README.md", "exec"), ns)
    df = ns["df"]
    assert {"day", "site", "volume_mm3"} <= set(df.columns)
    assert set(df["site"]) == {"irradiated", "abscopal"}
    assert (df["volume_mm3"] >= 0).all() and df["day"].max() == pytest.approx(40.0)
    assert ns["fit"].params("CT26").values.shape == ns["fit"].params().values.shape


def test_test_command_is_what_ci_runs():
    readme_line = _blocks("bash")[0].strip().splitlines()[1]
    ci_line = [ln for ln in (ROOT / ".ci/run").read_text().splitlines() if ln.startswith("python -m pytest")][0]
    assert readme_line.replace(".venv/bin/python", "python") == ci_line


def test_table_commands_parse():
    parser = build_parser()
    cmds = re.findall(r"`(abscopal [^`]+)`", README)
    table = [c for c in cmds if len(c.split()) > 2]
    assert len(table) >= 9
    for cmd in table:
        args = shlex.split(cmd)[1:]
        try:
            parser.parse_args(args)
        except SystemExit as e:  # argparse exits on an unknown option or command
            pytest.fail(f"README command does not parse: {cmd} ({e})")
