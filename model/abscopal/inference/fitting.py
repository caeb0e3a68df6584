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
from .importance import (
    KHAT_RELIABLE,
    PROPOSAL_DF,
    PROPOSAL_SEED_OFFSET,
    importance_check,
    importance_draws,
    importance_resample,
)
from .laplace import (
    laplace_covariance,
    laplace_hessian,
    rescale_covariance,
    split_normal_draws,
    split_rescale,
)
from .mapfit import (
    REFINE_CHUNK,
    carry_over,
    draws_covariance,
    find_map,
    map_point,
    map_record_from_fit,
    refine_map,
    same_settings,
    short_fingerprint,
)
from .posterior import layout_of, log_density_of, natural_values, neg_log_density_and_grad, prior_draws_z, prior_median_z
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

    ``method="laplace"`` replaces NUTS by independent draws from the Laplace approximation at the
    MAP (covariance from a finite-difference Hessian, checked by Pareto-smoothed importance
    sampling): a fallback for when NUTS cannot finish in the time available, labelled as such
    (status NOT CONVERGED, "not MCMC", the PSIS k-hat) in fit.json and the report.

    ``checks``: ``(credibility_checks, format_checks)`` from ``abscopal.decide.scenarios`` to put the
    credibility checks in the report (``abscopal fit`` passes them)."""
    if method not in METHODS:
        raise ValueError(f"method: must be one of {METHODS}, got {method!r}")
    import arviz as az

    from .fitresult import save_fit

    out = Path(out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    settings_path = work / "settings.json"
    if settings_path.is_file():
        old = json.loads(settings_path.read_text())
        if not same_settings(old, asdict(settings)):
            raise ValueError(
                f"{out}: an unfinished fit with other settings is there ({settings_path}); use another --out or delete {work}"
            )
    atomic_write_json(settings_path, asdict(settings))
    t_start = time.time()
    records = fit_records(settings.quick)
    prob = likelihood.build_problem(records, n_virtual=settings.n_virtual, seed=settings.seed)
    log(
        f"{len(prob.records)} records, {prob.n_arms} arms ({len(prob.pop_arms)} also over {settings.n_virtual} virtual mice), "
        f"{len(prob.tc)} time-course points, {len(prob.cmp)} comparisons, {len(prob.cnt)} counts; "
        f"{len(prob.shared)} shared + {len(prob.line_coords)} per-line parameters ({len(prob.lines)} lines)"
    )

    # ---- MAP (checkpointed as JSON)
    map_path = work / "map.json"
    f = neg_log_density_and_grad(prob)
    fingerprint = likelihood.problem_fingerprint(prob)
    names = layout_of(prob).names()
    if not map_path.is_file():
        shipped = map_record_from_fit(out, fingerprint, names, settings)
        if shipped is not None:
            atomic_write_json(map_path, shipped)
            log(f"MAP: no checkpoint in {work}; the refinement continues from the MAP of {shipped['from_fit']}")
    resumed = map_path.is_file()  # the wall time below is then this invocation's alone
    if resumed:
        map_record = json.loads(map_path.read_text())
        if map_record.get("data_sha256") == fingerprint:
            log(f"MAP: reusing {map_path}")
        else:
            # the records (or the problem built from them) changed since this MAP: its point is a
            # warm start for the refinement, not a MAP of these data
            if settings.refine_steps <= 0:
                raise ValueError(
                    f"{map_path}: this MAP was found for other records (data fingerprint differs); give "
                    f"--refine-steps N to continue from it on the current records, or delete {work} to start afresh"
                )
            old_note = map_record.get("note", "")
            z0, m0 = carry_over(map_record, names, prior_median_z(prob))
            if list(map_record["names"]) != names:
                old_note = (
                    f"The coordinates changed ({len(map_record['names'])} -> {len(names)}): those of the same name were "
                    "carried over, a split log_sigma_series[g] took the old shared log_sigma_series, new ones started at "
                    f"the prior median. {old_note}"
                )
            map_record = dict(
                z=z0.tolist(),
                inv_mass=m0.tolist(),
                names=names,
                starts=[],
                seconds=0.0,
                note=(
                    f"Warm start: the refinement began at a MAP found for earlier records "
                    f"(data fingerprint {short_fingerprint(map_record.get('data_sha256'))}); the records changed since. "
                    f"Before that: {old_note}"
                ).strip(),
                data_sha256=fingerprint,
            )
            atomic_write_json(map_path, map_record)
            log(f"MAP: the records changed since {map_path}; its point starts the refinement (warm start)")
    else:
        t0 = time.time()
        init, results = find_map(prob, settings, progress=progress, log=log, f=f)
        best_inv_mass = max(results, key=lambda r: r["log_posterior"])["inv_mass"]
        map_record = dict(
            z=np.asarray(init).tolist(),
            inv_mass=np.asarray(best_inv_mass).tolist(),
            names=names,
            starts=[dict(start=r["start"], log_posterior=r["log_posterior"], lbfgs=r["lbfgs_message"]) for r in results],
            seconds=time.time() - t0,
            data_sha256=fingerprint,
        )
        atomic_write_json(map_path, map_record)
    init = np.asarray(map_record["z"])
    inv_mass = np.asarray(map_record["inv_mass"])
    done = sum(r["steps"] for r in map_record.get("refinements", []))
    cov = None
    if settings.precondition and settings.refine_steps > done:
        from .fitresult import load_fit

        cov, source = draws_covariance(prob, load_fit(settings.precondition))
        log(f"MAP refinement preconditioned by {source}")
    while settings.refine_steps > done:  # in chunks, each saved: an interrupted refinement resumes
        steps = min(REFINE_CHUNK, settings.refine_steps - done)
        init, rec = refine_map(prob, init, steps, f=f, log=log, progress=progress, precondition=cov)
        if cov is not None:
            rec["preconditioned"] = source
        map_record["z"] = np.asarray(init).tolist()
        map_record["refinements"] = map_record.get("refinements", []) + [rec]
        atomic_write_json(map_path, map_record)
        done += steps

    # ---- NUTS (checkpointed per segment)
    laplace = None
    if method == "nuts":
        draws, stats = run_nuts(prob, init, settings, work, progress=progress, log=log, inv_mass=inv_mass, f=f)
    elif method == "map":  # the MAP alone: one "draw", no parameter uncertainty (said in fit.json and the report)
        draws = np.asarray(init)[None, None, :]
        stats = dict(
            diverging=np.zeros((1, 1), bool),
            num_steps=np.zeros((1, 1), np.int64),
            potential_energy=np.asarray(f(jnp.asarray(init))[0]).reshape(1, 1),
            step_size=float("nan"),
            warmup_seconds=0.0,
            sample_seconds=0.0,
        )
        log("MAP only: the fit stores the posterior mode as its one draw (no parameter uncertainty)")
    else:
        H, hinfo = laplace_hessian(
            prob, init, f=f, checkpoint=work / "hessian.npz", progress=progress, batch=settings.hessian_batch, with_info=True
        )
        cov, eig = laplace_covariance(H)
        eig["differences"] = hinfo
        log(
            f"Laplace Hessian: eigenvalues {eig['eigen_min']:.3g} .. {eig['eigen_max']:.3g}; {eig['n_negative']} negative, "
            f"{eig['n_raised']} raised to the floor {eig['min_precision']:g} (SD <= 1 log unit)"
        )
        rescale = None
        log_density = log_density_of(prob)  # one compile for the three stages below
        if settings.laplace_rescale > 0:
            cov, rescale = rescale_covariance(
                log_density,
                np.asarray(init),
                cov,
                settings.laplace_rescale,
                prob=prob,
                checkpoint=work / "rescale.npz",
                progress=progress,
            )
            log(
                f"Laplace covariance rescaled ({rescale['rounds']} rounds at {rescale['k_sds']:g} SDs): SDs x "
                f"{rescale['sd_ratio_min']:.3g} .. {rescale['sd_ratio_max']:.3g} of the Hessian's"
            )
        split = None
        if settings.laplace_split > 0:
            split = split_rescale(
                log_density,
                np.asarray(init),
                cov,
                settings.laplace_split,
                prob=prob,
                checkpoint=work / "split.npz",
                progress=progress,
            )
            log(
                f"split-normal scales ({split['rounds']} rounds per side at {split['k_sds']:g} SDs): SD+ / SD- from "
                f"{split['side_ratio_min']:.3g} to {split['side_ratio_max']:.3g}"
            )
        shape = (settings.chains, settings.samples, init.size)
        n_keep = shape[0] * shape[1]
        proposal = dict(kind="gaussian", resampled=False)
        if settings.importance_draws > 0:
            if settings.importance_draws < n_keep:
                raise ValueError(f"--importance-draws: at least chains x samples = {n_keep}, got {settings.importance_draws}")
            timp = importance_draws(
                log_density,
                prob,
                np.asarray(init),
                cov,
                settings.importance_draws,
                settings.seed + PROPOSAL_SEED_OFFSET,
                checkpoint=work / "importance.npz",
                progress=progress,
                batch=settings.hessian_batch,
            )
            resampled = bool(timp["khat"] < KHAT_RELIABLE)
            log(
                f"importance sampling from a Student-t (df {PROPOSAL_DF:g}) around the Laplace fit: {timp['n']} draws, "
                f"Pareto k-hat {timp['khat']:.2f}, ESS {timp['ess']:.1f} ({timp['n_failed']} failed solves); "
                + ("reliable: resampled" if resampled else "NOT reliable: the posterior stays the Gaussian Laplace draws")
            )
            proposal = dict(
                kind="student_t",
                df=PROPOSAL_DF,
                n=timp["n"],
                khat=timp["khat"],
                ess=timp["ess"],
                n_failed=timp["n_failed"],
                resampled=resampled,
            )
            if resampled:  # PSIS says the weighted draws stand for the posterior: resample them
                keep = importance_resample(timp["weights"], n_keep, settings.seed + 6)
                draws = timp["draws"][keep].reshape(shape)
                imp = dict(timp, logp=timp["logp"][keep])
                proposal["n_distinct"] = int(np.unique(keep).size)
        if not proposal["resampled"] and split is not None:  # the split-normal around the MAP
            flat, logq = split_normal_draws(np.asarray(init), split, n_keep, settings.seed + 3)
            draws = flat.reshape(shape)
            imp = importance_check(log_density, draws, np.asarray(init), None, progress=progress, logq=logq)
            log(
                f"importance check of the split-normal draws: Pareto k-hat {imp['khat']:.2f}, ESS {imp['ess']:.1f} of {imp['n']} ({imp['n_failed']} failed solves)"
            )
        elif not proposal["resampled"]:
            rng = np.random.default_rng(settings.seed + 3)
            draws = init + rng.standard_normal(shape) @ np.linalg.cholesky(cov).T
            imp = importance_check(log_density, draws, np.asarray(init), cov, progress=progress)
            log(
                f"importance check of the Laplace draws: Pareto k-hat {imp['khat']:.2f}, ESS {imp['ess']:.1f} of {imp['n']} ({imp['n_failed']} failed solves)"
            )
        if split is not None:
            split = {k: v for k, v in split.items() if k not in ("U", "sd_plus", "sd_minus")}  # arrays: in work/split.npz
            split["drawn"] = not proposal["resampled"]
        laplace = dict(
            eigen=eig,
            rescale=rescale,
            split=split,
            khat=imp["khat"],
            importance_ess=imp["ess"],
            n_failed=imp["n_failed"],
            proposal=proposal,
        )
        stats = dict(
            diverging=np.zeros(shape[:2], bool),
            num_steps=np.zeros(shape[:2], np.int64),
            potential_energy=-imp["logp"].reshape(shape[:2]),
            step_size=float("nan"),
            warmup_seconds=0.0,
            sample_seconds=0.0,
        )
        log(f"Laplace approximation at the MAP: {shape[0]} x {shape[1]} independent draws (NOT MCMC)")
    stats["max_tree_depth"] = settings.max_tree_depth
    nat = natural_values(prob, draws)

    # ---- prior draws (for contraction) and the predictive
    n_prior = 200 if not settings.quick else 20
    prior_nat = natural_values(prob, prior_draws_z(prob, n_prior, settings.seed + 99)[None])
    C, D = draws.shape[:2]
    rng = np.random.default_rng(settings.seed)
    n_pred = min(C * D, 40 if settings.quick else 200)
    flat = rng.choice(C * D, size=n_pred, replace=False)
    idx = [(int(i // D), int(i % D)) for i in flat]
    predictor = predictor_of(prob)
    pred = predict(prob, nat, idx, progress, one=predictor)

    # ---- InferenceData
    dims = {n: ["tumour_line"] for n in prob.per_line}
    coords = {"tumour_line": prob.lines}
    if prob.series_groups:
        dims["sigma_series"] = ["discrepancy_group"]
        coords["discrepancy_group"] = list(prob.series_groups)
    if prob.inoculum_groups:
        dims["v0_inoculum"] = ["inoculum_group"]
        coords["inoculum_group"] = list(prob.inoculum_groups)
    ppc = {}
    if prob.tc:
        ppc["log_volume_series"] = np.exp(pred["tc_model"])[None]
        dims["log_volume_series"] = ["observation"]
        coords["observation"] = np.arange(len(prob.tc.day))
    if prob.cmp:
        ppc["comparison_difference"] = pred["d"][None]
        dims["comparison_difference"] = ["comparison"]
        coords["comparison"] = [f"{r}: {lab}" for r, lab in prob.cmp.labels]
    observed = {}
    if prob.tc:
        observed["log_volume_series"] = np.where(prob.tc.censored, 0.0, prob.tc.mean)
    tree = az.from_dict(
        {
            "posterior": nat,
            "prior": {k: v for k, v in prior_nat.items()},
            "posterior_predictive": ppc,
            "observed_data": observed,
            "sample_stats": {
                "diverging": stats["diverging"].astype(bool),
                "n_steps": stats["num_steps"],
                "lp": -stats["potential_energy"],
            },
        },
        dims=dims,
        coords=coords,
    )
    diag = diagnostics(tree, prob, stats)
    repro = reproduction(prob, pred)
    if not settings.quick:  # the check records (not fitted): predicted by the posterior
        from ..records import load_records

        checks = tuple(r for r in load_records() if r.use == "check")
        if checks:
            pc = likelihood.build_problem(checks, use="check", n_virtual=settings.n_virtual, seed=settings.seed)
            repro += reproduction(
                pc,
                predict(
                    pc,
                    nat,
                    idx,
                    progress,
                    fit_lines=list(prob.lines),
                    seed=settings.seed,
                    fit_groups=list(prob.series_groups),
                    fit_inocula=list(prob.inoculum_groups),
                ),
            )
    # the same rules at the MAP alone: what a posterior concentrated there would reproduce
    at_map = {
        r["record"]: r["probability"] == 1.0
        for r in reproduction(prob, predict(prob, natural_values(prob, init[None, None]), [(0, 0)], False, one=predictor))
    }
    for r in repro:
        r["at_map"] = at_map.get(r["record"])
    n_rep = sum(r["probability"] >= REPRODUCED_AT for r in repro if r["use"] == "fit")
    n_map = sum(bool(r["at_map"]) for r in repro if r["use"] == "fit")
    diag["map"] = dict(
        starts=map_record.get("starts", []), refinements=map_record.get("refinements", []), note=map_record.get("note", "")
    )
    if method in ("laplace", "map"):
        diag["converged"] = False
        diag["method"] = method
        diag["laplace"] = laplace
    status = "converged" if diag["converged"] else "NOT CONVERGED (see diagnostics)"
    if method == "map":
        status = "MAP only: the posterior mode, no parameter uncertainty (the posterior is the NUTS issue's)"
    if method == "laplace":
        what = (
            "importance-resampled Laplace approximation (Student-t proposal around the MAP, finite-difference Hessian)"
            if laplace["proposal"]["resampled"]
            else "Laplace approximation at the MAP (finite-difference Hessian)"
        )
        if laplace["rescale"]:
            what += f", covariance rescaled along its eigen-directions ({laplace['rescale']['rounds']} rounds)"
        if laplace["split"] and laplace["split"]["drawn"]:
            what += f", drawn as a split-normal with one SD per side ({laplace['split']['rounds']} rounds)"
        status = (
            f"NOT CONVERGED: {what}, not MCMC; PSIS k-hat {laplace['khat']:.2f} (reliable only below 0.7); "
            "NUTS did not finish in the time available (see report)"
        )
    if settings.quick:
        status = "quick mode (CI smoke run): NOT a fit; " + status
    meta = dict(
        name=out.name,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        status=status,
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
        data_sha256=fingerprint,
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
        reproduced=dict(threshold=REPRODUCED_AT, n=n_rep, of=sum(r["use"] == "fit" for r in repro), at_map=n_map),
        wall_seconds=time.time() - t_start,
        resumed=resumed,
        method=method,
    )
    save_fit(out, tree, meta)
    atomic_write_json(out / "diagnostics.json", diag)
    atomic_write_json(out / "reproduction.json", repro)
    from .fitresult import load_fit

    fit = load_fit(out)
    summ = fit.summary()
    atomic_write_text(out / "summary.csv", summ.to_csv(index=False))
    atomic_write_text(out / "summary.json", summ.to_json(orient="records", indent=1))
    write_report(out, prob, fit, diag, repro, pred, meta, checks)
    n_fit = sum(r["use"] == "fit" for r in repro)
    log(f"fit written to {out}: {status}; {n_rep} of {n_fit} fitted records reproduced with P >= {REPRODUCED_AT}")
    return out
