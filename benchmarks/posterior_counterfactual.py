"""Counterfactual likelihoods of the review fit (issue 33): would the posterior be easier to sample
without the conflict on Dovedi's day-12 arm, or with softer survival comparisons? Measurements
only: nothing here changes a record, a margin or the shipped fit.

A variant is the review problem with some observations left out (``--drop RECORD:ARM``: every time
course of that arm and every comparison whose left-hand side is that arm) and/or another softness
of the qualitative comparisons on time end points (``--tau-time`` days; the fit's is
``problem.TAU["time"]``). From the shipped MAP the variant's MAP is refined (chunks of 50 L-BFGS
iterations preconditioned by the inverse Hessian, ``mapfit.hessian_covariance``, until the gradient
norm is below 0.05); then, in coordinates whitened by the Hessian there, the change of log p at
+-0.5, 1 and 2 SD along the softest eigen-directions and random ones (a Gaussian: -t^2/2), and
optionally ``--nuts`` warm-up iterations of one NUTS chain with that Hessian as its dense metric
(max tree depth 6, as ``bench_nuts_review.py``).

Run: python benchmarks/posterior_counterfactual.py --name NAME [--drop S20:sequential_d12 ...]
     [--tau-time 3] [--nuts 30]
Appends a section to results_posterior_counterfactual.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from abscopal.inference import likelihood, posterior, problem, sampling  # noqa: E402
from abscopal.inference.laplace import laplace_covariance  # noqa: E402
from abscopal.inference.mapfit import hessian_covariance, refine_map  # noqa: E402
from abscopal.inference.settings import SOLVER  # noqa: E402
from abscopal.io import atomic_write_text  # noqa: E402
from abscopal.records import load_records  # noqa: E402
from map_geometry import map_hessian, short_chain, whitened  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).with_name("results_posterior_counterfactual.md")
T = (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0)


def variant_records(drops: list[str]):
    """The fitted records with the observations of each ``RECORD:ARM`` in ``drops`` left out."""
    gone = {tuple(d.split(":", 1)) for d in drops}
    out, n_dropped = [], 0
    for r in load_records():
        arms = {arm for rec, arm in gone if rec == r.id}
        if arms:
            keep = tuple(o for o in r.observations if getattr(o, "arm", getattr(o, "lhs", None)) not in arms)
            n_dropped += len(r.observations) - len(keep)
            r = dataclasses.replace(r, observations=keep)
        out.append(r)
    return tuple(out), n_dropped


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--drop", action="append", default=[], metavar="RECORD:ARM")
    ap.add_argument("--tau-time", type=float, default=None, help="softness (days) of comparisons on time end points")
    ap.add_argument("--nuts", type=int, default=0, help="NUTS warm-up iterations (0: none)")
    ap.add_argument("--chunks", type=int, default=5, help="at most this many preconditioned refinement chunks")
    ap.add_argument("--random", type=int, default=6)
    args = ap.parse_args()
    t_start = time.perf_counter()
    tau_fit = problem.TAU["time"]
    if args.tau_time is not None:
        problem.TAU["time"] = float(args.tau_time)  # read by build_problem
    recs, n_dropped = variant_records(args.drop)
    prob = likelihood.build_problem(recs, use="fit", n_nodes=13)
    z = np.asarray(json.loads((ROOT / "fits/review/fit.json").read_text())["map"]["z"])
    if posterior.layout_of(prob).size != z.size:
        raise SystemExit("the variant has another parameter layout than the shipped fit")
    f = posterior.neg_log_density_and_grad(prob)
    lp_start = -float(f(z)[0])
    history = []
    for _ in range(args.chunks):
        cov, _ = hessian_covariance(prob, z, f=f)
        z, rec = refine_map(prob, z, 50, f=f, precondition=cov)
        history.append((rec["log_posterior"], rec["grad_norm"]))
        if rec["grad_norm"] < 0.05:
            break
    H = map_hessian(prob, z, f=f)
    ev, V, A = whitened(H)
    Ainv = np.linalg.inv(A)
    value = jax.jit(posterior.make_log_density(prob, SOLVER))
    lp0 = float(value(jnp.asarray(z)))
    names = posterior.layout_of(prob).names()
    near_bounds = ", ".join(f"`{n}` {x:+.2f}" for n, x in zip(names, z, strict=True) if abs(x) > 3 and n.startswith("u_"))
    rng = np.random.default_rng(0)
    dirs = {f"eigen-direction {k}": Ainv @ V[:, k] for k in range(4)}
    dirs.update({f"random {i + 1}": rng.standard_normal(z.size) for i in range(args.random)})
    rows = []
    for name, d in dirs.items():
        d = d / np.linalg.norm(d)
        rows.append((name, [float(value(jnp.asarray(z + A @ (t * d)))) - lp0 for t in T]))
        print(name, [f"{x:.2f}" for x in rows[-1][1]], flush=True)
    nuts_line = "no NUTS run"
    if args.nuts:
        inv_mass, _ = laplace_covariance(H, min_precision=1e-2)
        chain = short_chain(sampling.compiled_potential(f, z.size), z, args.nuts, inv_mass)
        steps, sizes = np.asarray(chain["num_steps"]), chain["step_size"]
        late = steps[len(steps) // 2 :]
        nuts_line = (
            f"NUTS, one chain, {args.nuts} warm-up iterations, dense metric (this MAP's Hessian), max tree depth 6, "
            f"{chain['seconds']:.0f} s: gradients per iteration {', '.join(str(s) for s in steps)}; step sizes "
            f"{', '.join(f'{s:.2g}' for s in sizes)}; {sum(chain['diverging'])} divergent; second half "
            f"{late.mean():.0f} gradients per iteration, {int(np.sum(late >= 63))} of {late.size} at the depth limit."
        )
    what = []
    if args.drop:
        what.append(f"left out: {', '.join(args.drop)} ({n_dropped} observations)")
    if args.tau_time is not None:
        what.append(f"time comparisons' softness {args.tau_time:g} days (the fit's: {tau_fit:g})")
    lines = [
        f"## {args.name}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores; JAX {jax.__version__}; {time.strftime('%Y-%m-%d')}; "
        f"{time.perf_counter() - t_start:.0f} s. Variant: {'; '.join(what) or 'none (the fit itself)'}.",
        "",
        f"MAP: log p {lp_start:.2f} at the shipped MAP -> "
        + " -> ".join(f"{lp:.2f} (gradient norm {g:.3g})" for lp, g in history)
        + f". Hessian eigenvalues {ev.min():.3g} to {ev.max():.3g}. Coordinates beyond 3 prior units: {near_bounds or 'none'}.",
        "",
        "| direction | " + " | ".join(f"{t:+.1f}" for t in T) + " |",
        "|---|" + "---:|" * len(T),
        "| Gaussian | " + " | ".join(f"{-0.5 * t * t:.2f}" for t in T) + " |",
    ]
    lines += [f"| {name} | " + " | ".join(f"{x:.2f}" for x in r) + " |" for name, r in rows]
    lines += [
        "",
        nuts_line,
        "",
        f"Generated by `benchmarks/posterior_counterfactual.py --name '{args.name}'`"
        + "".join(f" --drop {d}" for d in args.drop)
        + (f" --tau-time {args.tau_time:g}" if args.tau_time is not None else "")
        + (f" --nuts {args.nuts}" if args.nuts else "")
        + ".",
        "",
    ]
    head = "# Counterfactual likelihoods of the review fit: MAP, shape and NUTS\n\n"
    old = OUT.read_text() if OUT.exists() else head
    atomic_write_text(OUT, old.rstrip("\n") + "\n\n" + "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
