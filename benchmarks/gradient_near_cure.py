"""Reverse-mode gradient against central differences, per record, at the fit's MAP (issue 32's
refit stopped on this). For one coordinate (default ``u_r[4]``: CT26's growth rate), the derivative
of each record's log-likelihood terms by ``jax.vjp`` through the solver and by central differences
(h = 1e-4 in the unconstrained coordinate), at the fit's solver tolerances or tighter ones.

Run: python benchmarks/gradient_near_cure.py [coordinate] [rtol atol]
Results: benchmarks/results_gradient_near_cure.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import abscopal as ab
from abscopal.inference import likelihood
from abscopal.inference.fitting import fit_records
from abscopal.inference.posterior import layout_of
from abscopal.inference.settings import SOLVER, FitSettings


def main() -> None:
    ab.enable_x64()
    coord = sys.argv[1] if len(sys.argv) > 1 else "u_r[4]"
    solver = dict(SOLVER)
    if len(sys.argv) > 3:
        solver.update(rtol=float(sys.argv[2]), atol=float(sys.argv[3]), max_steps=16384)
    s = FitSettings()
    prob = likelihood.build_problem(fit_records(False), n_nodes=s.n_nodes)
    lay = layout_of(prob)
    m = json.loads((Path(__file__).resolve().parents[1] / "fits" / "review" / "fit.json").read_text())["map"]
    if list(m["names"]) != lay.names():
        raise SystemExit("the shipped fit's MAP is not of this problem's coordinates; refit first")
    z = np.asarray(m["z"], dtype=float)

    def terms(z):
        _, _, log_ss = lay.split(z)
        sh, ln = lay.values(z)
        t = likelihood.log_likelihood_terms(prob, sh, ln, jnp.exp(log_ss), solver, jnp.exp(lay.log_inoculum(z)))
        return jnp.concatenate([t["tc"], t["cmp"], t["cnt"]])

    labels = np.array(list(prob.tc.records) + [lab[0] for lab in prob.cmp.labels] + list(prob.cnt.records))
    T = jax.jit(terms)
    _, vjp = jax.vjp(T, jnp.asarray(z))
    vjp = jax.jit(vjp)
    i = lay.names().index(coord)
    e = np.zeros_like(z)
    e[i] = 1e-4
    fd = (np.asarray(T(jnp.asarray(z + e))) - np.asarray(T(jnp.asarray(z - e)))) / 2e-4
    print(f"coordinate {coord}, solver {solver}")
    print("| record | central difference | reverse mode |\n| --- | ---: | ---: |")
    for rec in sorted(set(labels)):
        m = (labels == rec).astype(float)
        ad = float(vjp(jnp.asarray(m))[0][i])
        print(f"| {rec} | {np.sum(fd * m):.3f} | {ad:.3f} |")


if __name__ == "__main__":
    main()
