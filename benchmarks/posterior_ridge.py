"""The curved ridge of the review posterior (issue 33): where its centre line runs, and whether one
volume-preserving quadratic shear straightens it.

In coordinates whitened by the MAP's Hessian (``u``, ``z = z_MAP + A u``, ``A A^T = H^-1``) the
log density along the bent eigen-direction ``v`` (the one of the ``--scan`` softest whose drop at
+-0.5 SD is largest; issue 33's probe found the second softest) is maximised over the orthogonal
complement at ``t = +-0.3`` and ``+-0.5`` (L-BFGS, ``--iterations`` each). If the centre line is
``t v + t^2 w / 2`` (``w`` orthogonal to ``v``), the offsets at ``+t`` and ``-t`` are equal and
grow like ``t^2``; the shear ``u = x + (v.x)^2 w / 2`` has unit Jacobian (``w . v = 0``), so
the log density in ``x`` needs no correction, and along ``v`` it should fall by ``t^2 / 2``. The
shear is then checked at +-0.5, 1 and 2 SD along ``v``, along the next soft eigen-directions and
along random directions.

Run: python benchmarks/posterior_ridge.py [--hessian FILE.npy] [--scan 6] [--iterations 60]
Writes results_posterior_ridge.md. Nothing here asserts anything.
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
from scipy.optimize import minimize  # noqa: E402

from abscopal.inference import likelihood, posterior  # noqa: E402
from abscopal.inference.settings import SOLVER  # noqa: E402
from abscopal.io import atomic_write_text  # noqa: E402
from abscopal.records import load_records  # noqa: E402
from map_geometry import map_hessian, whitened  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
T_RIDGE = (0.3, 0.5)
T_CHECK = (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hessian", default=None, help="a saved Hessian (.npy) at this MAP; computed (and saved there) if absent")
    ap.add_argument("--scan", type=int, default=6, help="softest eigen-directions scanned for the bent one")
    ap.add_argument("--iterations", type=int, default=60, help="L-BFGS iterations per ridge point")
    ap.add_argument("--random", type=int, default=6, help="random directions checked after the shear")
    args = ap.parse_args()
    t_start = time.perf_counter()
    prob = likelihood.build_problem(load_records(), use="fit", n_nodes=13)
    z0 = np.asarray(json.loads((ROOT / "fits/review/fit.json").read_text())["map"]["z"])
    names = posterior.layout_of(prob).names()
    logp = posterior.make_log_density(prob, SOLVER)
    value = jax.jit(logp)
    value_and_grad = jax.jit(jax.value_and_grad(logp))
    H = map_hessian(prob, z0, args.hessian)
    ev, V, A = whitened(H)
    Ainv = np.linalg.inv(A)
    lp0 = float(value(jnp.asarray(z0)))

    def lp(u):
        return float(value(jnp.asarray(z0 + A @ u))) - lp0

    def unit(x):
        return x / np.linalg.norm(x)

    eig_dirs = {k: unit(Ainv @ V[:, k]) for k in range(z0.size)}
    scan = {k: lp(0.5 * eig_dirs[k]) + lp(-0.5 * eig_dirs[k]) for k in range(args.scan)}
    bent = min(scan, key=scan.get)
    v = eig_dirs[bent]
    P = np.eye(z0.size) - np.outer(v, v)

    ridge = {}
    for t in (*T_RIDGE, *(-t for t in T_RIDGE)):

        def f(y, t=t):
            val, g = value_and_grad(jnp.asarray(z0 + A @ (t * v + P @ y)))
            if not np.isfinite(float(val)):
                return 1e10, np.zeros_like(y)
            return -(float(val) - lp0), -(P @ (A.T @ np.asarray(g)))

        r = minimize(f, np.zeros(z0.size), jac=True, method="L-BFGS-B", options=dict(maxiter=args.iterations))
        ridge[t] = (P @ r.x, -float(r.fun))
        print(f"ridge t={t:+.1f}: log p change {-r.fun:.3f}, offset {np.linalg.norm(P @ r.x):.3f}", flush=True)
    ws = {t: (ridge[t][0] + ridge[-t][0]) / t**2 for t in T_RIDGE}
    w = P @ ws[T_RIDGE[0]]
    cos = float(ws[T_RIDGE[0]] @ ws[T_RIDGE[1]] / np.linalg.norm(ws[T_RIDGE[0]]) / np.linalg.norm(ws[T_RIDGE[1]]))

    def sheared(x):
        return x + 0.5 * (v @ x) ** 2 * w

    rng = np.random.default_rng(0)
    checks = {f"bent (eigen-direction {bent})": v}
    for k in sorted(scan, key=scan.get)[1:3]:
        checks[f"eigen-direction {k}"] = eig_dirs[k]
    for i in range(args.random):
        checks[f"random {i + 1}"] = unit(rng.standard_normal(z0.size))
    rows = []
    for name, d in checks.items():
        before = [lp(t * d) for t in T_CHECK]
        after = [lp(sheared(t * d)) for t in T_CHECK]
        rows.append((name, before, after))
        print(name, [f"{a:.2f}" for a in after], flush=True)

    wz = A @ w
    vz = A @ v
    top = lambda x: ", ".join(f"`{names[i]}` {x[i]:+.3f}" for i in np.argsort(-np.abs(x))[:6])  # noqa: E731
    w_eig = np.abs(V.T @ (H @ wz)) / np.sqrt(np.maximum(ev, 1e-2))  # |coefficient| of w per Hessian eigen-direction (whitened)
    seconds = time.perf_counter() - t_start
    lines = [
        "# The curved ridge of the review posterior, and one quadratic shear",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores; JAX {jax.__version__}; {time.strftime('%Y-%m-%d')}. "
        f"Point: the shipped MAP (log p {lp0:.3f}); {z0.size} coordinates; Hessian eigenvalues {ev.min():.3g} to {ev.max():.3g}; "
        f"{seconds:.0f} s in all.",
        "",
        f"Bent direction: eigen-direction {bent} (eigenvalue {ev[bent]:.3g}; the {args.scan} softest scanned: summed change "
        f"of log p at +-0.5 SD {', '.join(f'{k}: {s:.2f}' for k, s in scan.items())}; a Gaussian gives -0.25). "
        f"In z per SD: {top(vz)}.",
        "",
        "## The ridge's centre line (log p maximised over the directions orthogonal to it)",
        "",
        "| t (SD) | change of log p on the ridge | Gaussian -t^2/2 | offset from the line (whitened SD) |",
        "|---:|---:|---:|---:|",
    ]
    for t in sorted(ridge):
        lines.append(f"| {t:+.1f} | {ridge[t][1]:.3f} | {-0.5 * t * t:.3f} | {np.linalg.norm(ridge[t][0]):.2f} |")
    lines += [
        "",
        f"Offsets at +t and -t, symmetric part divided by t^2: norm {np.linalg.norm(ws[T_RIDGE[0]]):.1f} (t = {T_RIDGE[0]}) and "
        f"{np.linalg.norm(ws[T_RIDGE[1]]):.1f} (t = {T_RIDGE[1]}), cosine between them {cos:.6f}; antisymmetric parts "
        + ", ".join(f"{np.linalg.norm(ridge[t][0] - ridge[-t][0]) / 2:.2f}" for t in T_RIDGE)
        + f". In z per SD^2: {top(wz)}. The largest components of w in the Hessian's eigen-directions (whitened): "
        + ", ".join(f"{w_eig[i]:.1f} on eigen-direction {i} (eigenvalue {ev[i]:.3g})" for i in np.argsort(-w_eig)[:3])
        + ".",
        "",
        "## Change of log p before and after the shear u = x + (v.x)^2 w / 2",
        "",
        "| direction | " + " | ".join(f"{t:+.1f}" for t in T_CHECK) + " |",
        "|---|" + "---:|" * len(T_CHECK),
        "| Gaussian | " + " | ".join(f"{-0.5 * t * t:.2f}" for t in T_CHECK) + " |",
    ]
    for name, before, after in rows:
        lines.append(f"| {name}, before | " + " | ".join(f"{x:.2f}" for x in before) + " |")
        lines.append(f"| {name}, after | " + " | ".join(f"{x:.2f}" for x in after) + " |")
    lines += ["", "Generated by `benchmarks/posterior_ridge.py`."]
    atomic_write_text(Path(__file__).with_name("results_posterior_ridge.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
