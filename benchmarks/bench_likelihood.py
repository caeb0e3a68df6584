"""Cost of the fit's log posterior and of its gradient at the shipped MAP, for the package's solve
path (``likelihood.solve_arms``: arms one by one, jumps-only segments, closed-form PK) against the
path shipped before it (``reference_path.py``: one vmap of the 64-state model over all arms), in
one run, with compile times and the agreement of the two; and a profile of where the package's
time goes (typical mice, the cohort fractions' mice, the rest).

Run: python benchmarks/bench_likelihood.py [--repeat 5] [--no-reference] [--json FILE]
Writes benchmarks/results_likelihood.md. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import dataclasses
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

sys.path.insert(0, os.path.dirname(__file__))
from abscopal.inference import likelihood, posterior  # noqa: E402
from abscopal.inference.observations import Quantities, empty  # noqa: E402
from abscopal.inference.settings import SOLVER  # noqa: E402
from abscopal.io import atomic_write_text  # noqa: E402
from abscopal.records import load_records  # noqa: E402
from abscopal.simulation.solver import solve_mode  # noqa: E402
from reference_path import SHIPPED_SOLVER, solve_arms_shipped  # noqa: E402
from timing import timed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIGHT = dict(rtol=1e-9, atol=1e-12, max_steps=100_000)
OFFSET = 1e-3


def measure(logp, z, repeat):
    fwd = jax.jit(logp)
    grad = jax.jit(jax.value_and_grad(logp))
    c_fwd, t_fwd, v = timed(lambda: fwd(z), repeat)
    c_grad, t_grad, (v2, g) = timed(lambda: grad(z), repeat)
    # at the MAP the gradient is ~0 (a converged MAP's norm is 2e-3), so its relative error there
    # measures nothing; also compare at a point 1e-3 away in every coordinate (about one posterior SD
    # along the stiffest directions, whose curvature reaches 1e6), where the gradient is O(100)
    g_off = grad(z + OFFSET * np.random.default_rng(0).standard_normal(z.shape))[1]
    return dict(
        compile_forward=c_fwd,
        forward=t_fwd,
        compile_gradient=c_grad,
        gradient=t_grad,
        logp=float(v),
        grad=np.asarray(g),
        grad_off=np.asarray(g_off),
    )


def profile(prob, z, repeat):
    """Forward and gradient of the package's path on parts of the problem (same point)."""
    rows = []
    parts = {
        "typical mice only (no cohort fractions)": dataclasses.replace(prob, pop_arms=prob.pop_arms[:0], frac=empty(Quantities)),
        "all (typical mice + cohort fractions)": prob,
    }
    for name, pr in parts.items():
        lay = posterior.layout_of(pr)

        def solve_only(z, pr=pr, lay=lay):
            shared, line_vals = lay.values(z)
            P = likelihood.arm_values(pr, shared, line_vals, jnp.exp(lay.log_inoculum(z)))
            obs, frac, _ = likelihood.solve_arms(pr, P, **SOLVER)
            return jnp.sum(obs[..., 0]) + jnp.sum(frac)

        m = measure(solve_only, z, repeat)
        rows.append((name, m["forward"], m["gradient"]))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-reference", action="store_true", help="skip the shipped path (slow: ~2 min compile)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results_likelihood.md"))
    args = ap.parse_args()

    prob = likelihood.build_problem(load_records(), use="fit", n_nodes=13)
    z = jnp.asarray(json.loads((ROOT / "fits/review/fit.json").read_text())["map"]["z"])
    new = measure(posterior.make_log_density(prob, SOLVER), z, args.repeat)
    print(f"package: fwd {new['forward']:.4f}s grad {new['gradient']:.4f}s (compile {new['compile_gradient']:.1f}s)", flush=True)
    tight = measure(posterior.make_log_density(prob, TIGHT), z, 1)
    print(f"tight (rtol 1e-9): logp {tight['logp']:.6f}", flush=True)
    ref = None
    if not args.no_reference:
        ref = measure(posterior.make_log_density(prob, SHIPPED_SOLVER, solve_fn=solve_arms_shipped), z, max(1, args.repeat // 2))
        print(
            f"shipped: fwd {ref['forward']:.3f}s grad {ref['gradient']:.3f}s (compile {ref['compile_gradient']:.1f}s)", flush=True
        )
    prof = profile(prob, z, args.repeat)

    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))
    result = dict(
        forward_s=new["forward"],
        gradient_s=new["gradient"],
        compile_forward_s=new["compile_forward"],
        compile_gradient_s=new["compile_gradient"],
        logp=new["logp"],
        tight_logp_abs_diff=abs(new["logp"] - tight["logp"]),
        tight_grad_rel_diff=rel(new["grad_off"], tight["grad_off"]),
        tight_grad_rel_diff_at_map=rel(new["grad"], tight["grad"]),
        tight_grad_abs_diff_at_map=float(np.linalg.norm(new["grad"] - tight["grad"])),
        grad_norm_at_map=float(np.linalg.norm(tight["grad"])),
        grad_norm_off_map=float(np.linalg.norm(tight["grad_off"])),
    )
    if ref is not None:
        result.update(
            reference_forward_s=ref["forward"],
            reference_gradient_s=ref["gradient"],
            reference_compile_gradient_s=ref["compile_gradient"],
            logp_abs_diff=abs(new["logp"] - ref["logp"]),
            grad_rel_diff=rel(new["grad_off"], ref["grad_off"]),
            forward_speedup=ref["forward"] / new["forward"],
            gradient_speedup=ref["gradient"] / new["gradient"],
        )
    dev = jax.devices()[0]
    lines = [
        "# Fit log-posterior benchmark",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores; JAX {jax.__version__} on {dev.platform}; "
        f"Python {platform.python_version()}; {time.strftime('%Y-%m-%d')}.",
        f"Problem: {len(prob.records)} fitted records, {prob.n_arms} arms ({len(prob.pop_arms)} with "
        f"{len(prob.frac)} cohort fractions on a {len(prob.zeta)}-node grid), {posterior.layout_of(prob).size} coordinates; point: the shipped MAP "
        "(`fits/review/fit.json`).",
        f"Package path: `likelihood.solve_arms` (mode {solve_mode()}), solver {SOLVER}. "
        f"Shipped path: `benchmarks/reference_path.py`, solver {SHIPPED_SOLVER}.",
        "",
        "| path | compile forward | compile gradient | forward | gradient | log p |",
        "|---|---:|---:|---:|---:|---:|",
        f"| package | {new['compile_forward']:.1f} s | {new['compile_gradient']:.1f} s | {new['forward'] * 1e3:.1f} ms | "
        f"{new['gradient'] * 1e3:.1f} ms | {new['logp']:.5f} |",
    ]
    if ref is not None:
        lines.append(
            f"| shipped (reference) | {ref['compile_forward']:.1f} s | {ref['compile_gradient']:.1f} s | "
            f"{ref['forward'] * 1e3:.0f} ms | {ref['gradient'] * 1e3:.0f} ms | {ref['logp']:.5f} |"
        )
        lines += [
            "",
            f"Speed-up in this run: forward {result['forward_speedup']:.1f}x, gradient {result['gradient_speedup']:.1f}x. "
            f"Agreement with the shipped path: |log p difference| {result['logp_abs_diff']:.2e}, gradient "
            f"{result['grad_rel_diff']:.2e} (relative, norm, at the offset point below).",
        ]
    lines += [
        f"Against a tight-tolerance solve of the same path (rtol 1e-9, atol 1e-12): |log p difference| "
        f"{result['tight_logp_abs_diff']:.2e}; gradient {result['tight_grad_rel_diff']:.2e} (relative, norm) at a point "
        f"{OFFSET:g} from the MAP in every coordinate (gradient norm {result['grad_norm_off_map']:.3g}); at the MAP itself "
        f"(gradient norm {result['grad_norm_at_map']:.2g}) {result['tight_grad_abs_diff_at_map']:.2g} absolute, "
        f"{result['tight_grad_rel_diff_at_map']:.2g} relative.",
        "",
        "Where the package's time goes (solve only: arm values -> observables, no likelihood terms):",
        "",
        "| part | forward | gradient |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {f * 1e3:.1f} ms | {g * 1e3:.1f} ms |" for name, f, g in prof]
    lines += ["", "Generated by `benchmarks/bench_likelihood.py`."]
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
