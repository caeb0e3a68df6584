"""Sweeps of drug timing and of fractionation at equal BED; the Dovedi 2014 scenario; fits as the
source of the draws."""

import numpy as np
import pytest

import abscopal as ab
from abscopal.decide.compare import dovedi2014_scenario
from abscopal.decide.sweeps import RT_ALONE, format_sweep, plot_sweep
from abscopal.inference.fitresult import load_fit, toy_fit
from abscopal.simulation.outcomes import ENDPOINTS, dose_at_equal_bed

N = 8  # draws: small, and the same everywhere so the compiled solver is reused
KW = dict(n_draws=N, horizon_days=40.0)


@pytest.fixture(scope="module")
def gap_frame():
    return ab.sweep_gap(agents=["anti-PD-L1", "anti-CTLA-4"], gaps=[-3, 0, 10], **KW)


def test_gap_sweep_shape_columns_and_consistency_with_compare(gap_frame, tmp_path):
    df = gap_frame
    assert len(df) == (2 * 3 + 1) * len(ENDPOINTS)
    for col in ("agent", "gap_days", "drug_start_day", "endpoint", "unit", "median", "lo", "hi"):
        assert col in df.columns
    assert set(df.agent) == {RT_ALONE, "anti-PD-L1", "anti-CTLA-4"}
    assert df[df.agent == RT_ALONE].gap_days.isna().all()
    assert sorted(df[df.agent == "anti-PD-L1"].gap_days.unique()) == [-3, 0, 10]
    finite = df[np.isfinite(df.hi) & np.isfinite(df["median"])]
    assert np.all(finite.lo <= finite["median"]) and np.all(finite["median"] <= finite.hi)
    assert "no fit loaded" in df.attrs["source"]
    # the gap matters: the abscopal volume is not the same for every start day
    v = df[(df.agent == "anti-PD-L1") & (df.endpoint == "volume_abscopal")]["median"]
    assert v.nunique() == 3
    # a point of the sweep is the same simulation as compare() of that schedule on the same draws
    rt = ab.fractionated(3, 8.0, start=7.0)
    s = ab.combined(rt, "anti-PD-L1", 10.0, "mg/kg", 10.0, n_doses=3, every=3.0, horizon_days=40.0, tumour_line="CT26")
    c = ab.compare([s], n_draws=N)
    got = df[(df.agent == "anti-PD-L1") & (df.gap_days == 10) & (df.endpoint == "volume_abscopal")]["median"].item()
    want = c.summary[c.summary.endpoint == "volume_abscopal"]["median"].item()
    assert got == pytest.approx(want, rel=1e-9)
    text = format_sweep(df)
    assert "anti-CTLA-4" in text and "gap" in text
    png = tmp_path / "gap.png"
    plot_sweep(df, png)
    assert png.stat().st_size > 10_000


def test_fractionation_sweep_keeps_bed_equal(tmp_path):
    df = ab.sweep_fractionation(fractions=[1, 3, 5], ab_ratio=10.0, agents=[RT_ALONE, "anti-PD-1"], **KW)
    bed = 3 * 8.0 * (1 + 8.0 / 10.0)
    assert df.attrs["bed_gy"] == pytest.approx(bed) and df.attrs["ab_ratio"] == 10.0
    assert len(df) == 2 * 3 * len(ENDPOINTS)
    per = df.drop_duplicates(["agent", "n_fractions"])
    np.testing.assert_allclose(per.bed_gy, bed, rtol=1e-12)
    d, n = per.dose_per_fraction_gy.to_numpy(), per.n_fractions.to_numpy()
    np.testing.assert_allclose(n * d * (1 + d / 10.0), bed, rtol=1e-12)
    assert d[n == 3][0] == pytest.approx(8.0)
    assert np.all(np.diff(d[:3]) < 0), "more fractions at equal BED means a lower dose per fraction"
    png = tmp_path / "frac.png"
    plot_sweep(df, png)
    assert png.stat().st_size > 10_000
    assert "alpha/beta = 10 Gy" in format_sweep(df)


def test_sweep_errors_name_the_field():
    with pytest.raises(ValueError, match=r"fractions: 1 fraction\(s\) at BED .* allowed at most 30 Gy"):
        ab.sweep_fractionation(fractions=[1], bed_gy=200.0, n_draws=2)
    with pytest.raises(ValueError, match="fractions: must be distinct positive integers"):
        ab.sweep_fractionation(fractions=[0, 2], n_draws=2)
    with pytest.raises(ValueError, match="gaps: gap -9 d"):
        ab.sweep_gap(gaps=[-9], n_draws=2)
    with pytest.raises(ValueError, match=r"agents: unknown agent 'anti-PD1'; allowed"):
        ab.sweep_gap(agents=["anti-PD1"], n_draws=2)
    with pytest.raises(ValueError, match="ab_ratio"):
        dose_at_equal_bed(3, 40.0, -1.0)


def test_dovedi2014_reports_a_probability():
    r = ab.dovedi2014(n_draws=N, horizon_days=40.0)
    assert 0.0 <= r.p_concurrent_better <= 1.0 and 0.0 <= r.p_tie <= 1.0
    assert r.p_concurrent_better + r.p_tie + r.p_sequential_better == pytest.approx(1.0)
    names = list(r.survival.schedule)
    assert any("day 7" in n for n in names) and any("day 19" in n for n in names)
    seq = [s for s in dovedi2014_scenario() if "day 19" in s.name][0]
    assert min(d.day for d in seq.drugs) == pytest.approx(19.0) and len(seq.drugs) == 9
    assert [f.dose_gy for f in seq.rt] == [2.0] * 5


def test_sweep_uses_a_fit(tmp_path):
    fit = load_fit(toy_fit(tmp_path / "toy"))
    df = ab.sweep_gap(agents=["anti-PD-1"], gaps=[0, 7], fit=fit, **KW)
    assert df.attrs["source"].startswith("fit 'toy'")
    assert len(df) == 3 * len(ENDPOINTS)
