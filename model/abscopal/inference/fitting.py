"""``abscopal fit``: build the likelihood from the committed records, MAP, NUTS, and write the fit
folder (posterior netCDF, fit.json, parameter summary, diagnostics, report with figures).

The run is reproducible from the records and the seed, and resumable: MAP results and NUTS
segments are checkpointed under ``<out>/work/`` (plain JSON and ``.npz``; nothing is pickled).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from ..io import atomic_write_json, atomic_write_text
from . import likelihood
from .laplace_draws import laplace_stage, laplace_status
from .mapfit import map_point, refine_stage, same_settings, start_map
from .posterior import natural_values, neg_log_density_and_grad, prior_draws_z
from .predictive import predict, predictor_of, reproduction
from .report import REPRODUCED_AT, write_report  # REPRODUCED_AT: the reproduction rule shares it
from .sampling import diagnostics, run_nuts
from .settings import SOLVER, FitSettings

#: how the posterior is represented after the MAP: NUTS draws, Laplace draws (a labelled
#: approximation), or the MAP point alone
METHODS = ("nuts", "laplace", "map")

#: records used by the quick (CI) fit: one of each observation kind
QUICK_RECORDS = ("S01", "R29", "R17")


def fit_records(quick: bool):
    """The records a fit starts from: all (the problem keeps those marked ``fit``), or with ``quick`` the ``QUICK_RECORDS``."""
    from ..records import load_records

    recs = load_records()
    if quick:
        recs = tuple(r for r in recs if r.id in QUICK_RECORDS)
    return recs


def run_fit(
    out: str | Path,
    settings: FitSettings = FitSettings(),
    progress: bool = True,
    log=print,
    method: str = "nuts",
    checks=None,
) -> Path:
    """The whole fit; returns the fit folder. Re-running with the same ``out`` resumes.

    Stages: the problem from the records; the MAP (``mapfit.start_map``, ``refine_stage``); the
    posterior draws (NUTS, the MAP alone, or the Laplace approximation); the InferenceData with
    prior draws and the predictive; diagnostics and reproduction; the fit folder and its report.

    ``method="laplace"`` replaces NUTS by independent draws from the Laplace approximation at the
    MAP (covariance from a finite-difference Hessian, checked by Pareto-smoothed importance
    sampling): a fallback for when NUTS cannot finish in the time available, labelled as such
    (status NOT CONVERGED, "not MCMC", the PSIS k-hat) in fit.json and the report.

    ``checks``: ``(credibility_checks, format_checks)`` from ``abscopal.decide.scenarios`` to put the
    credibility checks in the report (``abscopal fit`` passes them)."""
    if method not in METHODS:
        raise ValueError(f"method: must be one of {METHODS}, got {method!r}")
    out = Path(out)
    work = _work_folder(out, settings)
    t_start = time.time()
    prob = likelihood.build_problem(fit_records(settings.quick), n_nodes=settings.n_nodes)
    log(
        f"{len(prob.records)} records, {prob.n_arms} arms ({len(prob.pop_arms)} also over a {settings.n_nodes}-node cohort grid), "
        f"{len(prob.tc)} time-course points, {len(prob.cmp)} comparisons, {len(prob.cnt)} counts; "
        f"{len(prob.shared)} shared + {len(prob.line_coords)} per-line parameters ({len(prob.lines)} lines)"
    )
    f = neg_log_density_and_grad(prob)
    map_record, resumed = start_map(prob, settings, out, work, f, progress, log)
    init = refine_stage(prob, settings, map_record, work, f, progress, log)
    draws, stats, laplace = _posterior_draws(
        method, prob, init, np.asarray(map_record["inv_mass"]), settings, work, f, progress, log
    )
    stats["max_tree_depth"] = settings.max_tree_depth
    tree, nat, pred, idx = _inference_data(prob, draws, stats, settings, progress)
    diag = diagnostics(tree, prob, stats)
    repro = _reproduction(prob, nat, pred, idx, init, settings, progress)
    diag["map"] = dict(
        starts=map_record.get("starts", []), refinements=map_record.get("refinements", []), note=map_record.get("note", "")
    )
    if method in ("laplace", "map"):
        diag.update(converged=False, method=method, laplace=laplace)
    meta = _meta(out, prob, settings, method, init, map_record, diag, repro, laplace)
    meta.update(wall_seconds=time.time() - t_start, resumed=resumed)
    _write_fit_folder(out, prob, tree, meta, diag, repro, pred, checks)
    rep = meta["reproduced"]
    log(f"fit written to {out}: {meta['status']}; {rep['n']} of {rep['of']} fitted records reproduced with P >= {REPRODUCED_AT}")
    return out


def _work_folder(out: Path, settings: FitSettings) -> Path:
    """``out/work`` with the run's settings; refused when an unfinished fit with other settings is there."""
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    settings_path = work / "settings.json"
    if settings_path.is_file() and not same_settings(json.loads(settings_path.read_text()), asdict(settings)):
        raise ValueError(
            f"{out}: an unfinished fit with other settings is there ({settings_path}); use another --out or delete {work}"
        )
    atomic_write_json(settings_path, asdict(settings))
    return work


def _posterior_draws(method: str, prob, init, inv_mass, settings: FitSettings, work: Path, f, progress: bool, log):
    """Draws (chains, draws, size) and their sample statistics: NUTS (checkpointed per segment),
    the MAP as the one draw, or the Laplace approximation. Returns (draws, stats, laplace record or None)."""
    if method == "nuts":
        return (*run_nuts(prob, init, settings, work, progress=progress, log=log, inv_mass=inv_mass, f=f), None)
    if method == "laplace":
        return laplace_stage(prob, init, settings, work, f, progress, log)
    # the MAP alone: one "draw", no parameter uncertainty (said in fit.json and the report)
    stats = dict(
        diverging=np.zeros((1, 1), bool),
        num_steps=np.zeros((1, 1), np.int64),
        potential_energy=np.asarray(f(jnp.asarray(init))[0]).reshape(1, 1),
        step_size=float("nan"),
        warmup_seconds=0.0,
        sample_seconds=0.0,
    )
    log("MAP only: the fit stores the posterior mode as its one draw (no parameter uncertainty)")
    return np.asarray(init)[None, None, :], stats, None


def _inference_data(prob, draws, stats, settings: FitSettings, progress: bool):
    """The arviz InferenceData (posterior, prior draws for contraction, posterior predictive of the
    time courses and comparisons, observed data, sample statistics). Returns (tree, posterior in
    natural units, predictive, the (chain, draw) indices it was computed at)."""
    import arviz as az

    nat = natural_values(prob, draws)
    prior_nat = natural_values(prob, prior_draws_z(prob, 200 if not settings.quick else 20, settings.seed + 99)[None])
    C, D = draws.shape[:2]
    rng = np.random.default_rng(settings.seed)
    flat = rng.choice(C * D, size=min(C * D, 40 if settings.quick else 200), replace=False)
    idx = [(int(i // D), int(i % D)) for i in flat]
    pred = predict(prob, nat, idx, progress, one=predictor_of(prob))
    dims = {n: ["tumour_line"] for n in prob.per_line}
    coords = {"tumour_line": prob.lines}
    if prob.series_groups:
        dims["sigma_series"], coords["discrepancy_group"] = ["discrepancy_group"], list(prob.series_groups)
    if prob.inoculum_groups:
        dims["v0_inoculum"], coords["inoculum_group"] = ["inoculum_group"], list(prob.inoculum_groups)
    ppc, observed = {}, {}
    if prob.tc:
        ppc["log_volume_series"] = np.exp(pred["tc_model"])[None]
        dims["log_volume_series"], coords["observation"] = ["observation"], np.arange(len(prob.tc))
        observed["log_volume_series"] = np.where(prob.tc.censored, 0.0, prob.tc.mean)
    if prob.cmp:
        ppc["comparison_difference"] = pred["d"][None]
        dims["comparison_difference"] = ["comparison"]
        coords["comparison"] = [f"{r}: {lab}" for r, lab in prob.cmp.labels]
    sample_stats = {"diverging": stats["diverging"].astype(bool), "n_steps": stats["num_steps"], "lp": -stats["potential_energy"]}
    tree = az.from_dict(
        {
            "posterior": nat,
            "prior": dict(prior_nat),
            "posterior_predictive": ppc,
            "observed_data": observed,
            "sample_stats": sample_stats,
        },
        dims=dims,
        coords=coords,
    )
    return tree, nat, pred, idx


def _reproduction(prob, nat, pred, idx, init, settings: FitSettings, progress: bool) -> list[dict]:
    """Per record, the probability that the posterior reproduces it (the fitted records, and the
    check records predicted from the same draws unless quick), with whether it holds at the MAP."""
    repro = reproduction(prob, pred)
    if not settings.quick:
        from ..records import load_records

        check_records = tuple(r for r in load_records() if r.use == "check")
        if check_records:
            pc = likelihood.build_problem(check_records, use="check", n_nodes=settings.n_nodes)
            fitted = dict(fit_lines=list(prob.lines), fit_groups=list(prob.series_groups), fit_inocula=list(prob.inoculum_groups))
            repro += reproduction(pc, predict(pc, nat, idx, progress, seed=settings.seed, **fitted))
    # the same rules at the MAP alone: what a posterior concentrated there would reproduce
    at_map = natural_values(prob, np.asarray(init)[None, None])
    held = {r["record"]: r["probability"] == 1.0 for r in reproduction(prob, predict(prob, at_map, [(0, 0)], False))}
    for r in repro:
        r["at_map"] = held.get(r["record"])
    return repro


def _status(method: str, diag: dict, laplace: dict | None, quick: bool) -> str:
    status = "converged" if diag["converged"] else "NOT CONVERGED (see diagnostics)"
    if method == "map":
        status = "MAP only: the posterior mode, no parameter uncertainty (the posterior is the NUTS issue's)"
    if method == "laplace":
        status = laplace_status(laplace)
    return "quick mode (CI smoke run): NOT a fit; " + status if quick else status


def _meta(out: Path, prob, settings: FitSettings, method: str, init, map_record: dict, diag: dict, repro, laplace) -> dict:
    """fit.json's content (less the wall time): what was fitted, how, the MAP, and how it went."""
    fitted = [r for r in repro if r["use"] == "fit"]
    return dict(
        name=out.name,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        status=_status(method, diag, laplace, settings.quick),
        settings=asdict(settings),
        estimated=dict(
            shared=list(prob.shared),
            per_line=list(prob.per_line),
            lines=list(prob.lines),
            # the lines each per-line parameter is estimated for (the others hold their table values)
            line_entries=prob.line_entries,
            series_groups=list(prob.series_groups),
            inoculum_groups=list(prob.inoculum_groups),
        ),
        fixed={},
        records=[r.id for r in prob.records],
        data_sha256=likelihood.problem_fingerprint(prob),
        map=map_point(prob, init, map_record),
        likelihood=dict(
            tau=likelihood.TAU,
            smooth_log=likelihood.SMOOTH_LOG,
            sigma_model=likelihood.SIGMA_MODEL,
            detection_mm3=likelihood.DETECTION_MM3,
            series_sigma_scale=likelihood.SERIES_SIGMA_SCALE,
            inoculum_sigma=likelihood.INOCULUM_SIGMA,
            solver=SOLVER,
        ),
        map_starts=map_record["starts"],
        diagnostics={k: v for k, v in diag.items() if k != "per_variable"},
        reproduced=dict(
            threshold=REPRODUCED_AT,
            n=sum(r["probability"] >= REPRODUCED_AT for r in fitted),
            of=len(fitted),
            at_map=sum(bool(r["at_map"]) for r in fitted),
        ),
        method=method,
    )


def _write_fit_folder(out: Path, prob, tree, meta: dict, diag: dict, repro, pred, checks) -> None:
    """posterior.nc and fit.json, diagnostics, reproduction, the parameter summary and the report."""
    from .fitresult import load_fit, save_fit

    save_fit(out, tree, meta)
    atomic_write_json(out / "diagnostics.json", diag)
    atomic_write_json(out / "reproduction.json", repro)
    fit = load_fit(out)
    summ = fit.summary()
    atomic_write_text(out / "summary.csv", summ.to_csv(index=False))
    atomic_write_text(out / "summary.json", summ.to_json(orient="records", indent=1))
    write_report(out, prob, fit, diag, repro, pred, meta, checks)
