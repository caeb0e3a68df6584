"""NUTS on the review problem from the shipped MAP: how many gradients an iteration takes, with a
unit metric and with the inverse of the MAP's Hessian as a dense metric (issue 21's feasibility).

One chain, ``--iterations`` warm-up iterations each (adaptation on), checkpointed by ``abscopal.inference.nuts``
in a temporary folder. Writes results_nuts_review.md. Nothing here asserts a time.
``--metric rescaled``: the Hessian's covariance rescaled along its eigen-directions so that the exact
log density drops by 1/2 at +-1 SD (``laplace.rescale_covariance``, two rounds).
Run: python benchmarks/bench_nuts_review.py [--iterations 10] [--metric both|unit|dense|rescaled] [--out FILE]
(about 7 minutes per metric at 10 iterations)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from abscopal.inference import (  # noqa: E402
    likelihood,
    nuts,
    posterior,
    sampling,  # noqa: E402
)
from abscopal.inference.laplace import laplace_covariance, laplace_hessian, rescale_covariance  # noqa: E402
from abscopal.io import atomic_write_text  # noqa: E402
from abscopal.records import load_records  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run(pot, z, inv_mass, iterations):
    opts = nuts.NutsOptions(chains=1, warmup=iterations, samples=1, segment=iterations, max_tree_depth=6, seed=0)
    folder = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    nuts.sample(pot, z[None], opts, folder, inv_mass=inv_mass, progress=False)
    ck = np.load(folder / nuts.CHECKPOINT)
    return dict(
        seconds=time.perf_counter() - t,
        num_steps=ck["rec_num_steps"][0, :iterations].tolist(),
        step_size=ck["rec_step_size"][0, :iterations].tolist(),
        diverging=ck["rec_diverging"][0, :iterations].astype(int).tolist(),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--metric", choices=("both", "unit", "dense", "rescaled"), default="both")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_nuts_review.md")))
    args = ap.parse_args()
    prob = likelihood.build_problem(load_records(), use="fit", n_nodes=13)
    z = np.asarray(json.loads((ROOT / "fits/review/fit.json").read_text())["map"]["z"])
    f = posterior.neg_log_density_and_grad(prob)
    f(z)
    t = time.perf_counter()
    for _ in range(3):
        f(z)
    grad_s = (time.perf_counter() - t) / 3
    t = time.perf_counter()
    H = np.asarray(laplace_hessian(prob, z, f=f, progress=False))
    hess_s = time.perf_counter() - t
    inv_mass, eig = laplace_covariance(H, min_precision=1e-2)
    pot = sampling.compiled_potential(f, z.size)
    rows = {}
    if args.metric in ("both", "unit"):
        rows["unit metric"] = run(pot, z, None, args.iterations)
    if args.metric in ("both", "dense"):
        rows["dense metric (MAP Hessian)"] = run(pot, z, inv_mass, args.iterations)
    if args.metric == "rescaled":
        # the Hessian's covariance rescaled along its eigen-directions so that the exact log density
        # drops by 1/2 at +-1 SD (two secant rounds): the posterior is far from Gaussian along a few
        # of them (results_posterior_geometry.md), where the Hessian's curvature holds only near the MAP
        log_density = jax.jit(posterior.make_log_density(prob))
        cov, rec = rescale_covariance(log_density, z, inv_mass, rounds=2, k=1.0, progress=False)
        print("rescaled:", rec["history"], flush=True)
        rows["dense metric (MAP Hessian, rescaled at +-1 SD)"] = run(pot, z, cov, args.iterations)
    lines = [
        "# NUTS on the review problem from the shipped MAP",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores; JAX {jax.__version__}; {time.strftime('%Y-%m-%d')}. "
        f"{z.size} coordinates; one gradient {grad_s:.2f} s; the Hessian (central differences) {hess_s:.0f} s, "
        f"eigenvalues {eig['eigen_min']:.3g} to {eig['eigen_max']:.3g}. One chain, {args.iterations} warm-up iterations, max tree depth 6.",
        "",
        "| metric | seconds | gradients per iteration | step size per iteration | divergent |",
        "|---|---:|---|---|---:|",
    ]
    for name, r in rows.items():
        steps = ", ".join(str(int(n)) for n in r["num_steps"])
        sizes = ", ".join(f"{s:.2g}" for s in r["step_size"])
        lines.append(f"| {name} | {r['seconds']:.0f} | {steps} | {sizes} | {sum(r['diverging'])} |")
    for name, r in rows.items():
        late = r["num_steps"][len(r["num_steps"]) // 2 :]
        per_draw = float(np.mean(late)) * grad_s
        lines.append(
            f"\n{name}: second half of the warm-up {np.mean(late):.0f} gradients per iteration, {per_draw:.0f} s per iteration; "
            f"4 chains x 1000 iterations at that rate: {4 * 1000 * per_draw / 3600:.1f} h on one core."
        )
    lines += ["", f"Generated by `benchmarks/bench_nuts_review.py --iterations {args.iterations} --metric {args.metric}`."]
    atomic_write_text(Path(args.out), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
