"""What a fit predicts for its records: the compiled predictive of one parameter point (typical and
virtual mice, comparison differences, count probabilities, time-course values and SDs), and the
rules by which a record counts as reproduced over the draws (``reproduction``)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..model.parameters import spec
from . import likelihood
from .posterior import compiled_for
from .report import VERDICTS


def predictor_of(prob: likelihood.Problem):
    """The compiled predictive of one parameter point of ``prob`` (compile once per problem and
    process, call per draw)."""
    return compiled_for(prob, "predictor", lambda: _build_predictor(prob))


def _build_predictor(prob: likelihood.Problem):
    @jax.jit
    def one(shared, lines, sig, v0):
        P = likelihood.arm_values(prob, shared, lines, v0)
        obs, frac, ok = likelihood.solve_arms(prob, P)
        qv = likelihood.quantities(prob, obs, frac)
        out = {"ok": ok, "q": qv}
        if prob.tc:
            lp, model, sd = likelihood.time_course_terms(prob, obs, sig)
            out.update(tc_model=model, tc_sd=sd, tc_lp=lp)
        if prob.cmp:
            out["d"] = likelihood.comparison_differences(prob, qv)
        out["volume_irr"] = jnp.exp(obs[:, :, likelihood.OBS.index("log_volume_irr")])
        out["volume_abs"] = jnp.exp(obs[:, :, likelihood.OBS.index("log_volume_abs")])
        return out

    return one


def predict(
    prob: likelihood.Problem,
    nat: dict,
    idx: list[tuple[int, int]],
    progress: bool,
    fit_lines: list[str] | None = None,
    seed: int = 0,
    one=None,
    fit_groups: list[str] | None = None,
    fit_inocula: list[str] | None = None,
):
    """Posterior predictive of every observation for the draws ``idx`` (chain, draw). With
    ``fit_lines`` (the lines of the fit, when ``prob`` is another problem, e.g. the check records),
    per-line values are taken by line name; a line the fit did not see draws from the fitted line
    population; ``fit_groups`` (the fit's discrepancy groups) and ``fit_inocula`` (its inoculum
    groups) do the same for the series SDs and the day-0 volumes.
    ``one``: a ``predictor_of(prob)`` already compiled."""
    from tqdm.auto import tqdm

    one = one or predictor_of(prob)
    res = []
    rng = np.random.default_rng(seed)
    for c, d in tqdm(idx, desc="posterior predictive", disable=not progress, leave=False):
        shared, lines, sig, v0 = unpack_one(prob, nat, c, d, fit_lines, rng, fit_groups, fit_inocula)
        res.append(jax.tree.map(np.asarray, one(*(jnp.asarray(x) for x in (shared, lines, sig, v0)))))
    return {k: np.stack([r[k] for r in res]) for k in res[0]}


def _by_group(prob_groups, nat, key, c, d, fit_groups, what, default=None):
    """The fitted ``nat[key]`` of draw (c, d) for the groups ``prob_groups``: as stored, or by name
    from the fit's ``fit_groups`` (another problem); a group the fit did not have takes ``default``
    (when given) or is an error."""
    if not prob_groups:
        return np.zeros(0)
    fitted = np.atleast_1d(nat[key][c, d]) if key in nat else np.zeros(0)
    if fit_groups is None:
        return fitted
    missing = [g for g in prob_groups if g not in fit_groups]
    if missing and default is None:
        raise ValueError(f"records outside the fitted ones: {what} {missing} have no fitted {key}")
    return np.array([fitted[fit_groups.index(g)] if g in fit_groups else default for g in prob_groups])


def unpack_one(prob, nat, c, d, fit_lines=None, rng=None, fit_groups=None, fit_inocula=None):
    shared = np.array([nat[n][c, d] for n in prob.shared]) if prob.shared else np.zeros(0)
    if fit_lines is None:
        lines = np.stack([nat[n][c, d] for n in prob.per_line], axis=-1) if prob.per_line else np.zeros((len(prob.lines), 0))
    else:
        lines = np.zeros((len(prob.lines), len(prob.per_line)))
        for j, line in enumerate(prob.lines):
            for q, n in enumerate(prob.per_line):
                if line in fit_lines:
                    lines[j, q] = nat[n][c, d][fit_lines.index(line)]
                else:  # a line the fit had no growth data for: its table value
                    lines[j, q] = prob.line_base[j, q]
    sig = _by_group(prob.series_groups, nat, "sigma_series", c, d, fit_groups, "discrepancy groups")
    # a check record's inoculum group that the fit did not have starts from the table's day-0 volume
    v0 = _by_group(prob.inoculum_groups, nat, "v0_inoculum", c, d, fit_inocula, "inoculum groups", spec("v0_irr").value)
    return shared, lines, sig, v0


def comparison_verdict(d: float, op: int, margin: float) -> str:
    """Key of ``VERDICTS`` for a comparison whose model difference (median over draws) is ``d``:
    ``op`` ``OP_ABOVE`` (lhs > rhs + margin), ``OP_BELOW`` (lhs < rhs - margin) or ``OP_SIMILAR``
    (|lhs - rhs| <= margin); the signs of OP_ABOVE / OP_BELOW (+1 / -1) orient ``d``."""
    if op == likelihood.OP_SIMILAR:
        return "holds" if abs(d) <= margin else "spurious"
    signed = d * op  # > 0: the stated direction
    if signed > margin:
        return "holds"
    return "too_small" if signed > 0 else "opposite"


def reproduction(prob: likelihood.Problem, pred: dict) -> list[dict]:
    """Per record: the posterior probability that the model reproduces it (over predictive draws).

    * qualitative comparison: it holds exactly (margin, no softness) in the draw;
    * count: the observed k lies in the central 90 % of Binomial(n, p_draw);
    * time course: at least 80 % of its points lie within 2 SD (the likelihood's SD, which with an
      estimated discrepancy includes it) of the model (censored zeros: the model is below the
      detection limit); the fraction within 2 published error bars is reported beside it.
    A record is reproduced in a draw when all its observations are."""
    from scipy.stats import binom

    ok = {}
    n = pred["ok"].shape[0]

    what = {}

    verdict = {}

    def put(rec, arr, text, v=None):
        ok.setdefault(rec, []).append(np.asarray(arr, dtype=bool))
        what.setdefault(rec, []).append(text)
        verdict.setdefault(rec, []).append(v)

    if prob.cmp:
        holds = np.asarray(likelihood.comparison_holds(pred["d"], prob.cmp.op[None], prob.cmp.margin[None]))
        for j, (rec, label) in enumerate(prob.cmp.labels):
            d = float(np.median(pred["d"][:, j]))
            v = comparison_verdict(d, int(prob.cmp.op[j]), float(prob.cmp.margin[j]))
            put(rec, holds[:, j], f"{label}: model difference {d:+.3g} (median): {VERDICTS[v]}", v)
    if prob.cnt:
        for j, rec in enumerate(prob.cnt.records):
            p = np.clip(pred["q"][:, prob.cnt.q[j]], 1e-9, 1 - 1e-9)
            k, nn = prob.cnt.k[j], prob.cnt.n[j]
            lo, hi = binom.ppf(0.05, nn, p), binom.ppf(0.95, nn, p)
            put(rec, (k >= lo) & (k <= hi), f"count {int(k)} of {int(nn)}: model cure probability {np.median(p):.2f} (median)")
    if prob.tc:
        recs = np.array(prob.tc.records)
        obs_log = np.log(np.where(prob.tc.censored, 1.0, prob.tc.mean))
        within = np.abs(pred["tc_model"] - obs_log[None]) <= 2 * pred["tc_sd"]
        within = np.where(
            prob.tc.censored[None], pred["tc_model"] <= math.log(likelihood.DETECTION_MM3) + 2 * pred["tc_sd"], within
        )
        # the published error bars alone (log scale, 2 SEM), where a point has one: reported, not required
        mean = np.where(prob.tc.censored, 1.0, prob.tc.mean)
        has_bar = np.isfinite(prob.tc.sem) & (prob.tc.sem > 0) & ~prob.tc.censored
        sem_log = np.where(has_bar, prob.tc.sem / mean, np.nan)
        in_bars = np.abs(pred["tc_model"] - obs_log[None]) <= 2 * sem_log[None]
        for rec in dict.fromkeys(recs):
            sel = recs == rec
            frac = within[:, sel].mean(axis=1)
            text = f"time course: {np.median(frac):.0%} of {int(sel.sum())} points within 2 SD (median over draws; needs 80 %)"
            if (sel & has_bar).any():
                bars = in_bars[:, sel & has_bar].mean(axis=1)
                text += (
                    f"; {np.median(bars):.0%} of the {int((sel & has_bar).sum())} with error bars within 2 published error bars"
                )
            put(rec, frac >= 0.8, text)
    out = []
    for rec in prob.records:
        parts = ok.get(rec.id)
        if parts is None:
            continue
        per_obs = np.stack(parts)  # (n_obs, draws)
        all_ok = per_obs.all(axis=0) & pred["ok"].astype(bool)
        out.append(
            dict(
                record=rec.id,
                title=rec.title,
                use=rec.use,
                tumour_line=rec.fit_line,
                probability=float(all_ok.mean()),
                per_observation=[float(x) for x in per_obs.mean(axis=1)],
                observations=what[rec.id],
                verdicts=verdict[rec.id],  # per observation: a VERDICTS key (comparisons), else None
                notes=list(rec.notes),
                n_draws=int(n),
            )
        )
    return out
