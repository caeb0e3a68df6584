"""NeuTra on the review problem (issue 33's sampler comparison): numpyro's inverse-autoregressive
flow guide (``AutoIAFNormal``) trained by SVI on the posterior in Hessian-whitened coordinates,
then NUTS in the flow's base space (Hoffman et al. 2019, "NeuTra-lizing bad geometry in HMC").

The posterior is ``x`` with ``z = z_MAP + A x`` (``A A^T`` the MAP's inverse Hessian), the log
density reached through ``sampling.compiled_potential`` (one compiled gradient, host callback). The
flow ``x = T(eps)`` is trained for ``--steps`` SVI steps (one particle, Adam, NaN gradients zeroed,
global norm clipped); its fit is judged by the importance weights ``log p(x) - log q(x)`` of
``--draws`` flow draws; then one chain of NUTS runs ``--iterations`` warm-up iterations (max tree
depth 6, diagonal metric adapted) on ``-log p(T(eps)) - log|det dT/deps|``, as
``bench_nuts_review.py`` does with a fixed metric. Writes results_neutra_review.md; nothing asserts.

Run: python benchmarks/bench_neutra_review.py [--steps 1500] [--iterations 30] [--hessian FILE.npy]
(about 10 minutes of SVI and 15-25 of NUTS on this machine)
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
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
import optax  # noqa: E402
from numpyro.distributions import constraints  # noqa: E402
from numpyro.infer import SVI, Trace_ELBO  # noqa: E402
from numpyro.infer.autoguide import AutoIAFNormal  # noqa: E402

from abscopal.inference import likelihood, posterior, sampling  # noqa: E402
from abscopal.io import atomic_write_text  # noqa: E402
from abscopal.records import load_records  # noqa: E402
from map_geometry import map_hessian, short_chain, whitened  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500, help="SVI steps")
    ap.add_argument("--iterations", type=int, default=30, help="NUTS warm-up iterations")
    ap.add_argument("--draws", type=int, default=64, help="flow draws for the importance weights")
    ap.add_argument("--hessian", default=None, help="a saved Hessian (.npy) at this MAP; computed (and saved there) if absent")
    args = ap.parse_args()
    prob = likelihood.build_problem(load_records(), use="fit", n_nodes=13)
    z0 = np.asarray(json.loads((ROOT / "fits/review/fit.json").read_text())["map"]["z"])
    n = z0.size
    f = posterior.neg_log_density_and_grad(prob)
    ev, _, A = whitened(map_hessian(prob, z0, args.hessian, f=f))

    def f_x(x):
        val, g = f(z0 + A @ np.asarray(x))
        if not (np.isfinite(float(val)) and np.all(np.isfinite(np.asarray(g)))):
            return np.float64(1e6), np.zeros(n)  # a failed solve: a wall, not a NaN in Adam
        return np.float64(val), A.T @ np.asarray(g)

    pot = sampling.compiled_potential(f_x, n)

    def model():
        x = numpyro.sample("x", dist.ImproperUniform(constraints.real_vector, (), event_shape=(n,)))
        numpyro.factor("log_density", -pot(x))

    guide = AutoIAFNormal(model, num_flows=3, hidden_dims=[n, n])
    optim = numpyro.optim.optax_to_numpyro(optax.chain(optax.zero_nans(), optax.clip_by_global_norm(20.0), optax.adam(2e-3)))
    svi = SVI(model, guide, optim, Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(0))
    update = jax.jit(svi.update)
    t0 = time.perf_counter()
    losses = []
    for i in range(args.steps):
        state, loss = update(state)
        losses.append(float(loss))
        if (i + 1) % 100 == 0:
            print(f"SVI step {i + 1}: mean loss of the last 100 {np.mean(losses[-100:]):.1f}", flush=True)
    svi_s = time.perf_counter() - t0
    T = guide.get_transform(svi.get_params(state))

    eps = np.random.default_rng(1).standard_normal((args.draws, n))
    log_w = []
    for e in eps:
        e = jnp.asarray(e)
        x = T(e)
        log_w.append(-float(pot(x)) + float(T.log_abs_det_jacobian(e, x)) + 0.5 * float(e @ e))
    log_w = np.asarray(log_w)
    wn = np.exp(log_w - log_w.max())
    ess = float(wn.sum() ** 2 / (wn**2).sum())

    def pot_eps(e):
        x = T(e)
        return pot(x) - T.log_abs_det_jacobian(e, x)

    chain = short_chain(pot_eps, 0.01 * np.random.default_rng(2).standard_normal(n), args.iterations)
    nuts_s, steps, sizes, div = chain["seconds"], np.asarray(chain["num_steps"]), chain["step_size"], sum(chain["diverging"])
    late = steps[len(steps) // 2 :]
    lines = [
        "# NeuTra (IAF flow by SVI, then NUTS in its base space) on the review problem",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores; JAX {jax.__version__}; numpyro {numpyro.__version__}; "
        f"{time.strftime('%Y-%m-%d')}. {n} coordinates, whitened by the MAP's Hessian (eigenvalues {ev.min():.3g} to {ev.max():.3g}).",
        "",
        f"SVI: {args.steps} steps in {svi_s:.0f} s; mean loss (minus the ELBO) of the first and last 100 steps "
        f"{np.mean(losses[:100]):.1f} and {np.mean(losses[-100:]):.1f} (median of the last 100 {np.median(losses[-100:]):.1f}).",
        "",
        f"Importance weights of {args.draws} flow draws, log p - log q: mean {log_w.mean():.1f}, SD {log_w.std():.1f}, "
        f"min {log_w.min():.1f}, max {log_w.max():.1f}; effective sample size {ess:.1f} of {args.draws}.",
        "",
        f"NUTS in the flow's base space: one chain, {args.iterations} warm-up iterations, max tree depth 6, {nuts_s:.0f} s.",
        "",
        "| gradients per iteration | step size per iteration | divergent |",
        "|---|---|---:|",
        f"| {', '.join(str(s) for s in steps)} | {', '.join(f'{s:.2g}' for s in sizes)} | {div} |",
        "",
        f"Second half of the warm-up: {late.mean():.0f} gradients per iteration, {int(np.sum(late >= 63))} of {late.size} at the depth limit.",
        "",
        "Generated by `benchmarks/bench_neutra_review.py`" + f" --steps {args.steps} --iterations {args.iterations}.",
    ]
    atomic_write_text(Path(__file__).with_name("results_neutra_review.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
