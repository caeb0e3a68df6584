"""The fit folder's ``report.md``: how the fit was made and how good it is (credibility checks,
diagnostics, the MAP search, every record's reproduction, figures). Text only from what the fit
stored (``fit.json``, ``diagnostics.json``, the predictive draws); nothing here fits."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..io import atomic_write_text
from . import likelihood
from .importance import KHAT_RELIABLE
from .laplace import HESSIAN_STEP_SD
from .settings import FitSettings

REPRODUCED_AT = 0.8  # a record counts as reproduced when P(reproduced | data) >= this

#: how a comparison misses, by the sign of the model's median difference against the stated one
VERDICTS = {
    "holds": "holds at the median",
    "too_small": "the right direction, but smaller than the margin",
    "opposite": "the opposite direction",
    "spurious": "the model separates arms the record says do not differ",
}


def _command(meta: dict, out) -> str:
    """The command line that reproduces a fit: every setting that differs from the defaults."""
    st = meta["settings"]
    default = asdict(FitSettings.quick_settings() if st.get("quick") else FitSettings())
    flags = ["--quick"] if st.get("quick") else []
    flags += [f"--{k.replace('_', '-')} {v}" for k, v in st.items() if k in default and k != "quick" and v != default[k]]
    flags += [f"--{meta['method']}"] if meta.get("method") in ("laplace", "map") else []
    return " ".join(["abscopal fit --out", str(out), *flags])


def _map_lines(m: dict | None) -> list[str]:
    """The report's account of the MAP search: each start and each refinement."""
    if not m:
        return []
    out = ["### MAP search", ""] + ([m["note"], ""] if m.get("note") else [])
    for st in m.get("starts", []):
        out.append(f"- start {st['start'] + 1}: log posterior {st['log_posterior']:.2f} (L-BFGS: {st.get('lbfgs', '')})")
    refs = m.get("refinements", [])
    line = lambda r: (  # noqa: E731
        f"- refinement, {r['steps']} more L-BFGS iterations: log posterior {r['log_posterior_before']:.2f} -> "
        f"{r['log_posterior']:.2f}, gradient norm {r['grad_norm_before']:.3g} -> {r['grad_norm']:.3g} ({r['message']})"
        + (f"; preconditioned by {r['preconditioned']}" if r.get("preconditioned") else "")
    )
    if len(refs) > 6:  # a long refinement: its first and last rounds, and the span between
        mid = refs[2:-2]
        out += [line(r) for r in refs[:2]]
        out.append(
            f"- ... {len(mid)} more refinements ({sum(r['steps'] for r in mid)} L-BFGS iterations): log posterior "
            f"{mid[0]['log_posterior_before']:.2f} -> {mid[-1]['log_posterior']:.2f}"
        )
        out += [line(r) for r in refs[-2:]]
    else:
        out += [line(r) for r in refs]
    return out + [""]


def _draws_kind(lap: dict | None) -> str:
    prop = (lap or {}).get("proposal", {"kind": "gaussian", "resampled": False})
    if not prop["resampled"] and ((lap or {}).get("split") or {}).get("drawn"):
        return "independent draws of a split-normal around the MAP (the Laplace directions, one SD on each side)"
    if not prop["resampled"]:
        return "independent draws of the Laplace approximation at the MAP"
    return (
        f"{prop['n']} independent draws of a Student-t (df {prop['df']:g}) with the Laplace covariance, "
        f"weighted by Pareto-smoothed importance sampling and resampled ({prop['n_distinct']} distinct draws kept)"
    )


def _rescale_text(rs: dict | None) -> str:
    if not rs:
        return ""
    last = rs["history"][-1]
    return (
        f" The covariance was then rescaled along the Hessian's eigen-directions ({rs['rounds']} rounds; `--laplace-rescale`): "
        f"each SD set so that the exact log posterior {rs['k_sds']:g} SDs out drops as a Gaussian's would (the wider side "
        f"counts), giving SDs {rs['sd_ratio_min']:.3g} to {rs['sd_ratio_max']:.3g} times the Hessian's; in the last round "
        f"the factors ran from {last['factor_min']:.3g} to {last['factor_max']:.3g}, with {last['n_at_bound']} directions "
        f"at the bound and {last['n_failed']} failed solves. Correlations stay the Hessian's."
    )


def _differences_text(d: dict | None) -> str:
    if not d:
        return ""
    return (
        f" Central-difference steps ran from {d['step_min']:.2g} to {d['step_max']:.2g} ({d['n_refined']} stiff rows took a "
        f"step of {HESSIAN_STEP_SD:g} times their curvature scale 1/sqrt(H_ii)); before symmetrising, the rows disagreed with the columns by at most "
        f"{100 * d['asymmetry']:.2g} % of the largest entry (0 for an exact quadratic)."
    )


def _split_text(sp: dict | None) -> str:
    if not sp:
        return ""
    last = sp["history"][-1]
    return (
        f" Then each side of each eigen-direction was rescaled on its own ({sp['rounds']} rounds; `--laplace-split`), as "
        f"the posterior is lopsided (a cliff on one side, a slope on the other): the SDs of the two sides differ by factors "
        f"{sp['side_ratio_min']:.3g} to {sp['side_ratio_max']:.3g}; in the last round the factors ran from "
        f"{last['factor_min']:.3g} to {last['factor_max']:.3g} ({last['n_at_bound']} at the bound, largest drop "
        f"{last['max_drop']:.3g} nats where a Gaussian drops {sp['k_sds'] ** 2 / 2:g}). "
        + (
            "The draws are from that split-normal (Geweke 1989), and PSIS judges them against it."
            if sp.get("drawn")
            else "The draws are not from it (the importance-resampled draws above are)."
        )
    )


def _laplace_text(lap: dict | None) -> str:
    """What the report says about the quality of a Laplace approximation."""
    if not lap:
        return ""
    e = lap["eigen"]
    prop = lap.get("proposal", {"kind": "gaussian", "resampled": False})
    verdict = "reliable" if lap["khat"] <= KHAT_RELIABLE else "NOT reliable: the posterior is far from this proposal"
    at = f"at {prop['n']} Student-t proposal draws" if prop["resampled"] else "at the draws"
    return (
        f" The covariance is the inverse of a central-difference Hessian of the log posterior at the MAP; its eigenvalues "
        f"run from {e['eigen_min']:.3g} to {e['eigen_max']:.3g} ({e['n_negative']} negative), and {e['n_raised']} directions "
        f"were raised to a precision of {e['min_precision']:g} (SD 1 in log units: the data leave them flat, or the MAP is not "
        f"a strict mode there).{_differences_text(e.get('differences'))}{_rescale_text(lap.get('rescale'))}{_split_text(lap.get('split'))} Pareto-smoothed importance sampling of the exact log posterior {at} gives "
        f"k-hat = {lap['khat']:.2f} ({verdict}; PSIS is trustworthy below {KHAT_RELIABLE}) and an importance ESS of "
        f"{lap['importance_ess']:.1f}; {lap['n_failed']} draws had a failed solve."
        + (
            f" Importance sampling from a heavier-tailed proposal (Student-t, df {prop['df']:g}, same covariance; "
            f"{prop['n']} draws) did no better: k-hat {prop['khat']:.2f}, ESS {prop['ess']:.1f}, {prop['n_failed']} failed "
            "solves; so the draws are not reweighted."
            if prop["kind"] == "student_t" and not prop["resampled"]
            else ""
        )
    )


def _miss_summary(repro: list[dict]) -> str:
    """One paragraph: how the fitted records' missed comparisons miss (see ``VERDICTS``)."""
    counts = dict.fromkeys(VERDICTS, 0)
    n_other = 0
    for r in repro:
        if r["use"] != "fit" or r["probability"] >= REPRODUCED_AT:
            continue
        for p, v in zip(r["per_observation"], r.get("verdicts") or [None] * len(r["per_observation"])):
            if p >= REPRODUCED_AT:
                continue
            if v is None:
                n_other += 1
            else:
                counts[v] += 1
    n_cmp = sum(counts.values())
    return (
        f"Of the {n_cmp} missed qualitative comparisons of fitted records (P < {REPRODUCED_AT} each), judged by the "
        f"median model difference: {counts['too_small']} go {VERDICTS['too_small']}; {counts['opposite']} go "
        f"{VERDICTS['opposite']}; in {counts['spurious']}, {VERDICTS['spurious']}; {counts['holds']} hold at the median "
        f"but in too few draws. {n_other} other observations (counts, time courses) are missed."
    )


#: said of the wall time in the report when the fit resumed from a saved MAP (and what followed it)
_RESUMED_NOTE = " for this invocation alone, which resumed from the checkpoints in `work/` (the stages saved there ran earlier)"


def _map_only_lines() -> list[str]:
    return [
        "MAP only (`--map`): the fit's one draw is the posterior mode, so it has no R-hat, ESS or parameter "
        "uncertainty (the posterior is the NUTS issue's work); the MAP search is described below.",
        "",
    ]


def _sampler_lines(diag: dict, meta: dict) -> list[str]:
    """The report's table of sampler diagnostics (NUTS, or the Laplace draws, labelled)."""
    return [
        "| quantity | value | required |",
        "|---|---:|---:|",
        f"| max R-hat (all estimated parameters) | {diag['max_rhat']:.3f} | <= 1.01 |",
        f"| min bulk ESS | {diag['min_ess_bulk']:.0f} | >= 400 |",
        f"| divergent transitions | {diag['n_divergent']} ({100 * diag['divergent_fraction']:.1f} %) | < 1 % |",
        f"| mean leapfrog steps per draw | {diag['mean_leapfrog_steps']:.1f} | |",
        f"| step size | {diag['step_size']:.3g} | |",
        f"| warm-up / sampling time | {diag['warmup_seconds']:.0f} s / {diag['sample_seconds']:.0f} s | |",
        "",
        f"Chains: {meta['settings']['chains']} (vectorized), warm-up {meta['settings']['warmup']}, draws {meta['settings']['samples']} per chain, "
        f"max tree depth {meta['settings']['max_tree_depth']}."
        + (
            " **These are NOT NUTS draws**: "
            + _draws_kind(diag.get("laplace"))
            + ", so R-hat and ESS above describe independent draws, not the convergence of a sampler."
            + _laplace_text(diag.get("laplace"))
            if meta.get("method") == "laplace"
            else ""
        ),
        "",
    ]


def _credibility_lines(out: Path, meta: dict, checks) -> list[str]:
    """The report's section on the credibility scenarios at the fit just written (its draws, or its
    MAP). ``checks`` is the decision layer's ``(credibility_checks, format_checks)`` pair, passed in
    by the caller (``abscopal fit``) so that inference does not import the layer built on it; without
    it, or in quick mode, the section says the checks were not computed."""
    if meta["settings"].get("quick") or checks is None:
        why = "quick mode" if meta["settings"].get("quick") else "run without the checks (`abscopal fit` runs them)"
        return ["## Credibility checks", "", f"Not computed ({why}).", ""]
    from .fitresult import load_fit

    credibility_checks, format_checks = checks
    rows = credibility_checks(load_fit(out))
    held = sum(r["holds"] for r in rows)
    return [
        "## Credibility checks",
        "",
        f"What a tumour immunologist expects of the model (`abscopal.decide.scenarios`; 64 virtual mice per cohort): "
        f"**{held} of {len(rows)} hold**.",
        "",
        format_checks(rows),
        "",
    ]


def write_report(out: Path, prob, fit, diag, repro, pred, meta, checks=None):
    """report.md with the diagnostics, every record's reproduction probability, the credibility
    checks (``checks``: see ``_credibility_lines``) and figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write_figure

    figs = []
    if prob.tc:
        recs = np.array(prob.tc.records)
        tc = prob.tc
        for rec in dict.fromkeys(recs):
            sel = np.where(recs == rec)[0]
            groups = {}
            for i in sel:
                groups.setdefault((int(tc.arm[i]), int(tc.obs[i]), float(tc.ref_day[i])), []).append(i)
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for j, ((a, o, ref), ii) in enumerate(groups.items()):
                ii = np.array(ii)
                order = np.argsort(tc.day[ii])
                ii = ii[order]
                days = tc.day[ii]
                model = np.exp(pred["tc_model"][:, ii])
                lo, med, hi = np.quantile(model, [0.05, 0.5, 0.95], axis=0)
                color = f"C{j}"
                label = f"{prob.arms[a].arm}, {likelihood.OBS[o].split('_')[-1]}" + (" (relative)" if ref >= 0 else "")
                ax.fill_between(days, lo, hi, color=color, alpha=0.2)
                ax.plot(days, med, color=color, label=f"model: {label}")
                mean = np.where(tc.censored[ii], np.nan, tc.mean[ii])
                sem = np.nan_to_num(tc.sem[ii])
                ax.errorbar(days, mean, yerr=sem, fmt="o", color=color, ms=4, capsize=2, label=f"data: {label}")
            ax.set_yscale("log")
            ax.set_xlabel("day after inoculation")
            ax.set_ylabel("tumour volume (mm$^3$) or relative volume")
            ax.set_title(f"{rec}: posterior predictive (median, 90 % band) vs data (mean ± SEM)", fontsize=9)
            ax.legend(fontsize=6, ncol=2)
            fig.tight_layout()
            name = f"ppc_{rec}.png"
            atomic_write_figure(fig, out / name)
            plt.close(fig)
            figs.append(name)
    # posterior vs prior of the shared parameters
    summ = fit.summary()
    fig, ax = plt.subplots(figsize=(7, max(3, 0.22 * len(summ))))
    y = np.arange(len(summ))
    ax.errorbar(
        summ["median"] / summ["default"],
        y,
        xerr=[(summ["median"] - summ["q05"]) / summ["default"], (summ["q95"] - summ["median"]) / summ["default"]],
        fmt="o",
        ms=3,
    )
    ax.set_yticks(y, [f"{n} {ln}".strip() for n, ln in zip(summ["name"], summ["tumour_line"])], fontsize=6)
    ax.set_xscale("log")
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("posterior median and 90 % interval / table default")
    ax.set_title("Estimated parameters relative to the parameter table's defaults")
    fig.tight_layout()
    atomic_write_figure(fig, out / "parameters.png")
    plt.close(fig)
    figs.append("parameters.png")

    lines = [f"# Fit `{meta['name']}`", ""]
    lines += [f"Status: **{meta['status']}**.", ""]
    lines += [
        f"Created {meta['created']} from {len(prob.records)} records (`fits/data/records`, use = fit) with seed "
        f"{meta['settings']['seed']}; wall time {meta['wall_seconds'] / 60:.1f} min on this machine"
        f"{_RESUMED_NOTE if meta.get('resumed') else ''}. Reproduce with "
        f"`{_command(meta, out)}` (resumes from `work/`).",
        "",
        *_credibility_lines(out, meta, checks),
        "## Diagnostics",
        "",
        *(_map_only_lines() if meta.get("method") == "map" else _sampler_lines(diag, meta)),
        *_map_lines(diag.get("map")),
        "## Records",
        "",
        f"Posterior probability that the fitted model reproduces each record (over {repro[0]['n_draws'] if repro else 0} posterior "
        f"predictive draws; rules in `abscopal.inference.predictive.reproduction`). Reproduced (P >= {REPRODUCED_AT}): "
        f"**{meta['reproduced']['n']} of {meta['reproduced']['of']}** fitted records. Records marked `check` were not "
        "fitted (each says why in its file); their probabilities are predictions. The column 'at MAP' applies the same "
        f"rules to the MAP alone (typical mouse and virtual population at the posterior mode): "
        f"{meta['reproduced'].get('at_map', 0)} of {meta['reproduced']['of']} fitted records hold there.",
        "",
        "| record | use | line | title | P(reproduced) | at MAP | per observation |",
        "|---|---|---|---|---:|---|---|",
    ]
    for r in repro:
        mp = "" if r.get("at_map") is None else ("yes" if r["at_map"] else "no")
        lines.append(
            f"| {r['record']} | {r['use']} | {r['tumour_line']} | {r['title']} | {r['probability']:.2f} | {mp} | {', '.join(f'{x:.2f}' for x in r['per_observation'])} |"
        )
    misses = [r for r in repro if r["probability"] < REPRODUCED_AT]
    lines += ["", "## Misses", ""]
    if not misses:
        lines.append("None.")
    else:
        lines += [_miss_summary(repro), ""]
    for r in misses:
        lines += [f"### {r['record']} ({r['tumour_line']}): P = {r['probability']:.2f}", "", r["title"], ""]
        for p, text in zip(r["per_observation"], r["observations"]):
            mark = "holds" if p >= REPRODUCED_AT else "MISSED"
            lines.append(f"- {mark} (reproduced in {p:.0%} of draws): {text}")
        if r["notes"]:
            lines += ["", "What the record itself says about its doubts:", ""] + [f"- {n}" for n in r["notes"]]
        lines.append("")
    notes = out / "notes.md"  # hand-written explanations of the misses and the fit's history, kept across reruns
    if notes.is_file():
        lines += ["", "## Notes (from notes.md)", "", notes.read_text().strip(), ""]
    lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figs]
    lines += ["", "## Parameters", "", "See `summary.csv` (median, 90 % interval, unit, prior, source, contraction).", ""]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
