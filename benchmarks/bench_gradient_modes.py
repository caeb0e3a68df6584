"""Where the fit's gradient can and cannot get cheaper on this CPU (issue 33's 50 ms goal).

At the shipped MAP (``fits/review/fit.json``), on the typical mice of every fitted arm solved one
after another (``lax.map``, the package's order), in one run:

1. the forward solve and the reverse-mode gradient of the package's path (diffrax ``Tsit5``,
   ``RecursiveCheckpointAdjoint``) with diffrax's default number of checkpoints and with 64 and 1024;
2. forward sensitivities (``forward_sensitivity.py``, an augmented ODE with the derivative of the
   core states to every estimated parameter), and their agreement with reverse mode;
3. the accepted and rejected steps of one forward pass at several tolerances and with an
   8th-order method (``Dopri8``), with the log volumes' largest difference from a tight solve.

Run: python benchmarks/bench_gradient_modes.py (about 6 minutes). Writes results_gradient_modes.md.
Nothing here asserts a time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
import types
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import diffrax as dfx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from abscopal.inference import likelihood, posterior  # noqa: E402
from abscopal.inference.observations import Quantities, empty  # noqa: E402
from abscopal.inference.settings import SOLVER  # noqa: E402
from abscopal.io import atomic_write_text  # noqa: E402
from abscopal.model.equations import build_model  # noqa: E402
from abscopal.records import load_records  # noqa: E402
from abscopal.simulation import solver as S  # noqa: E402
from forward_sensitivity import solve_segments_sens  # noqa: E402
from timing import timed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class _Solver:
    """Swaps the method and the adjoint that ``solver.solve_segments`` builds (benchmark only)."""

    def __init__(self, method=dfx.Tsit5, adjoint=None):
        self.method, self.adjoint = method, adjoint

    def __enter__(self):
        self._dfx, self._adj = S.dfx, S._adjoint
        ns = {k: getattr(dfx, k) for k in dir(dfx) if not k.startswith("__")}
        ns["Tsit5"] = self.method
        S.dfx = types.SimpleNamespace(**ns)
        if self.adjoint is not None:
            S._adjoint = lambda *a: self.adjoint
        return self

    def __exit__(self, *exc):
        S.dfx, S._adjoint = self._dfx, self._adj


def main():
    prob = likelihood.build_problem(load_records(), use="fit", n_nodes=13)
    prob = dataclasses.replace(prob, pop_arms=prob.pop_arms[:0], frac=empty(Quantities))
    z = jnp.asarray(json.loads((ROOT / "fits/review/fit.json").read_text())["map"]["z"])
    lay = posterior.layout_of(prob)
    shared, line_vals = lay.values(z)
    P = likelihood.arm_values(prob, shared, line_vals, jnp.exp(lay.log_inoculum(z)))
    names = build_model().param_names
    cols = tuple(sorted({names.index(n) for n in prob.shared + prob.per_line + ("v0_irr", "v0_abs", "r")}))
    days = jnp.asarray(prob.days)
    inputs = (
        {k: jnp.asarray(v) for k, v in prob.jumps.items()},
        {k: jnp.asarray(v) for k, v in prob.doses.items()},
        jnp.asarray(prob.horizon),
    )
    vol = np.array([build_model().state_names.index(n) for n in ("V_irr", "V_abs")])

    def solve_all(P, solver=SOLVER):
        return jax.lax.map(lambda x: S.solve_segments(x[0], x[1], x[2], x[3], days, **solver), (P, *inputs))

    def loss(P):  # a sum of log volumes: the shape of the likelihood's read-out
        ys, _ = solve_all(P)
        return jnp.sum(jnp.log(jnp.maximum(ys[..., vol], 1e-12)))

    rows = []
    fwd = jax.jit(lambda P: solve_all(P)[0])
    fwd_c, fwd_t, _ = timed(lambda: fwd(P))
    rows.append(("forward solve (no derivative)", fwd_t, fwd_c, None))
    grads = {}
    for label, ck in (
        ("reverse, diffrax default checkpoints", None),
        ("reverse, 64 checkpoints", 64),
        ("reverse, 1024 checkpoints", 1024),
    ):
        with _Solver(adjoint=dfx.RecursiveCheckpointAdjoint(checkpoints=ck)):
            g = jax.jit(jax.grad(loss))
            c, t, gr = timed(lambda g=g: g(P))
        grads[label] = np.asarray(gr)[:, np.array(cols)]
        rows.append((label, t, c, None))
        print(label, t, flush=True)
    ref = grads["reverse, diffrax default checkpoints"]

    @jax.jit
    def sens(P):
        full, ok, dfull = jax.lax.map(lambda x: solve_segments_sens(x[0], x[1], x[2], x[3], days, cols, **SOLVER), (P, *inputs))
        v = jnp.maximum(full[..., vol], 1e-12)
        return jnp.einsum("akos,aos->ak", dfull[..., vol], (1.0 / v) * (full[..., vol] > 1e-12))

    c, t, gs = timed(lambda: sens(P))
    rows.append((f"forward sensitivities ({len(cols)} parameters)", t, c, float(np.linalg.norm(gs - ref) / np.linalg.norm(ref))))
    print("sens", t, flush=True)

    # steps per forward pass
    counts = []
    tight = np.asarray(jax.jit(lambda P: solve_all(P, dict(rtol=1e-10, atol=1e-14, max_steps=100_000))[0])(P))[..., vol]
    for method, rtol in ((dfx.Tsit5, 1e-4), (dfx.Tsit5, 1e-5), (dfx.Tsit5, 1e-6), (dfx.Tsit5, 1e-7), (dfx.Dopri8, 1e-6)):
        tally = [0, 0]

        def counted(*a, _real=dfx.diffeqsolve, _tally=tally, **k):
            sol = _real(*a, **k)
            jax.debug.callback(
                lambda n, r: _tally.__setitem__(slice(0, 2), [_tally[0] + int(n), _tally[1] + int(r)]),
                sol.stats["num_accepted_steps"],
                sol.stats["num_rejected_steps"],
            )
            return sol

        with _Solver(method=method):
            S.dfx.diffeqsolve = counted
            f = jax.jit(lambda P, r=rtol: solve_all(P, dict(rtol=r, atol=1e-10, max_steps=4096))[0])
            ys = np.asarray(jax.block_until_ready(f(P)))[..., vol]
            tally[:] = [0, 0]
            jax.block_until_ready(f(P))
            steps = list(tally)
            _, t, _ = timed(lambda f=f: f(P))
        err = float(np.max(np.abs(np.log(np.maximum(ys, 1e-12)) - np.log(np.maximum(tight, 1e-12)))))
        counts.append((method.__name__, rtol, steps[0], steps[1], t, err))
        print(method.__name__, rtol, steps, flush=True)

    lines = [
        "# Where the fit's gradient can get cheaper on this CPU",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores; JAX {jax.__version__}; Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d')}. Point: the shipped MAP; the typical mice of {prob.n_arms} arms one after another; "
        f"solver {SOLVER}; {len(cols)} estimated model parameters per arm.",
        "",
        "| path | time | compile + first call | gradient vs reverse (relative, norm) |",
        "|---|---:|---:|---:|",
    ]
    for label, t, c, d in rows:
        lines.append(f"| {label} | {t * 1e3:.1f} ms | {c:.1f} s | {'' if d is None else f'{d:.1e}'} |")
    lines += [
        "",
        "Steps of one forward pass (all arms) and the largest error of the log volumes against rtol 1e-10:",
        "",
        "| method | rtol | accepted | rejected | forward (with a host callback per segment that counts the steps) | max abs error of log V |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m, r, a, rj, t, e in counts:
        lines.append(f"| {m} | {r:g} | {a} | {rj} | {t * 1e3:.1f} ms | {e:.1e} |")
    lines += ["", "Generated by `benchmarks/bench_gradient_modes.py`."]
    atomic_write_text(Path(__file__).with_name("results_gradient_modes.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
