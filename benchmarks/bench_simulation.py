"""Simulation throughput, gradient cost and compile time of abscopal (JAX + diffrax) beside
scipy.integrate.solve_ivp solving the same generated equations one schedule at a time, and
libroadrunner (CVODE) solving the exported SBML of the same schedule one mouse at a time.

Run: python benchmarks/bench_simulation.py [--quick] [--out benchmarks/results.md]
Writes a markdown table with the machine noted. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

# use both CPU cores: two XLA host devices, set before JAX starts (a GPU host ignores this)
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import abscopal as ab  # noqa: E402
from abscopal.export.sbml import to_sbml  # noqa: E402
from abscopal.io import atomic_write_text  # noqa: E402
from abscopal.model.population import virtual_population  # noqa: E402
from abscopal.simulation.reference import solve_reference  # noqa: E402
from abscopal.simulation.simulate import simulate_population, solve, solve_batch  # noqa: E402

RTOL, ATOL, N_OUT = 1e-6, 1e-9, 41
GRAD_MAX_STEPS = 256  # per segment, for the gradient (see below)


def timed(fn, repeat=1):
    t = time.perf_counter()
    for _ in range(repeat):
        out = fn()
        jax.block_until_ready(out)
    return (time.perf_counter() - t) / repeat, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results.md"))
    ap.add_argument("--chunk", type=int, default=64, help="mice per chunk of the cohort path (GPU: thousands)")
    args = ap.parse_args()
    sizes = [1, 100, 1000] if args.quick else [1, 100, 10_000]
    n_scipy = 2 if args.quick else 5

    s = ab.concurrent(
        ab.fractionated(5, 2.0, 7.0), "anti-PD-L1", 10, "mg/kg", n_doses=6, every=2.33, horizon_days=40, tumour_line="CT26"
    )
    p = ab.default_params("CT26")
    ev = {k: v for k, v in s.to_arrays().items() if k != "horizon"}
    opts = ab.SolverOptions(rtol=RTOL, atol=ATOL, n_out=N_OUT, max_steps=16384)
    kw = opts.kwargs()
    pj = jnp.asarray(p.values)

    rows = []
    # compile time: first call (trace + compile + one run) minus a steady run
    first, _ = timed(lambda: solve(pj, ev, 40.0, **kw))
    steady, _ = timed(lambda: solve(pj, ev, 40.0, **kw), repeat=20)
    compile_s = first - steady

    # scipy: the same equations (NumPy backend), one schedule at a time, same tolerances
    ts = np.linspace(0, 40, N_OUT)
    solve_reference(s, p, ts, method="DOP853", rtol=RTOL, atol=ATOL)  # warm the lambdified functions
    pop = virtual_population(p, max(sizes), seed=0)
    t = time.perf_counter()
    for i in range(n_scipy):
        solve_reference(s, p.replace(**dict(zip(p.names, pop[i]))), ts, method="DOP853", rtol=RTOL, atol=ATOL)
    scipy_per = (time.perf_counter() - t) / n_scipy
    scipy_rate = 1.0 / scipy_per

    # libroadrunner: the exported SBML (schedule events included, loaded and compiled once), one mouse
    # at a time: new parameter values set, reset, simulate; same tolerances and output days
    import roadrunner

    rr = roadrunner.RoadRunner(to_sbml(s, p))
    rr.integrator.relative_tolerance = RTOL
    rr.integrator.absolute_tolerance = ATOL
    rr.timeCourseSelections = ["time", *ab.build_model().state_names]
    n_rr = 20 if args.quick else 200
    model_names = list(p.names)
    rr.simulate(0, 40, N_OUT)  # warm
    t = time.perf_counter()
    for i in range(n_rr):
        rr.resetAll()
        for name, value in zip(model_names, pop[i]):
            rr[name] = float(value)
        rr.reset()  # initial values from the initial assignments, with the new parameters
        rr_last = np.asarray(rr.simulate(0, 40, N_OUT))[:, 1:]
    rr_per = (time.perf_counter() - t) / n_rr
    rr_rate = 1.0 / rr_per

    for n in sizes:
        if n == 1:
            per = steady
            how = "`solve` (jit, one mouse)"
        else:
            chunk = min(args.chunk, n)
            simulate_population(s, pop[: chunk * len(jax.devices())], opts, chunk=chunk)  # compile
            dt, _ = timed(lambda n=n, chunk=chunk: simulate_population(s, pop[:n], opts, chunk=chunk)[1])
            per = dt / n
            how = f"`simulate_population` (cohort as one system, chunks of {chunk} over {len(jax.devices())} device(s))"
        rows.append((n, how, 1.0 / per))
    # the plain vmap path (per-mouse step control), for reference
    solve_batch(jnp.asarray(pop[:100]), ev, 40.0, **kw)
    dt, _ = timed(lambda: solve_batch(jnp.asarray(pop[:100]), ev, 40.0, **kw))
    rows.append((100, "`solve_batch` (vmap, per-mouse step control)", 100 / dt))
    # agreement: the last mouse libroadrunner solved, beside abscopal's solve of it
    _, ys_last, _ = solve(jnp.asarray(pop[n_rr - 1]), ev, 40.0, **kw)
    ys_last = np.asarray(ys_last)
    scale = np.abs(ys_last).max(axis=0)
    rr_dev = float((np.abs(rr_last - ys_last) / np.maximum(np.abs(ys_last) + 1e-6 * scale, 1e-300)).max())

    # gradient of an end point (log abscopal volume at the horizon) w.r.t. all parameters
    names = ab.build_model().state_names
    iv, idd = names.index("V_abs"), names.index("D_abs")

    # diffrax's checkpointed reverse pass scales with max_steps (its checkpoint budget), not with the steps
    # taken: a segment here is at most one day (41 output days over 40), so a bound of 256 steps per
    # segment suffices (the ok flag is checked) and makes the gradient much cheaper than with 16384
    # the continuous adjoint ("backsolve", opt-in) integrates backwards per segment instead of
    # differentiating the solver's steps: cheaper here, but unstable where states decay fast (it
    # gave an infinite gradient at the fit's MAP, so the fit keeps the checkpointed adjoint)
    grad_rows = []
    for max_steps, adjoint in ((16384, "checkpoint"), (GRAD_MAX_STEPS, "checkpoint"), (GRAD_MAX_STEPS, "backsolve")):
        gkw = dict(kw, max_steps=max_steps, adjoint=adjoint)

        def endpoint(q, gkw=gkw):
            _, ys, ok = solve(q, ev, 40.0, **gkw)
            return jnp.log(ys[-1, iv] + ys[-1, idd]), ok

        grad = jax.jit(jax.grad(lambda q, f=endpoint: f(q)[0]))
        fwd = jax.jit(endpoint)
        t = time.perf_counter()
        g = jax.block_until_ready(grad(pj))
        grad_compile = time.perf_counter() - t
        value, ok = fwd(pj)
        if not bool(ok):
            raise RuntimeError(f"forward solve failed with max_steps={max_steps}")
        t_fwd, _ = timed(lambda fwd=fwd: fwd(pj), repeat=20)
        t_grad, _ = timed(lambda grad=grad: grad(pj), repeat=20)
        grad_rows.append((f"max_steps {max_steps}, {adjoint} adjoint", grad_compile, t_fwd, t_grad, np.asarray(g)))

    def rel(a, b):
        return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-8 * np.abs(a).max())))

    same_grad = rel(grad_rows[0][4], grad_rows[1][4])
    back_grad = rel(grad_rows[0][4], grad_rows[2][4])

    lines = [
        "# Simulation benchmark",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}; "
        f"JAX {jax.__version__} on {jax.devices()[0].platform} ({len(jax.devices())} device(s)); Python {platform.python_version()}.",
        f"Model: {len(names)} states, {len(p.values)} parameters. Schedule: CT26, 5 x 2 Gy days 7-11 + anti-PD-L1 10 mg/kg x 6 "
        f"from day 7, 40 days, {N_OUT} output days. Tolerances rtol {RTOL:g}, atol {ATOL:g} (both solvers). "
        "Mice: inter-animal variability draws (`abscopal.model.population`).",
        "",
        "| virtual mice | abscopal path | abscopal solves/s | libroadrunner (SBML, CVODE) solves/s, one at a time "
        "| abscopal / libroadrunner | scipy solve_ivp (DOP853) solves/s, one at a time | abscopal / scipy |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n, how, rate in rows:
        lines.append(
            f"| {n} | {how} | {rate:,.0f} | {rr_rate:,.1f} | {rate / rr_rate:,.1f}x | {scipy_rate:.2f} | {rate / scipy_rate:,.0f}x |"
        )
    lines += [
        "",
        f"scipy's rate is measured on {n_scipy} mice solved one after another and applies per solve at every batch size "
        "(solve_ivp has no batching: N mice cost N solves). libroadrunner's rate is measured on "
        f"{n_rr} mice: the exported SBML (`abscopal export --format sbml`, events included) is loaded and JIT-compiled once, "
        "then for each mouse its parameters are set, the model reset (initial assignments re-evaluated) and simulated; "
        f"its largest deviation from abscopal on the last mouse is {rr_dev:.1e} (relative, states above 1e-6 of their "
        "largest value). Targets (2 CPU cores): batched throughput >= 20x libroadrunner and >= 300x scipy.",
        "",
        "| quantity | value |",
        "|---|---:|",
        f"| compile time, forward solve (first call minus a steady call) | {compile_s:.2f} s |",
    ]
    for label, grad_compile, t_fwd, t_grad, _ in grad_rows:
        lines += [
            f"| {label}: compile time, gradient | {grad_compile:.2f} s |",
            f"| {label}: forward solve (one mouse, jit) | {1000 * t_fwd:.2f} ms |",
            f"| {label}: gradient of log abscopal volume w.r.t. all {len(p.values)} parameters (reverse mode) "
            f"| {1000 * t_grad:.2f} ms |",
            f"| {label}: gradient / forward | {t_grad / t_fwd:.2f}x |",
        ]
    lines += [
        "",
        f"The two checkpointed gradients agree to {same_grad:.1e} and the backsolve gradient to {back_grad:.1e} (largest "
        "relative difference, components above 1e-8 of the largest). The backsolve adjoint is opt-in "
        "(`solve(..., adjoint='backsolve')`): at the fit's MAP it gave an infinite gradient (backward integration of "
        "fast-decaying states), so the fit uses the checkpointed one. Targets (2 CPU cores): gradient <= 5x a "
        "forward solve, first compile < 20 s.",
        "",
        f"Generated by `benchmarks/bench_simulation.py{' --quick' if args.quick else ''}` on {time.strftime('%Y-%m-%d')}.",
    ]
    text = "\n".join(lines) + "\n"
    atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
