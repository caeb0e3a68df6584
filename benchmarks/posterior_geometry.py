"""How far the review posterior is from a Gaussian at its MAP, and which terms make it so (issue 33:
why NUTS with the MAP's inverse Hessian as its metric still takes step sizes of 0.01).

In the coordinates whitened by the MAP's Hessian (``u``, with ``z = z_MAP + A u``, ``A A^T = H^-1``)
a Gaussian posterior is ``log p = log p_MAP - |u|^2 / 2`` exactly, and NUTS would take steps near 1.
Along each of a few directions ``d`` (unit vectors in ``u``: the Hessian's stiffest and softest
eigen-directions, and random ones), at distances ``t`` within the marginal's +-2 SD, this measures
``log p(z_MAP + A t d) - log p_MAP`` against ``-t^2 / 2``, and splits the change by term: the
time-course points, each record's comparisons, the counts, the prior. A term whose change is far
from its share of the quadratic is what bends the geometry.

Run: python benchmarks/posterior_geometry.py [--directions 6] [--hessian FILE.npy]
Writes results_posterior_geometry.md. Nothing here asserts anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from abscopal.inference import likelihood, posterior  # noqa: E402
from abscopal.inference.laplace import laplace_hessian  # noqa: E402
from abscopal.inference.mapfit import whitening_factor  # noqa: E402
from abscopal.inference.settings import SOLVER  # noqa: E402
from abscopal.io import atomic_write_text  # noqa: E402
from abscopal.records import load_records  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
T = (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--directions", type=int, default=6, help="random directions besides the 2 stiffest and 2 softest")
    ap.add_argument("--hessian", default=None, help="a saved Hessian (.npy) at this MAP; computed (and saved there) if absent")
    args = ap.parse_args()
    prob = likelihood.build_problem(load_records(), use="fit", n_nodes=13)
    fit = json.loads((ROOT / "fits/review/fit.json").read_text())
    z0 = np.asarray(fit["map"]["z"])
    lay = posterior.layout_of(prob)
    logp = posterior.make_log_density(prob, SOLVER)
    prior = posterior.make_log_density(prob, SOLVER, with_likelihood=False)

    @jax.jit
    def parts(z):
        shared, line_vals = lay.values(z)
        _, _, log_ss = lay.split(z)
        terms = likelihood.log_likelihood_terms(prob, shared, line_vals, jnp.exp(log_ss), SOLVER, jnp.exp(lay.log_inoculum(z)))
        return logp(z), prior(z), terms["tc"], terms["cmp"], terms["cnt"]

    if args.hessian and os.path.exists(args.hessian):
        H = np.load(args.hessian)
    else:
        H = np.asarray(laplace_hessian(prob, z0, progress=False))
        if args.hessian:
            np.save(args.hessian, H)
    w, V = np.linalg.eigh(0.5 * (H + H.T))
    A = whitening_factor(np.linalg.inv((V * np.maximum(w, 1e-2)) @ V.T))
    Ainv = np.linalg.inv(A)
    rng = np.random.default_rng(0)
    dirs = {"stiffest": V[:, -1], "2nd stiffest": V[:, -2], "softest": V[:, 0], "2nd softest": V[:, 1]}
    dirs = {k: Ainv @ v / np.linalg.norm(Ainv @ v) for k, v in dirs.items()}  # eigen-directions in u
    for i in range(args.directions):
        d = rng.standard_normal(z0.size)
        dirs[f"random {i + 1}"] = d / np.linalg.norm(d)
    cmp_rec = np.array([r for r, _ in prob.cmp.labels])

    def split(out):
        lp, pr, tc, cmp, cnt = (np.asarray(x) for x in out)
        g = {"time courses": tc.sum(), "counts": cnt.sum(), "prior": pr}
        for r in dict.fromkeys(cmp_rec):
            g[f"comparisons {r}"] = cmp[cmp_rec == r].sum()
        return float(lp), g

    t0 = time.perf_counter()
    lp0, g0 = split(parts(jnp.asarray(z0)))
    rows = []
    for name, d in dirs.items():
        for t in T:
            lp, g = split(parts(jnp.asarray(z0 + A @ (t * d))))
            dev = {k: g[k] - g0[k] for k in g}
            worst = max(dev, key=lambda k: abs(dev[k]))
            rows.append((name, t, lp - lp0, -0.5 * t * t, worst, dev[worst]))
        print(name, [f"{r[2]:.2f}" for r in rows[-len(T) :]], flush=True)
    seconds = time.perf_counter() - t0
    lines = [
        "# The review posterior around its MAP, in Hessian-whitened coordinates",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores; JAX {jax.__version__}; {time.strftime('%Y-%m-%d')}. "
        f"Point: the shipped MAP (log p {lp0:.3f}); {z0.size} coordinates; Hessian eigenvalues {w.min():.3g} to {w.max():.3g}. "
        f"{len(rows)} evaluations in {seconds:.0f} s.",
        "",
        "A Gaussian gives `change = quadratic` on every row. `largest term change`: the term (grouped as in the header) "
        "whose log density changed most between the MAP and the point.",
        "",
        "| direction | t (SD) | change of log p | quadratic -t^2/2 | largest term change |",
        "|---|---:|---:|---:|---|",
    ]
    for name, t, dl, q, worst, dv in rows:
        lines.append(f"| {name} | {t:+.1f} | {dl:.2f} | {q:.2f} | {worst}: {dv:+.2f} |")
    lines += ["", "Generated by `benchmarks/posterior_geometry.py`."]
    atomic_write_text(Path(__file__).with_name("results_posterior_geometry.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
