"""Bayesian inference: the hierarchical model in numpyro, multi-start MAP, then NUTS from the MAP.

Parameters are sampled on the log scale (``log_<name>`` sites):

* shared mechanism parameters: ``log theta ~ Normal(log median, sigma)`` from the parameter
  table's prior (``likelihood.log_prior_spec``);
* per-tumour-line parameters (growth ``r``, LQ ``alpha``, ``antigenicity``), non-centred:
  ``log theta[line] = mu + sigma * eta[line]``, ``mu ~ Normal(table prior)``,
  ``sigma ~ HalfNormal(0.5)``, ``eta ~ Normal(0, 1)``;
* the SD of the series fitted with an estimated SD: ``sigma_series ~ HalfNormal(0.5)``.

The likelihood is ``likelihood.log_likelihood``: a failed solve gives ``-inf`` (the non-throwing
simulation mode), so a NUTS proposal that breaks the solver is rejected instead of crashing the run.

Chains run ``vectorized`` (numpyro's ``parallel`` method breaks diffrax closures on this stack).
Sampling is done in segments with a fixed step size and mass matrix (from the warm-up), so a run
checkpoints after every segment (``checkpoint.npz``: plain arrays, no pickle) and resumes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from . import likelihood as L

SOLVER = dict(rtol=1e-5, atol=1e-8, max_steps=256)


@dataclass(frozen=True)
class FitSettings:
    """Settings of a fit run (stored in fit.json, so that a fit can be reproduced)."""

    seed: int = 0
    n_virtual: int = 8
    map_starts: int = 4
    map_steps: int = 300
    map_lr: float = 0.05
    chains: int = 2
    warmup: int = 200
    samples: int = 200
    segment: int = 50
    max_tree_depth: int = 6
    target_accept: float = 0.8
    quick: bool = False

    @staticmethod
    def quick_settings(seed: int = 0) -> FitSettings:
        """The CI mode: few records' worth of work, a handful of steps and draws (NOT converged)."""
        return FitSettings(
            seed=seed,
            n_virtual=2,
            map_starts=2,
            map_steps=5,
            chains=2,
            warmup=4,
            samples=4,
            segment=2,
            max_tree_depth=2,
            quick=True,
        )


def make_model(prob: L.Problem, solver: dict = SOLVER, with_likelihood: bool = True):
    """The numpyro model (a closure over the problem); ``with_likelihood=False`` gives the prior."""
    import numpyro
    import numpyro.distributions as dist

    shared_prior = np.array([L.log_prior_spec(n) for n in prob.shared]).reshape(-1, 2)
    line_prior = np.array([L.log_prior_spec(n) for n in prob.per_line]).reshape(-1, 2)
    n_lines = len(prob.lines)
    needs_series_sigma = bool(prob.tc) and bool(np.any(prob.tc["estimated"]))

    def model():
        shared = []
        for i, name in enumerate(prob.shared):
            shared.append(numpyro.sample(f"log_{name}", dist.Normal(shared_prior[i, 0], shared_prior[i, 1])))
        shared_vals = jnp.exp(jnp.stack(shared)) if shared else jnp.zeros((0,))
        cols = []
        for i, name in enumerate(prob.per_line):
            mu = numpyro.sample(f"mu_log_{name}", dist.Normal(line_prior[i, 0], line_prior[i, 1]))
            sd = numpyro.sample(f"sigma_{name}", dist.HalfNormal(L.HYPER_SIGMA_SCALE))
            eta = numpyro.sample(f"eta_{name}", dist.Normal(jnp.zeros(n_lines), 1.0))
            cols.append(mu + sd * eta)
        line_vals = jnp.exp(jnp.stack(cols, axis=-1)) if cols else jnp.zeros((n_lines, 0))
        sigma_series = numpyro.sample("sigma_series", dist.HalfNormal(L.SERIES_SIGMA_SCALE)) if needs_series_sigma else 0.3
        if with_likelihood:
            numpyro.factor("loglik", L.log_likelihood(prob, shared_vals, line_vals, sigma_series, solver))

    return model


def natural_values(prob: L.Problem, samples: dict) -> dict[str, np.ndarray]:
    """Log-scale sites -> parameters in their units (arrays with the samples' leading dims)."""
    out = {}
    for name in prob.shared:
        out[name] = np.exp(np.asarray(samples[f"log_{name}"]))
    for name in prob.per_line:
        mu = np.asarray(samples[f"mu_log_{name}"])
        sd = np.asarray(samples[f"sigma_{name}"])
        eta = np.asarray(samples[f"eta_{name}"])
        out[name] = np.exp(mu[..., None] + sd[..., None] * eta)
        out[f"mu_{name}"] = np.exp(mu)
        out[f"sigma_{name}"] = sd
    if "sigma_series" in samples:
        out["sigma_series"] = np.asarray(samples["sigma_series"])
    return out


def _unpack(prob: L.Problem, nat: dict, i=None):
    """(shared_vals, line_vals, sigma_series) for one sample (index tuple ``i``) of natural values."""
    pick = (lambda a: a) if i is None else (lambda a: a[i])
    shared = np.array([pick(nat[n]) for n in prob.shared]) if prob.shared else np.zeros(0)
    lines = np.stack([pick(nat[n]) for n in prob.per_line], axis=-1) if prob.per_line else np.zeros((len(prob.lines), 0))
    sig = pick(nat["sigma_series"]) if "sigma_series" in nat else 0.3
    return shared, lines, sig


# ------------------------------------------------------------------ MAP
def find_map(prob: L.Problem, settings: FitSettings, progress: bool = True, log=print):
    """Multi-start MAP on the unconstrained space (Adam on numpyro's potential, JAX gradients).
    Starts: the prior medians, then draws from the prior. Returns (best unconstrained params,
    table of starts with their final log posterior)."""
    import optax
    from jax.flatten_util import ravel_pytree
    from numpyro.infer import init_to_median, init_to_sample
    from numpyro.infer.util import initialize_model
    from tqdm.auto import tqdm

    model = make_model(prob)
    key = jax.random.PRNGKey(settings.seed)
    starts = []
    for s in range(settings.map_starts):
        key, sub = jax.random.split(key)
        strategy = init_to_median(num_samples=15) if s == 0 else init_to_sample()
        info = initialize_model(sub, model, init_strategy=strategy)
        starts.append(info.param_info.z)
    potential = info.potential_fn
    flat0, unravel = ravel_pytree(starts[0])
    f = jax.jit(jax.value_and_grad(lambda x: potential(unravel(x))))
    opt = optax.adam(settings.map_lr)
    results = []
    for s, z in enumerate(starts):
        x = ravel_pytree(z)[0]
        state = opt.init(x)
        best = (math.inf, x)
        it = range(settings.map_steps)
        bar = tqdm(it, desc=f"MAP start {s + 1}/{len(starts)}", disable=not progress, leave=False)
        for _ in bar:
            v, g = f(x)
            v = float(v)
            if not math.isfinite(v) or not bool(jnp.all(jnp.isfinite(g))):
                # a failed solve (or overflow): step back halfway towards the best point
                x = 0.5 * (x + best[1])
                state = opt.init(x)
                continue
            if v < best[0]:
                best = (v, x)
            upd, state = opt.update(g, state, x)
            x = optax.apply_updates(x, upd)
            bar.set_postfix(logpost=f"{-best[0]:.2f}")
        results.append(dict(start=s, log_posterior=-best[0], x=np.asarray(best[1])))
        log(f"MAP start {s + 1}: log posterior {-best[0]:.3f}")
    best = max(results, key=lambda r: r["log_posterior"])
    return unravel(jnp.asarray(best["x"])), results


# ------------------------------------------------------------------ NUTS with checkpoints
def _save_npz(path: Path, arrays: dict):
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_nuts(prob: L.Problem, init: dict, settings: FitSettings, workdir: Path, progress: bool = True, log=print):
    """NUTS from ``init`` (unconstrained values), ``settings.chains`` vectorized chains.

    Warm-up adapts the step size and a diagonal mass matrix; sampling then proceeds in segments of
    ``settings.segment`` draws with those fixed, and after each segment ``checkpoint.npz`` (the
    chains' last positions, the step size, the mass matrix, all draws so far, and the segment's
    sample statistics) is written. Calling again with the same workdir resumes after the last
    completed segment. Returns (samples dict with (chain, draw, ...) arrays, stats dict)."""
    from numpyro.infer import MCMC, NUTS

    workdir.mkdir(parents=True, exist_ok=True)
    ck_path = workdir / "checkpoint.npz"
    model = make_model(prob)
    key = jax.random.PRNGKey(settings.seed + 1)
    names = sorted(init)
    C = settings.chains

    if ck_path.is_file():
        ck = dict(np.load(ck_path, allow_pickle=False))
        log(f"resuming NUTS from {ck_path} ({int(ck['done'])} of {settings.samples} draws done)")
    else:
        t0 = time.time()
        kernel = NUTS(model, target_accept_prob=settings.target_accept, max_tree_depth=settings.max_tree_depth)
        mcmc = MCMC(
            kernel,
            num_warmup=settings.warmup,
            num_samples=1,
            num_chains=C,
            chain_method="vectorized",
            progress_bar=progress,
        )
        rng = jax.random.split(key, 1)[0]
        init_c = {
            k: jnp.broadcast_to(v, (C,) + jnp.shape(v))
            + 0.01 * jax.random.normal(jax.random.fold_in(rng, i), (C,) + jnp.shape(v))
            for i, (k, v) in enumerate(sorted(init.items()))
        }
        mcmc.warmup(rng, init_params=init_c, extra_fields=("diverging", "num_steps"), collect_warmup=False)
        st = mcmc.last_state
        step = np.asarray(st.adapt_state.step_size)
        imm = st.adapt_state.inverse_mass_matrix
        diag = np.asarray(list(imm.values())[0]) if isinstance(imm, dict) else np.asarray(imm)
        ck = dict(
            done=np.array(0),
            step_size=np.array(np.median(step)),
            inv_mass=diag.mean(axis=0) if diag.ndim == 2 else diag,
            warmup_seconds=np.array(time.time() - t0),
        )
        for k in names:
            ck[f"z_{k}"] = np.asarray(st.z[k])
        _save_npz(ck_path, ck)
        log(f"warm-up done in {time.time() - t0:.0f} s: step size {float(ck['step_size']):.3g}")

    while int(ck["done"]) < settings.samples:
        n = min(settings.segment, settings.samples - int(ck["done"]))
        t0 = time.time()
        kernel = NUTS(
            model,
            step_size=float(ck["step_size"]),
            inverse_mass_matrix=jnp.asarray(ck["inv_mass"]),
            adapt_step_size=False,
            adapt_mass_matrix=False,
            max_tree_depth=settings.max_tree_depth,
        )
        mcmc = MCMC(kernel, num_warmup=0, num_samples=n, num_chains=C, chain_method="vectorized", progress_bar=progress)
        seg_key = jax.random.fold_in(key, 1000 + int(ck["done"]))
        mcmc.run(
            seg_key,
            init_params={k: jnp.asarray(ck[f"z_{k}"]) for k in names},
            extra_fields=("diverging", "num_steps", "potential_energy"),
        )
        s = mcmc.get_samples(group_by_chain=True)
        ex = mcmc.get_extra_fields(group_by_chain=True)
        for k in names:
            ck[f"z_{k}"] = np.asarray(s[k][:, -1])
            prev = ck.get(f"s_{k}")
            ck[f"s_{k}"] = np.asarray(s[k]) if prev is None else np.concatenate([prev, np.asarray(s[k])], axis=1)
        for k in ("diverging", "num_steps", "potential_energy"):
            prev = ck.get(f"x_{k}")
            ck[f"x_{k}"] = np.asarray(ex[k]) if prev is None else np.concatenate([prev, np.asarray(ex[k])], axis=1)
        ck["done"] = np.array(int(ck["done"]) + n)
        ck["sample_seconds"] = np.array(float(ck.get("sample_seconds", 0.0)) + time.time() - t0)
        _save_npz(ck_path, ck)
        log(f"NUTS: {int(ck['done'])}/{settings.samples} draws per chain ({time.time() - t0:.0f} s for this segment)")

    samples = {k: ck[f"s_{k}"] for k in names}
    stats = {k: ck[f"x_{k}"] for k in ("diverging", "num_steps", "potential_energy")}
    stats["step_size"] = float(ck["step_size"])
    stats["warmup_seconds"] = float(ck["warmup_seconds"])
    stats["sample_seconds"] = float(ck.get("sample_seconds", 0.0))
    return samples, stats


def prior_samples(prob: L.Problem, n: int, seed: int) -> dict:
    """``n`` draws of the latent sites from the prior (no solve), shaped (1, n, ...)."""
    from numpyro.infer import Predictive

    draws = Predictive(make_model(prob, with_likelihood=False), num_samples=int(n))(jax.random.PRNGKey(seed))
    return {k: np.asarray(v)[None] for k, v in draws.items()}


def write_json(path: Path, obj):
    from .io import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=1, default=float))
