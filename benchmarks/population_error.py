"""The cohort's fractions by the critical mouse (``inference/cohort``, the fit's) against 256
virtual mice solved one by one with hard indicators, at the fit's MAP: every fraction quantity
(the count records' and the comparisons' cure fractions and abscopal probabilities), with the
Monte Carlo standard error; the count records' log-likelihood terms both ways; the gradient of
the fractions by reverse mode against central differences along random directions; and the cost
(forward and gradient of the fractions, against the 8-virtual-mice path this replaced, which
``bench_likelihood`` no longer has: here its cost is 8 gradient solves per population arm, timed).

Run: python benchmarks/population_error.py [--mice 256]  ->  benchmarks/results_population.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from abscopal.inference import cohort, likelihood, posterior  # noqa: E402
from abscopal.inference.settings import SOLVER, FitSettings  # noqa: E402
from abscopal.io import atomic_write_text  # noqa: E402
from abscopal.records import load_records  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from timing import timed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mice", type=int, default=256)
    args = ap.parse_args()
    prob = likelihood.build_problem(load_records(), use="fit", n_nodes=FitSettings().n_nodes)
    lay = posterior.layout_of(prob)
    fit = json.loads((ROOT / "fits/review/fit.json").read_text())
    if list(fit["map"]["names"]) != lay.names():
        raise SystemExit("the shipped fit's MAP is not of this problem's coordinates")
    z = jnp.asarray(fit["map"]["z"])
    solve_rows = likelihood.rows_solver(prob, **SOLVER)

    def params(z):
        shared, lines = lay.values(z)
        return likelihood.arm_values(prob, shared, lines, jnp.exp(lay.log_inoculum(z)))

    def fractions(z):
        return cohort.cohort_fractions(prob, params(z), solve_rows)[0]

    fwd = jax.jit(fractions)
    c_fwd, t_fwd, frac = timed(lambda: fwd(z))
    w = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, len(prob.frac)))
    grad = jax.jit(jax.grad(lambda z: jnp.sum(w * fractions(z))))
    c_grad, t_grad, g = timed(lambda: grad(z))
    # the path this replaced: 8 virtual mice per population arm, each solved with its gradient
    B = len(prob.pop_arms)
    b8 = np.repeat(np.arange(B), 8)
    z8 = np.random.default_rng(0).standard_normal(8 * B)

    def eight(z):
        obs, _ = solve_rows(cohort.mouse_rows(prob, params(z), b8, z8), prob.pop_arms[b8])
        return jnp.sum(obs[..., 0])

    g8 = jax.jit(jax.grad(eight))
    c_g8, t_g8, _ = timed(lambda: g8(z))
    mc_fn = jax.jit(
        lambda z, seed: cohort.monte_carlo_fractions(prob, params(z), solve_rows, args.mice, seed=seed), static_argnums=1
    )
    mq, okq = mc_fn(z, None)  # mice at the normal quantiles: exact to 1 / mice
    mc, ok = mc_fn(z, 1)  # random mice: what a virtual cohort of this size would show
    ok = bool(ok) and bool(okq)
    frac, mc, mq = np.asarray(frac), np.asarray(mc), np.asarray(mq)
    # reverse mode against central differences along 3 random unit directions
    f = jax.jit(lambda z: jnp.sum(w * fractions(z)))
    dirs = []
    for d in np.random.default_rng(1).standard_normal((3, z.size)):
        d /= np.linalg.norm(d)
        fd = (float(f(z + 1e-4 * d)) - float(f(z - 1e-4 * d))) / 2e-4
        dirs.append((float(np.asarray(g) @ d), fd))

    labels = {}
    for (rec, label), lhs, rhs in zip(prob.cmp.labels, prob.cmp.lhs, prob.cmp.rhs):
        for q in (lhs, rhs):
            if q >= 0 and prob.frac_of_q[q] >= 0:
                labels.setdefault(int(prob.frac_of_q[q]), f"{rec}: {label}")
    for r, q in zip(prob.cnt.records, prob.cnt.q):
        labels.setdefault(int(prob.frac_of_q[q]), f"{r}: count")
    kinds = {likelihood.Q_CURE: "cured", likelihood.Q_ABSCOPAL: "abscopal response"}
    lines = [
        f"# Cohort fractions by the critical mouse against {args.mice} virtual mice",
        "",
        f"At the fit's MAP (`fits/review/fit.json`, log posterior {fit['map']['log_posterior']:.2f}), every fraction "
        f"quantity of the likelihood: by the critical mouse on a {len(prob.zeta)}-node grid "
        f"(`inference/cohort`: {cohort.N_REFINE} false-position refinements, a Newton step, the implicit function "
        f"theorem), and over {args.mice} virtual mice with hard indicators: at the normal quantiles "
        f"(i + 1/2) / {args.mice} (exact to 1/{args.mice}), and random (one stream of k_in draws, the same for "
        "every arm), with the Monte Carlo standard error.",
        "",
        f"| quantity (arm) | critical mouse | {args.mice} quantile mice | difference | {args.mice} random mice | MC SE | difference / SE |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for i in range(len(prob.frac)):
        arm = prob.arms[prob.pop_arms[prob.frac.arm[i]]]
        se = np.sqrt(max(mc[i] * (1 - mc[i]), 1.0 / args.mice) / args.mice)
        lines.append(
            f"| {labels.get(i, arm.record)} ({kinds[int(prob.frac.kind[i])]}, {arm.arm}) | {frac[i]:.4f} | {mq[i]:.4f} | "
            f"{frac[i] - mq[i]:+.4f} | {mc[i]:.4f} | {se:.4f} | {(frac[i] - mc[i]) / se:+.2f} |"
        )
    cnt_q = prob.frac_of_q[prob.cnt.q]

    def count_lp(p):
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return float(np.sum(prob.cnt.k * np.log(p) + (prob.cnt.n - prob.cnt.k) * np.log1p(-p)))

    lines += [
        "",
        f"Count records' log-likelihood (kernel): {count_lp(frac[cnt_q]):.3f} by the critical mouse, "
        f"{count_lp(mq[cnt_q]):.3f} over the {args.mice} quantile mice, {count_lp(mc[cnt_q]):.3f} over the random ones. "
        f"Largest |difference| of a fraction from the quantile mice: {np.abs(frac - mq).max():.4f} (their resolution: "
        f"{1 / args.mice:.4f}); from the random mice: {np.abs(frac - mc).max():.4f}.",
        "",
        "Gradient of a weighted sum of the fractions, reverse mode against central differences (h = 1e-4) along "
        "three random unit directions: " + "; ".join(f"{a:.5f} vs {b:.5f}" for a, b in dirs) + ".",
        "",
        "| cost on this machine (seconds) | compile + first call | per call |",
        "|---|---:|---:|",
        f"| fractions by the critical mouse, forward | {c_fwd:.1f} | {t_fwd:.3f} |",
        f"| fractions by the critical mouse, gradient | {c_grad:.1f} | {t_grad:.3f} |",
        f"| the replaced path's solves: 8 mice x {B} arms, gradient | {c_g8:.1f} | {t_g8:.3f} |",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, JAX {jax.__version__} on {jax.default_backend()}. "
        f"Generated by `benchmarks/population_error.py` on {time.strftime('%Y-%m-%d')}.",
    ]
    atomic_write_text(os.path.join(os.path.dirname(__file__), "results_population.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    if not ok:
        raise SystemExit("a virtual mouse's solve failed")


if __name__ == "__main__":
    main()
