"""Where the floor of the fit's gradient is, on this CPU (issue 19's remaining 100 ms target).

Measures, in one run, at the shipped MAP (`fits/review/fit.json`):

1. the unit costs: one right-hand side of the 22-state core, its vjp, one Tsit5 step (6 stages) and
   the step's vjp, each inside a ``fori_loop`` of 2,000 calls (no solver around them);
2. the typical mice of the review's 72 arms solved one after another (``lax.map``) by the
   package's diffrax path (``solver.solve_segments``) and by the hand-written Runge-Kutta loop with
   a discrete adjoint (``rk_discrete.py``), with their accuracy against a tight diffrax solve;
3. vmapped lanes against one-by-one: the population's virtual mice (8 per arm, same schedule) and
   the typical arms (sorted by their number of state jumps), chunks of ``width`` lanes inside a
   ``lax.map``;
4. the accepted and rejected steps of one log-density evaluation, per solve.

Run: python benchmarks/bench_solver_floor.py  (about 8 minutes). Writes results_solver_floor.md.
Nothing here asserts a time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import diffrax as dfx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import rk_discrete  # noqa: E402
from abscopal.inference import cohort, likelihood, posterior  # noqa: E402
from abscopal.inference.settings import SOLVER  # noqa: E402
from abscopal.io import atomic_write_text  # noqa: E402
from abscopal.model.codegen import core_functions  # noqa: E402
from abscopal.model.pk import concentrations, pk_schedule, pk_states  # noqa: E402
from abscopal.records import load_records  # noqa: E402
from abscopal.schedules import EVENT_DRUG, EVENT_RT  # noqa: E402
from abscopal.simulation import solver as solver_module  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIGHT = dict(rtol=1e-10, atol=1e-14, max_steps=100_000)


def timed(fn, x, repeat):
    t = time.perf_counter()
    jax.block_until_ready(fn(x))
    first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(repeat):
        out = jax.block_until_ready(fn(x))
    return first, (time.perf_counter() - t) / repeat, out


# ---------------------------------------------------------------- the experiment's solve of one arm
def _jump(y, args, s):
    p, _coef, B = args
    rt_event = core_functions("jax")[2]
    y = jnp.where(s["kind"] == EVENT_RT, rt_event(y, p, s["value"], s["on_irr"], s["on_abs"]), y)
    return jnp.where(s["kind"] == EVENT_DRUG, y + s["value"] * B[s["agent"]], y)


def _field(t, y, args):
    p, coef, _B = args
    return core_functions("jax")[0](y, p, concentrations(t, coef))


def solve_rk(p, jumps, doses, horizon, days, *, rtol, atol, max_steps):
    """``solver.solve_segments``' result from ``rk_discrete.solve_schedule``."""
    _, initial, _, bolus_matrix, pk_rates = core_functions("jax")
    coef = pk_schedule(pk_rates(p), doses)
    ys, ok = rk_discrete.solve_schedule(
        _field,
        _jump,
        initial(p),
        (p, coef, bolus_matrix(p)),
        jumps["time"],
        {k: jumps[k] for k in ("kind", "value", "on_irr", "on_abs", "agent")},
        jnp.where(doses["amount"] != 0, doses["time"], jnp.inf),
        days,
        horizon,
        rtol=rtol,
        atol=atol,
        max_records=max_steps,
    )
    depot, conc = pk_states(days, coef)
    return jnp.concatenate([ys, depot, conc], axis=1)[:, solver_module._state_layout()], ok


# ---------------------------------------------------------------- parts
def unit_costs(P, prob, n=2000, arm=5):
    rhs, initial, _, bolus_matrix, pk_rates = core_functions("jax")
    p = P[arm]
    coef = pk_schedule(pk_rates(p), {k: jnp.asarray(v[arm]) for k, v in prob.doses.items()})
    args, y0 = (p, coef, bolus_matrix(p)), initial(p)
    step = lambda t, y, a: rk_discrete._step_map(_field, t, y, 0.01, a)

    def vjp_of(fn):
        def body(i, acc, y, a):
            _, pull = jax.vjp(lambda y, a: fn(1.0 + i * 1e-3, y, a), y + acc, a)
            gy, ga = pull(jnp.ones_like(y))
            return acc + 1e-9 * gy + 1e-12 * ga[0][: y.shape[0]]

        return body

    cases = {
        "right-hand side": lambda i, acc, y, a: acc + 1e-9 * _field(1.0 + i * 1e-3, y + acc, a),
        "right-hand side's vjp": vjp_of(_field),
        "Tsit5 step (6 stages)": lambda i, acc, y, a: acc + 1e-9 * step(1.0 + i * 1e-3, y + acc, a),
        "Tsit5 step's vjp": vjp_of(step),
    }
    rows = []
    for name, body in cases.items():
        loop = jax.jit(lambda y, a, body=body: jax.lax.fori_loop(0, n, lambda i, acc: body(i, acc, y, a), jnp.zeros_like(y)))
        _, t, _ = timed(lambda y, loop=loop: loop(y, args), y0, 10)
        rows.append((name, t / n * 1e9))
    return rows


def arm_solves(prob, z, solve_one, width=1, part="typical"):
    """Solve-only log-volume sum of the typical arms or the virtual mice, chunks of ``width`` lanes."""
    lay = posterior.layout_of(prob)
    days = jnp.asarray(prob.days)
    n_jumps = (np.asarray(prob.jumps["kind"]) != 0).sum(1)
    K = len(prob.zeta)  # the cohort's grid mice per population arm (``inference/cohort``)

    def fn(z):
        shared, line_vals = lay.values(z)
        P = likelihood.arm_values(prob, shared, line_vals, jnp.exp(lay.log_inoculum(z)))
        if part == "typical":
            arm = np.lexsort((prob.horizon, n_jumps))  # similar schedules side by side
            rows = P[arm]
        else:
            b = np.repeat(np.arange(len(prob.pop_arms)), K)
            rows = cohort.mouse_rows(prob, P, b, np.tile(prob.zeta, len(prob.pop_arms)))
            arm = prob.pop_arms[b]
        n = rows.shape[0]
        pad = (-n) % width
        arm = np.concatenate([arm, np.repeat(arm[-1:], pad)])
        rows = jnp.concatenate([rows, jnp.repeat(rows[-1:], pad, 0)])
        xs = (
            rows,
            {k: jnp.asarray(v[arm]) for k, v in prob.jumps.items()},
            {k: jnp.asarray(v[arm]) for k, v in prob.doses.items()},
            jnp.asarray(prob.horizon[arm]),
        )
        one = lambda x: solve_one(x[0], x[1], x[2], x[3], days)
        chunks = jax.tree.map(lambda x: x.reshape((-1, width) + x.shape[1:]), xs)
        ys, ok = jax.lax.map(jax.vmap(one), chunks)
        ys = ys.reshape((-1,) + ys.shape[2:])[:n]
        return jnp.sum(jnp.log(jnp.maximum(ys[..., :4], 1e-12))), ok

    return fn


def measure(fn, z, repeat=5):
    f = jax.jit(fn)
    g = jax.jit(jax.grad(lambda z: fn(z)[0]))
    cg, tg, gv = timed(g, z, repeat)
    _, tf, (v, ok) = timed(f, z, repeat)
    return dict(forward=tf, gradient=tg, compile=cg, value=float(v), ok=bool(np.all(np.asarray(ok))), grad=np.asarray(gv))


def step_counts(prob, P):
    counts = []
    orig = dfx.diffeqsolve

    def counting(*a, **k):
        sol = orig(*a, **k)
        jax.debug.callback(
            lambda n, r: counts.append((int(n), int(r))), sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"]
        )
        return sol

    solver_module.dfx.diffeqsolve = counting
    try:
        jax.block_until_ready(jax.jit(lambda P: likelihood.solve_arms(prob, P, **SOLVER))(P))
    finally:
        solver_module.dfx.diffeqsolve = orig
    return np.array(counts)


def main():
    prob = likelihood.build_problem(load_records(), use="fit", n_nodes=13)
    z = jnp.asarray(json.loads((ROOT / "fits/review/fit.json").read_text())["map"]["z"])
    lay = posterior.layout_of(prob)
    shared, line_vals = lay.values(z)
    P = likelihood.arm_values(prob, shared, line_vals, jnp.exp(lay.log_inoculum(z)))
    typical = dataclasses.replace(prob, pop_arms=prob.pop_arms[:0])
    opts = lambda solver: lambda p, j, d, h, days: solver(p, j, d, h, days, **SOLVER)  # noqa: E731

    units = unit_costs(P, prob)
    print(units, flush=True)
    counts = step_counts(prob, P)
    tight = measure(
        arm_solves(typical, z, lambda p, j, d, h, days: solver_module.solve_segments(p, j, d, h, days, **TIGHT)), z, 1
    )
    paths = {
        "diffrax (package)": measure(arm_solves(typical, z, opts(solver_module.solve_segments)), z),
        "own Runge-Kutta loop, discrete adjoint": measure(arm_solves(typical, z, opts(solve_rk)), z),
    }
    for k, v in paths.items():
        print(k, v["forward"], v["gradient"], v["compile"], flush=True)
    lanes = {}
    for part, widths in (("virtual mice", (1, 8)), ("typical", (1, 4))):
        for w in widths:
            lanes[(part, w)] = measure(
                arm_solves(prob if part == "virtual mice" else typical, z, opts(solver_module.solve_segments), w, part), z
            )
            print(part, w, lanes[(part, w)]["gradient"], flush=True)

    rel = lambda g: float(np.linalg.norm(g - tight["grad"]) / np.linalg.norm(tight["grad"]))
    dev = jax.devices()[0]
    n_solves = prob.n_arms + len(prob.pop_arms) * len(prob.zeta)
    lines = [
        "# The floor of the fit's gradient on this CPU",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores; JAX {jax.__version__} on {dev.platform}; "
        f"Python {platform.python_version()}; {time.strftime('%Y-%m-%d')}. Point: the shipped MAP; solver {SOLVER}.",
        "",
        "## Unit costs (one CPU core, inside a `fori_loop`, no solver around them)",
        "",
        "| operation | ns per call |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {ns:.0f} |" for name, ns in units]
    lines += [
        "",
        f"One evaluation of the log density solves {n_solves} mice ({prob.n_arms} typical, {len(prob.pop_arms)} arms x "
        f"{len(prob.zeta)} cohort grid nodes) in {len(counts)} segments: {counts[:, 0].sum()} accepted and {counts[:, 1].sum()} "
        f"rejected Tsit5 steps ({counts[:, 0].sum() / n_solves:.0f} accepted per mouse).",
        "",
        "## The 72 typical arms one by one: diffrax against a hand-written loop with a discrete adjoint",
        "",
        "Solve only (arm values -> log volumes), summed; accuracy against diffrax at rtol 1e-10 (gradient: relative, norm).",
        "",
        "| path | forward | gradient | gradient / forward | compile (gradient) | gradient error |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in paths.items():
        lines.append(
            f"| {name} | {m['forward'] * 1e3:.1f} ms | {m['gradient'] * 1e3:.1f} ms | {m['gradient'] / m['forward']:.1f} | "
            f"{m['compile']:.1f} s | {rel(m['grad']):.1e} |"
        )
    lines += [
        "",
        "## Lanes (vmap inside chunks) against one by one",
        "",
        "| solves | lanes per chunk | forward | gradient |",
        "|---|---:|---:|---:|",
    ]
    for (part, w), m in lanes.items():
        lines.append(f"| {part} | {w} | {m['forward'] * 1e3:.1f} ms | {m['gradient'] * 1e3:.1f} ms |")
    lines += ["", "Generated by `benchmarks/bench_solver_floor.py`."]
    out = os.path.join(os.path.dirname(__file__), "results_solver_floor.md")
    atomic_write_text(out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
