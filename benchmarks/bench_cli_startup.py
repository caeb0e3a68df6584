"""Wall time of the command line as a user meets it (issue 34): ``--help``, an invalid schedule
rejected, and the main job ``abscopal compare --fit review`` (200 virtual mice, with compilation):
its first call with an empty compilation cache, and a later call that finds the programs compiled
by the first in the persistent cache (``commands._persistent_cache``; a fresh folder here).

Each case runs as a fresh process (``python -m abscopal.cli ...``) in a temporary folder; the
median of ``--repeat`` runs is reported. ``--src DIR`` puts another source tree first on the
path (e.g. an older commit's ``model/`` from ``git archive``) to time it with the same Python.

    .venv/bin/python benchmarks/bench_cli_startup.py [--repeat 5] [--main-repeat 2] [--src DIR] [--label NAME] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BAD_SCHEDULE = 'tumor_line = "CT26"\n[[rt]]\nday = 7\ndose_gy = 99\n'


def wall(args: list[str], cwd: Path, env: dict, expect: int) -> float:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "abscopal.cli", *args], cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != expect:
        raise SystemExit(f"abscopal {' '.join(args)}: exit {r.returncode}, expected {expect}\n{r.stderr[-2000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs of each start-up case (median reported)")
    ap.add_argument("--main-repeat", type=int, default=2, help="runs of the main job (median reported)")
    ap.add_argument("--src", help="a source folder (holding abscopal/) put first on PYTHONPATH")
    ap.add_argument("--label", default="this tree", help="name of the measured version in the output")
    ap.add_argument("--out", help="append the results (markdown) to this file")
    a = ap.parse_args()
    env = dict(os.environ)
    if a.src:
        env["PYTHONPATH"] = str(Path(a.src).resolve()) + os.pathsep + env.get("PYTHONPATH", "")
        env["ABSCOPAL_FITS"] = env.get("ABSCOPAL_FITS", str(Path(__file__).resolve().parents[1] / "fits"))
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        (cwd / "bad.toml").write_text(BAD_SCHEDULE)
        cache = cwd / "jax-cache"
        env["ABSCOPAL_CACHE_DIR"] = str(cache)

        def cold(args, expect):
            shutil.rmtree(cache, ignore_errors=True)
            return wall(args, cwd, env, expect)

        main_job = ["compare", "--fit", "review"]
        cases = {
            "abscopal --help": (lambda: wall(["--help"], cwd, env, 0), a.repeat),
            "invalid schedule rejected (compare bad.toml)": (lambda: wall(["compare", "bad.toml"], cwd, env, 2), a.repeat),
            "main job: compare --fit review, empty compilation cache": (lambda: cold(main_job, 0), a.main_repeat),
            "main job: compare --fit review, again (cache warm)": (lambda: wall(main_job, cwd, env, 0), a.main_repeat),
        }
        rows = []
        for name, (run, n) in cases.items():
            times = [run() for _ in range(n)]
            rows.append((name, statistics.median(times), min(times), max(times), n))
            print(f"{name}: median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}, {n} runs)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"### {a.label} ({time.strftime('%Y-%m-%d %H:%M')}, {platform.node() or 'host'}, {os.cpu_count()} CPUs, "
        f"load average {load:.1f} at the end)",
        "",
        "| case | median (s) | min | max | runs |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {n} | {m:.2f} | {lo:.2f} | {hi:.2f} | {k} |" for n, m, lo, hi, k in rows],
        "",
    ]
    if a.out:
        with open(a.out, "a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
