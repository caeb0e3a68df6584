"""`abscopal fit --quick` end to end (the CI smoke run), resumption from the checkpoints, and
the fit folder that `load_fit` reads."""

import json
import math

import numpy as np
import pandas as pd
import pytest

import abscopal as ab
from abscopal.cli import main
from abscopal.inference.fitresult import FitError, load_fit
from abscopal.inference.fitting import QUICK_RECORDS
from abscopal.inference.posterior import prior_median_z
from helpers import check_directions_against_tight, quick_problem

ARGS = ["--quick", "--no-progress"]


@pytest.fixture(scope="module")
def quick_fit(tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "quick"
    assert main(["fit", "--out", str(out), *ARGS]) == 0
    return out


def test_quick_fit_writes_a_complete_fit_folder(quick_fit):
    fit = load_fit(quick_fit)
    assert fit.meta["status"].startswith("quick mode") and "NOT" in fit.meta["status"]
    assert fit.posterior.sizes["chain"] == 2 and fit.posterior.sizes["draw"] == 4
    for name in fit.shared + fit.per_line:
        assert np.all(np.isfinite(fit.posterior[name].values)) and np.all(fit.posterior[name].values > 0)
    assert set(fit.tree.children) >= {"posterior", "prior", "posterior_predictive", "observed_data", "sample_stats"}
    diag = json.loads((quick_fit / "diagnostics.json").read_text())
    for key in ("max_rhat", "min_ess_bulk"):  # a stuck chain of the tiny quick run may give R-hat = inf
        assert isinstance(diag[key], float) and not np.isnan(diag[key])
    assert 0.0 <= diag["divergent_fraction"] <= 1.0 and diag["converged"] is False
    report = (quick_fit / "report.md").read_text()
    for rid in QUICK_RECORDS:
        assert f"| {rid} |" in report
    assert "max R-hat" in report and "NOT" in report
    summary = pd.read_csv(quick_fit / "summary.csv")
    assert set(fit.shared) <= set(summary["name"]) and {"unit", "q05", "q95", "contraction"} <= set(summary.columns)
    repro = json.loads((quick_fit / "reproduction.json").read_text())
    assert {r["record"] for r in repro} == set(QUICK_RECORDS)
    assert all(0.0 <= r["probability"] <= 1.0 for r in repro)
    assert all(isinstance(r["at_map"], bool) for r in repro) and "| at MAP |" in report
    assert all(len(r["verdicts"]) == len(r["observations"]) for r in repro)
    assert "None." in report or "missed qualitative comparisons" in report
    # draws for any line: a fitted line and one the fit did not see (population predictive)
    assert fit.draws(5, tumour_line="MC38").shape == (5, len(fit.params("MC38").values))
    assert np.all(np.isfinite(fit.draws(5, tumour_line="RENCA")))


def test_quick_problem_matches_a_tight_solve_at_the_prior_median():
    """The fit's log density and gradient against a tight solve (along random directions here; the
    full gradient on the review's problem: ``test_fast_likelihood``, slow)."""
    prob = quick_problem()
    assert len(prob.pop_arms) > 0 and prob.doses["amount"].any(), "the check needs drugs and a population"
    # the prior median is far in the tail here (log p -3507; measured |d log p| 0.044)
    check_directions_against_tight(prob, np.asarray(prior_median_z(prob)), rel_logp=3e-5)


def test_map_point_of_a_fit(quick_fit):
    """``<fit>@map``: the stored MAP as a one-draw fit (between-mouse spread only)."""
    fit = load_fit(quick_fit)
    point = load_fit(f"{quick_fit}@map")
    m = fit.meta["map"]
    assert point.n_samples == 1 and "MAP point" in point.meta["status"] and "between-mouse spread only" in point.describe()
    line = fit.lines[0]
    p = point.params(line)
    for name in fit.shared:
        assert p[name] == pytest.approx(m["values"][name], rel=1e-12)
    for name in fit.per_line:
        assert p[name] == pytest.approx(m["values"][name][0], rel=1e-12)
    rows = point.draws(4, tumour_line=line, animals=False)
    np.testing.assert_array_equal(rows, np.tile(p.values, (4, 1)))
    assert np.ptp(point.draws(4, tumour_line=line)[:, p.index("k_in")]) > 0  # inter-animal spread on top
    bad = dict(fit.meta)
    bad.pop("map")
    with pytest.raises(FitError, match="no MAP point"):
        type(fit)(name="x", meta=bad, posterior=fit.posterior).at_map()


def test_rerun_resumes_from_checkpoints_bit_for_bit(quick_fit):
    first = load_fit(quick_fit)
    assert first.meta["resumed"] is False and "this invocation alone" not in (quick_fit / "report.md").read_text()
    before = {v: first.posterior[v].values.copy() for v in ("k_kill", "r")}
    assert main(["fit", "--out", str(quick_fit), *ARGS]) == 0
    assert load_fit(quick_fit).meta["resumed"] is True  # its wall time is this run's, and the report says so
    assert "for this invocation alone, which resumed" in (quick_fit / "report.md").read_text()
    after = load_fit(quick_fit).posterior
    for v, arr in before.items():
        np.testing.assert_array_equal(after[v].values, arr)
    work = quick_fit / "work"
    assert (work / "map.json").is_file() and (work / "checkpoint.npz").is_file()
    ck = np.load(work / "checkpoint.npz", allow_pickle=False)
    assert ck["rec_z"].shape[:2] == (2, 8) and int(ck["done"]) == 8  # 4 warm-up + 4 draws per chain


def test_rerun_with_other_settings_is_refused(quick_fit, capsys):
    assert main(["fit", "--out", str(quick_fit), *ARGS, "--seed", "5"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_damaged_fit_folder_fails_clearly(quick_fit, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(quick_fit, bad)
    data = (bad / "posterior.nc").read_bytes()
    (bad / "posterior.nc").write_bytes(data[: len(data) // 3])
    with pytest.raises(FitError, match="posterior.nc"):
        load_fit(bad)
    (bad / "fit.json").write_text("{")
    with pytest.raises(FitError, match="fit.json"):
        load_fit(bad)
    with pytest.raises(FitError, match="no such folder"):
        load_fit(tmp_path / "missing")


@pytest.mark.slow  # 25-40 s; the Laplace fallback leaves the default path (issue 21)
def test_laplace_fallback_from_the_quick_map(quick_fit, tmp_path, monkeypatch):
    """--laplace: MAP refinement, finite-difference Hessian, PSIS check; labelled, and resumable."""
    from abscopal.inference import mapfit

    monkeypatch.setattr(mapfit, "REFINE_CHUNK", 1)  # the refinement is saved chunk by chunk

    out = tmp_path / "lap"
    (out / "work").mkdir(parents=True)
    # a MAP found for other records (another data fingerprint) is refused as a MAP...
    saved = json.loads((quick_fit / "work" / "map.json").read_text())
    assert len(saved["data_sha256"]) == 64
    (out / "work" / "map.json").write_text(json.dumps(dict(saved, data_sha256="0" * 64)))
    assert main(["fit", "--out", str(out), *ARGS, "--laplace"]) == 2
    # ...and is a warm start for a refinement on the current records
    args = ["fit", "--out", str(out), *ARGS, "--laplace", "--refine-steps", "2"]
    assert main(args) == 0
    warm = json.loads((out / "work" / "map.json").read_text())
    assert warm["data_sha256"] == saved["data_sha256"] and warm["note"].startswith("Warm start")
    fit = load_fit(out)
    diag = json.loads((out / "diagnostics.json").read_text())
    assert diag["method"] == "laplace" and diag["converged"] is False
    lap = diag["laplace"]
    assert lap["n_failed"] >= 0 and lap["eigen"]["n_raised"] >= 0 and lap["importance_ess"] >= 0
    assert lap["khat"] == np.inf  # 2 x 4 quick draws are too few for PSIS: never called reliable
    assert "not MCMC" in fit.meta["status"] and f"k-hat {lap['khat']:.2f}" in fit.meta["status"]
    r1, r2 = diag["map"]["refinements"]
    assert r1["steps"] == r2["steps"] == 1 and r2["log_posterior_before"] == pytest.approx(r1["log_posterior"], rel=1e-12)
    assert r2["log_posterior"] >= r1["log_posterior_before"]
    assert f"k-hat = {lap['khat']:.2f}" in (out / "report.md").read_text()
    assert "--quick --refine-steps 2 --laplace" in (out / "report.md").read_text()
    # a rerun reuses the refined MAP and the Hessian: same draws, no second refinement
    before = fit.posterior["k_kill"].values.copy()
    assert main(args) == 0
    np.testing.assert_array_equal(load_fit(out).posterior["k_kill"].values, before)
    assert len(json.loads((out / "diagnostics.json").read_text())["map"]["refinements"]) == 2
    assert main(["fit", "--out", str(out), *ARGS, "--refine-steps", "-1"]) == 2
    # importance sampling from a Student-t around the same Laplace fit (MAP and Hessian reused)
    assert main([*args, "--importance-draws", "4"]) == 2  # fewer than chains x samples
    assert main([*args, "--importance-draws", "30"]) == 0
    lap = json.loads((out / "diagnostics.json").read_text())["laplace"]
    prop = lap["proposal"]
    assert prop["kind"] == "student_t" and prop["n"] == 30 and prop["khat"] >= 0  # inf: too few finite draws
    assert prop["resampled"] == (prop["khat"] < 0.7)
    status = load_fit(out).meta["status"]
    assert f"k-hat {lap['khat']:.2f}" in status and "not MCMC" in status
    assert ("importance-resampled" in status) == prop["resampled"]
    if not prop["resampled"]:  # unreliable: the Gaussian Laplace draws of the first run stay
        assert lap["khat"] == np.inf and f"k-hat {prop['khat']:.2f}" in (out / "report.md").read_text()
        np.testing.assert_array_equal(load_fit(out).posterior["k_kill"].values, before)
    # the covariance rescaled along its eigen-directions (MAP and Hessian reused): other draws, said so
    assert main([*args, "--laplace-rescale", "-1"]) == 2
    assert main([*args, "--laplace-rescale", "1"]) == 0
    lap = json.loads((out / "diagnostics.json").read_text())["laplace"]
    assert lap["rescale"]["rounds"] == 1 and lap["rescale"]["sd_ratio_min"] > 0
    assert not np.array_equal(load_fit(out).posterior["k_kill"].values, before)
    assert "rescaled along the Hessian's eigen-directions" in (out / "report.md").read_text()
    assert (out / "work" / "rescale.npz").is_file()
    # then one SD per side: split-normal draws, judged against their own density, said so
    assert main([*args, "--laplace-rescale", "1", "--laplace-split", "-1"]) == 2
    assert main([*args, "--laplace-rescale", "1", "--laplace-split", "1"]) == 0
    lap = json.loads((out / "diagnostics.json").read_text())["laplace"]
    assert lap["split"]["rounds"] == 1 and lap["split"]["drawn"] and lap["split"]["side_ratio_min"] > 0
    assert "split-normal" in load_fit(out).meta["status"] and (out / "work" / "split.npz").is_file()
    assert "from that split-normal (Geweke 1989)" in (out / "report.md").read_text()


def test_a_saved_map_carries_over_to_new_coordinates():
    """A warm start on a changed layout: same names copied, the shared series SD split into one per
    group, a new coordinate at the default."""
    from abscopal.inference.mapfit import carry_over

    saved = dict(names=["log_a", "log_sigma_series", "log_b"], z=[1.0, -0.5, 2.0], inv_mass=[0.1, 0.2, 0.3])
    names = ["log_b", "log_c", "log_a", "log_sigma_series[0]", "log_sigma_series[1]"]
    z, m = carry_over(saved, names, np.full(5, 9.0))
    np.testing.assert_array_equal(z, [2.0, 9.0, 1.0, -0.5, -0.5])
    np.testing.assert_array_equal(m, [0.3, 1.0, 0.1, 0.2, 0.2])


def test_a_point_saved_in_the_logistic_coordinates_keeps_its_parameter_values():
    """A MAP saved before the soft-clip coordinates (no ``coordinates`` key) is converted through the
    parameters' values: the same k_kill and p0 come out of the new coordinates; other coordinates
    are copied; without the priors a parameter coordinate is a clear error."""
    from numpyro.distributions import constraints
    from numpyro.distributions.transforms import biject_to

    from abscopal.inference.mapfit import carry_over
    from abscopal.inference.priors import COORDINATES, prior

    names = ["u_k_kill", "u_p0", "log_sigma_series[0]"]
    priors = {"u_k_kill": prior("k_kill"), "u_p0": prior("p0")}
    saved = dict(names=names, z=[2.315, -4.982, -2.0], inv_mass=[0.5, 0.5, 0.5])
    z, m = carry_over(saved, names, np.zeros(3), priors)
    for k, n in enumerate(names[:2]):
        pr = priors[n]
        t_old = float(biject_to(constraints.interval(*pr.interval))(saved["z"][k]))
        want = np.exp(t_old) if pr.scale == "log" else t_old
        assert float(pr.value(z[k])) == pytest.approx(want, rel=1e-10)
    assert z[2] == -2.0 and m.tolist() == [1.0, 1.0, 0.5]
    # k_kill 15.3/day (the logistic point 2.315): in the new coordinates near (log 15.3 - log 5) / 0.5,
    # bent a little by its upper bound 20 (0.5 prior SD away)
    assert z[0] == pytest.approx((math.log(15.3) - math.log(5.0)) / 0.5, abs=0.05)
    with pytest.raises(ValueError, match="u_k_kill"):
        carry_over(saved, names, np.zeros(3))
    same = carry_over(dict(saved, coordinates=COORDINATES), names, np.zeros(3))[0]
    np.testing.assert_array_equal(same, saved["z"])


def test_check_records_take_the_series_sd_of_their_group_by_name():
    """The check records' time courses (S05: Markovsky) use the fitted SD of their own discrepancy
    group, found by name in the fit's groups; a group the fit lacks is a clear error."""
    from types import SimpleNamespace

    from abscopal.inference.predictive import unpack_one

    prob = SimpleNamespace(shared=(), per_line=(), lines=["CT26"], series_groups=("Markovsky 2019",), inoculum_groups=())
    nat = {"sigma_series": np.array([[[0.9, 0.2]]]), "v0_inoculum": np.array([[[0.5]]])}  # (chain, draw, group)
    _, _, sig, v0 = unpack_one(
        prob, nat, 0, 0, fit_lines=["CT26"], fit_groups=["Rauf 2025", "Markovsky 2019"], fit_inocula=["Rauf 2025"]
    )
    np.testing.assert_array_equal(sig, [0.2])
    assert v0.shape == (0,)  # no inoculum group in this problem
    with pytest.raises(ValueError, match="Markovsky 2019"):
        unpack_one(prob, nat, 0, 0, fit_lines=["CT26"], fit_groups=["Rauf 2025"])
    own = SimpleNamespace(**dict(vars(prob), series_groups=("Rauf 2025", "Markovsky 2019"), inoculum_groups=("Rauf 2025",)))
    _, _, sig, v0 = unpack_one(own, nat, 0, 0)  # the fit's own problem: its groups in order
    np.testing.assert_array_equal(sig, [0.9, 0.2])
    np.testing.assert_array_equal(v0, [0.5])
    # the day-0 volume of an inoculum group is found by name too; a check record's group that the fit
    # lacks (S16-S19: Pan02, KPC) starts from the table's day-0 volume
    _, _, _, v0 = unpack_one(own, nat, 0, 0, fit_groups=["Rauf 2025", "Markovsky 2019"], fit_inocula=["Rauf 2025"])
    np.testing.assert_array_equal(v0, [0.5])
    _, _, _, v0 = unpack_one(own, nat, 0, 0, fit_groups=["Rauf 2025", "Markovsky 2019"], fit_inocula=["Other lab"])
    np.testing.assert_array_equal(v0, [ab.default_params()["v0_irr"]])


@pytest.mark.parametrize(
    "d, op, margin, expected",
    [
        (3.0, 1, 2.0, "holds"),
        (1.0, 1, 2.0, "too_small"),
        (-0.5, 1, 2.0, "opposite"),
        (-0.3, -1, 0.2, "holds"),
        (-0.1, -1, 0.2, "too_small"),
        (0.4, -1, 0.2, "opposite"),
        (0.0, -1, 0.2, "opposite"),  # no effect at all is not "the right direction"
        (2.5, 0, 3.0, "holds"),
        (-3.5, 0, 3.0, "spurious"),
    ],
)
def test_comparison_verdicts(d, op, margin, expected):
    from abscopal.inference.predictive import comparison_verdict

    assert comparison_verdict(d, op, margin) == expected


def test_miss_summary_counts_only_missed_comparisons_of_fitted_records():
    from abscopal.inference.report import _miss_summary

    repro = [
        dict(use="fit", probability=0.1, per_observation=[0.2, 0.9, 0.0], verdicts=["too_small", "holds", None]),
        dict(use="fit", probability=0.5, per_observation=[0.3, 0.6], verdicts=["opposite", "holds"]),
        dict(use="fit", probability=0.95, per_observation=[0.95], verdicts=["too_small"]),  # reproduced
        dict(use="check", probability=0.0, per_observation=[0.0], verdicts=["spurious"]),  # not fitted
    ]
    text = _miss_summary(repro)
    assert text.startswith("Of the 3 missed qualitative comparisons")
    assert "1 go the right direction" in text and "1 go the opposite" in text and "in 0, the model" in text
    assert "1 hold at the median" in text and "1 other observations" in text


def test_unconstrained_values_invert_natural_values_and_match_lines_by_name():
    """z -> parameters in their units -> z, exactly; a line the values lack is marked unmatched."""
    from abscopal.inference import likelihood
    from abscopal.inference.fitting import fit_records
    from abscopal.inference.posterior import layout_of, natural_values, prior_draws_z, unconstrained_values

    prob = likelihood.build_problem(fit_records(False), n_nodes=5)
    z = prior_draws_z(prob, 3, seed=5)
    back, found = unconstrained_values(prob, natural_values(prob, z))
    np.testing.assert_allclose(back, z, atol=1e-12)
    assert found.all()
    # the values of a fit that had the lines in another order, and lacked the first one
    vals = natural_values(prob, z)
    order = list(prob.lines[1:])[::-1]
    idx = [list(prob.lines).index(x) for x in order]
    shuffled = {k: (v[..., idx] if k in prob.per_line else v) for k, v in vals.items()}
    back, found = unconstrained_values(prob, shuffled, lines=order)
    names = layout_of(prob).names()
    missing = {f"u_{prob.per_line[q]}[0]" for j, q in prob.line_coords if j == 0}
    assert {n for n, ok in zip(names, found) if not ok} == missing
    np.testing.assert_allclose(back[:, found], z[:, found], atol=1e-12)


def test_a_clone_without_work_continues_the_shipped_map_preconditioned(quick_fit, tmp_path):
    """A fresh clone has the fit's files but not its gitignored work/: a refinement continues from
    fit.json's MAP (same records and settings), whitened by a fit's draws, and says so."""
    import shutil

    out = tmp_path / "clone"
    shutil.copytree(quick_fit, out, ignore=shutil.ignore_patterns("work"))
    shipped = json.loads((out / "fit.json").read_text())["map"]
    bad = ["fit", "--out", str(out), *ARGS, "--refine-steps", "1", "--precondition", str(tmp_path / "nowhere")]
    assert main(bad) == 2  # refused before any work
    assert not (out / "work").exists()
    # --map: the continuation is the point here; a second quick NUTS run (or a Laplace Hessian) would add to CI's time
    args = ["fit", "--out", str(out), *ARGS, "--map", "--refine-steps", "1", "--precondition", str(quick_fit)]
    assert main(args) == 0
    saved = json.loads((out / "work" / "map.json").read_text())
    assert saved["from_fit"].endswith("fit.json")
    (ref,) = saved["refinements"]
    assert ref["log_posterior_before"] == pytest.approx(shipped["log_posterior"], rel=1e-9)
    assert ref["log_posterior"] >= ref["log_posterior_before"] and "posterior draws of the fit" in ref["preconditioned"]
    assert "preconditioned by the covariance of the 8 posterior draws" in (out / "report.md").read_text()
    assert "--precondition" in (out / "report.md").read_text()
    # other settings than the finished fit's: no continuation from it (a fresh MAP search instead)
    from dataclasses import asdict

    from abscopal.inference.mapfit import map_record_from_fit
    from abscopal.inference.settings import FitSettings

    fp, names = json.loads((out / "fit.json").read_text())["data_sha256"], saved["names"]
    st = FitSettings.quick_settings()
    assert map_record_from_fit(out, fp, names, st) is not None
    assert map_record_from_fit(out, fp, names, FitSettings(**dict(asdict(st), map_steps=99))) is None
    assert map_record_from_fit(out, "0" * 64, names, st) is None


def test_a_fingerprint_in_a_note_is_short_unless_it_is_a_label():
    from abscopal.inference.mapfit import short_fingerprint

    assert short_fingerprint("ab" * 32) == "ab" * 6
    assert short_fingerprint("hand-made warm start, session 9") == "hand-made warm start, session 9"
    assert short_fingerprint(None) == "not recorded"


def test_a_long_refinement_is_summarised_in_the_report():
    from abscopal.inference.report import _map_lines

    refs = [
        dict(steps=50, log_posterior_before=-10.0 + i, log_posterior=-9.0 + i, grad_norm_before=1.0, grad_norm=0.5, message="m")
        for i in range(10)
    ]
    text = "\n".join(_map_lines(dict(starts=[], refinements=refs)))
    assert text.count("- refinement, 50 more") == 4  # the first two and the last two
    assert "... 6 more refinements (300 L-BFGS iterations): log posterior -8.00 -> -2.00" in text
    short = "\n".join(_map_lines(dict(starts=[], refinements=refs[:3])))
    assert short.count("- refinement, 50 more") == 3
