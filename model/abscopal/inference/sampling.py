"""NUTS on the fit's posterior: the compiled log density as numpyro's potential (through a host
callback, so NUTS does not compile the solver again), the run over chains and processes with its
checkpoints (``nuts.sample``, which sees only the potential), and the convergence diagnostics."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from . import likelihood
from .posterior import layout_of, neg_log_density_and_grad
from .settings import FitSettings


def compiled_potential(f, size: int):
    """numpyro ``potential_fn`` whose value and gradient are those of the compiled ``f``
    (``neg_log_density_and_grad``), reached through a host callback with a custom VJP.

    Why: traced into NUTS, the solver-backed gradient is compiled again inside every jitted stage
    of numpyro (initialisation, step-size search, warm-up, sampling; each chain batch): 100 s of
    compilation for the 3-record quick fit, against 25 s for ``f`` alone. Through the callback, ``f``
    is compiled once (and shared with the MAP) and NUTS compiles only its own tree arithmetic. The
    callback costs microseconds against the milliseconds of a gradient. Each call returns the
    value and the gradient together (NUTS always asks for both)."""
    shapes = (jax.ShapeDtypeStruct((), jnp.float64), jax.ShapeDtypeStruct((size,), jnp.float64))

    def host(z):
        # numpyro runs the chains under ``jax.default_device(cpu:0)``, which is part of jit's cache
        # key: f is called as the MAP calls it (no default device), so it is not compiled again
        with jax.default_device(None):
            v, g = f(np.asarray(z))
        return np.asarray(v, dtype=np.float64), np.asarray(g, dtype=np.float64)

    def both(z):
        return jax.pure_callback(host, shapes, z, vmap_method="sequential")

    @jax.custom_vjp
    def potential(z):
        return both(z)[0]

    def forward(z):
        return both(z)

    def backward(g, ct):
        return (ct * g,)

    potential.defvjp(forward, backward)
    return potential


def problem_potential(record_ids: tuple[str, ...], n_nodes: int, fingerprint: str):
    """The fit's NUTS potential rebuilt from its records (a picklable recipe for ``nuts.sample_processes``:
    a spawned process builds the same problem, checked by its fingerprint, and compiles its gradient)."""
    from ..records import load_records

    by_id = {r.id: r for r in load_records()}
    prob = likelihood.build_problem(tuple(by_id[i] for i in record_ids), n_nodes=n_nodes)
    if likelihood.problem_fingerprint(prob) != fingerprint:
        raise RuntimeError("problem_potential: the records rebuilt in this process are not the fit's (fingerprints differ)")
    return compiled_potential(neg_log_density_and_grad(prob), layout_of(prob).size)


def run_nuts(
    prob: likelihood.Problem,
    init: np.ndarray,
    settings: FitSettings,
    workdir: Path,
    progress: bool = True,
    log=print,
    inv_mass: np.ndarray | None = None,
    f=None,
):
    """NUTS (``nuts.sample``: numpyro's kernel in checkpointed segments, bit-for-bit resumable) on
    minus the log density, the compiled ``f`` of ``neg_log_density_and_grad`` through
    ``compiled_potential``, from ``init`` (jittered per chain). With ``settings.processes`` > 1 the
    chains are split over that many processes (``nuts.sample_processes``; same draws). ``workdir``
    holds the checkpoints; a new call on it resumes. Returns (draws z (chain, draw, size), stats)."""
    from functools import partial

    from .nuts import NutsOptions, sample, sample_processes

    opts = NutsOptions(
        chains=settings.chains,
        warmup=settings.warmup,
        samples=settings.samples,
        segment=settings.segment,
        max_tree_depth=settings.max_tree_depth,
        target_accept=settings.target_accept,
        seed=settings.seed + 1,
    )
    rng = np.random.default_rng(settings.seed + 2)
    starts = init[None] + 0.01 * rng.standard_normal((settings.chains, init.size))
    if settings.processes > 1:
        recipe = partial(
            problem_potential,
            tuple(r.id for r in prob.records),
            len(prob.zeta),
            likelihood.problem_fingerprint(prob),
        )
        return sample_processes(recipe, starts, opts, workdir, settings.processes, inv_mass=inv_mass, progress=progress, log=log)
    potential = compiled_potential(f or neg_log_density_and_grad(prob), layout_of(prob).size)
    return sample(potential, starts, opts, workdir, inv_mass=inv_mass, progress=progress, log=log)


def diagnostics(tree, prob, stats) -> dict:
    import arviz as az

    post = tree["posterior"].to_dataset()
    names = [v for v in post.data_vars]
    # a chain that never moved (or one draw) gives 0/0 in arviz: handled below as inf / NaN, so its
    # RuntimeWarning says nothing the diagnostics do not
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = az.rhat(tree["posterior"])
        ess = az.ess(tree["posterior"], method="bulk")
    one_draw = post.sizes["chain"] * post.sizes["draw"] == 1  # --map: no R-hat or ESS (NaN)
    # per-line entries the table does not estimate (a line without growth data) are constants
    estimated = {n: np.isin(prob.lines, lines) for n, lines in prob.line_entries.items()}
    per = {}
    for v in names:
        r = np.asarray(rhat[v].values if hasattr(rhat, "__getitem__") else rhat.to_dataset()[v].values).ravel()
        e = np.asarray(ess[v].values).ravel()
        if v in estimated and r.size == len(prob.lines):
            r, e = r[estimated[v]], e[estimated[v]]
        if one_draw:
            per[v] = dict(max_rhat=math.nan, min_ess_bulk=math.nan)
            continue
        # an estimated coordinate whose chains never moved gives 0/0: not converged (inf)
        per[v] = dict(
            max_rhat=float(np.max(np.where(np.isnan(r), np.inf, r))), min_ess_bulk=float(np.min(np.nan_to_num(e, nan=0.0)))
        )
    div = np.asarray(stats["diverging"])
    steps = np.asarray(stats["num_steps"])
    d = dict(
        max_rhat=math.nan if one_draw else max(x["max_rhat"] for x in per.values()),
        min_ess_bulk=math.nan if one_draw else min(x["min_ess_bulk"] for x in per.values()),
        divergent_fraction=float(div.mean()),
        n_divergent=int(div.sum()),
        mean_leapfrog_steps=float(steps.mean()),
        max_tree_depth_hits=int((steps >= 2 ** stats.get("max_tree_depth", 99) - 1).sum()),
        step_size=stats["step_size"],
        warmup_seconds=stats["warmup_seconds"],
        sample_seconds=stats["sample_seconds"],
        per_variable=per,
    )
    d["converged"] = bool(d["max_rhat"] <= 1.01 and d["min_ess_bulk"] >= 400 and d["divergent_fraction"] < 0.01)
    return d
