"""Can the model reproduce Dovedi 2014 at all? The six arms of R29 (CT26, one tumour, 5 x 2 Gy on
days 7-11, anti-PD-L1 10 mg/kg from day 7, 12 or 19) for one parameter point, and a small random
search over the estimated parameters that move them (issue 20).

Not a fit: only R29's arms are simulated, with ``compare`` (a cohort of virtual mice with the
table's inter-animal variability, one tumour each). The search's target is what R29 and the
credibility check ask: concurrent cures (extinction) a majority, RT alone and anti-PD-L1 alone cure
few, anti-PD-L1 alone ~ control, the sequential starts (day 12, day 19) ~ RT alone in median
survival (days to 1000 mm^3). It answers whether any point inside the table's bounds does so, and
where; the full fit then decides whether the other records allow it.

Run: python benchmarks/dovedi_feasibility.py                      (the shipped fit's MAP)
     python benchmarks/dovedi_feasibility.py --set k_exh=10 ...   (a point: the MAP with changes)
     python benchmarks/dovedi_feasibility.py --search 600 --seed 7 (random search from that point)
     add --write to record the result in results_dovedi_feasibility.md
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import numpy as np

import abscopal as ab
from abscopal.decide.compare import compare
from abscopal.decide.scenarios import dovedi_arms
from abscopal.inference.fitresult import load_fit
from abscopal.schedules import Schedule
from abscopal.simulation.outcomes import time_to_volume

HERE = Path(__file__).resolve().parent
#: what R29 and the credibility check ask (see the module doc)
SEARCHED = ("g_ln_pd", "k_exh", "delta_DC", "antigenicity", "k_in", "delta_P", "p0", "k_prime", "d_kill_max", "k_kill")


def arms(horizon: float = 60.0) -> list[Schedule]:
    """R29's six arms, as the credibility checks simulate them (``scenarios.dovedi_arms``)."""
    return dovedi_arms(horizon)


CONCURRENT, D12, D19 = (f"RT + anti-PD-L1 from day {d}" for d in (7, 12, 19))


def outcome(params: ab.Params, n: int = 32, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Per arm: (cure fraction, median days to 1000 mm^3 censored at the horizon)."""
    sch = arms()
    c = compare(sch, n_draws=n, seed=seed, params=params, single_tumour=True)
    med = c.summary.set_index(["schedule", "endpoint"])["median"]
    out = {}
    for s in sch:
        v = c.volumes[s.name][..., 0]
        t = np.minimum(time_to_volume(c.ts, v, 1000.0), c.ts[-1])  # censored at the horizon
        out[s.name] = (float(med[(s.name, "cure_irradiated")]), float(np.median(t)))
    return out


def loss(o: dict[str, tuple[float, float]]) -> float:
    """0 when every target above holds (survival margins 2 days, cure fractions as stated)."""
    c = {k: v[0] for k, v in o.items()}
    t = {k: v[1] for k, v in o.items()}
    rt = t["RT"]
    return (
        20 * max(0.0, 0.55 - c[CONCURRENT])
        + 20 * max(0.0, c["RT"] - 0.15)
        + 20 * max(0.0, c["anti-PD-L1"] - 0.15)
        + max(0.0, abs(t["anti-PD-L1"] - t["control"]) - 2)
        + max(0.0, abs(t[D12] - rt) - 2)
        + max(0.0, abs(t[D19] - rt) - 2)
        + max(0.0, rt + 2 - t[CONCURRENT])
    )


def bounds() -> dict[str, tuple[float, float]]:
    rows = {r["name"]: r for r in csv.DictReader((Path(ab.__file__).parent / "data/parameters.csv").open())}
    return {n: (max(float(rows[n]["lower"]), 1e-3), float(rows[n]["upper"])) for n in SEARCHED}


def search(start: ab.Params, steps: int, seed: int, log=print) -> tuple[ab.Params, dict, float]:
    """(1+1) random search in log space, each step perturbing about a third of ``SEARCHED``."""
    b = bounds()
    lo, hi = (np.log([b[n][i] for n in SEARCHED]) for i in (0, 1))
    x = np.clip(np.log([start.values[start.index(n)] for n in SEARCHED]), lo, hi)

    def point(x):
        return start.replace(**{n: float(np.exp(v)) for n, v in zip(SEARCHED, x)})

    best_o = outcome(point(x))
    best = loss(best_o)
    rng = np.random.default_rng(seed)
    for it in range(steps):
        y = np.clip(x + (rng.random(len(x)) < 0.3) * 0.4 * rng.standard_normal(len(x)), lo, hi)
        o = outcome(point(y))
        if (val := loss(o)) <= best:  # equal loss: move on (a plateau), report only improvements
            if val < best:
                log(f"step {it}: loss {val:.3f}")
            x, best, best_o = y, val, o
        if best == 0:
            break
    return point(x), best_o, best


def table(o: dict[str, tuple[float, float]]) -> str:
    rows = ["| arm | cured | median days to 1000 mm^3 |", "| --- | ---: | ---: |"]
    rows += [f"| {k} | {c:.2f} | {t:.1f} |" for k, (c, t) in o.items()]
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fit", default="review")
    ap.add_argument("--set", nargs="*", default=[], help="name=value changes to the fit's CT26 MAP")
    ap.add_argument("--search", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    ab.enable_x64()
    p = load_fit(args.fit).params("CT26")
    if args.set:
        p = p.replace(**{k: float(v) for k, v in (a.split("=") for a in args.set)})
    t0 = time.time()
    o = outcome(p)
    text = [
        f"Point: fit `{args.fit}` (CT26 MAP){' with ' + ', '.join(args.set) if args.set else ''}; loss {loss(o):.3f}",
        "",
        table(o),
    ]
    if args.search:
        q, o2, val = search(p, args.search, args.seed)
        changed = {n: round(q.values[q.index(n)], 4) for n in SEARCHED}
        text += [
            "",
            f"Random search ({args.search} steps, seed {args.seed}): loss {val:.3f} at",
            "",
            json.dumps(changed),
            "",
            table(o2),
        ]
        text += [
            "",
            "At a bound: "
            + (", ".join(n for n, v in changed.items() if any(math.isclose(v, e, rel_tol=1e-3) for e in bounds()[n])) or "none"),
        ]
    text += ["", f"({time.time() - t0:.0f} s)"]
    print("\n".join(text))
    if args.write:
        out = HERE / "results_dovedi_feasibility.md"
        out.write_text(out.read_text() + "\n" + "\n".join(text) + "\n" if out.exists() else "\n".join(text) + "\n")


if __name__ == "__main__":
    main()
