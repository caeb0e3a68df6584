"""The biology that makes the model credible (issue 20), one test per change; each fails without it."""

import numpy as np
import pytest

import abscopal as ab
from abscopal.inference.priors import estimated, prior
from abscopal.model.codegen import functions
from abscopal.model.equations import build_model
from abscopal.model.parameters import parameter_table, structural_bounds
from helpers import NO_IMMUNITY, logistic

STATES = build_model().state_names


def _state(**values):
    y = np.zeros(len(STATES))
    for k, v in values.items():
        y[STATES.index(k)] = v
    return y


def _kill_rate(p, V, D, E):
    """Immune kill (mm^3/day) in the irradiated tumour at (V, D, E), read off the right-hand side
    with growth switched off (r = 0) and no drug."""
    rhs = functions("numpy")[0]
    q = p.replace(r=0.0)
    y = _state(V_irr=V, D_irr=D, E_irr=E, P_irr=q["p0"], G_irr=1.0)
    return -rhs(y, q.values)[STATES.index("V_irr")]


def test_kill_per_ctl_and_per_cell_are_bounded():
    p = ab.default_params("CT26")
    rng = np.random.default_rng(0)
    for V, D, E in 10.0 ** rng.uniform(-4, 3, size=(200, 3)):
        kill = _kill_rate(p, V, D, E)
        assert 0 <= kill <= p["k_kill"] * E * (1 + 1e-12)  # a CTL kills at most k_kill cells a day
        assert kill <= p["d_kill_max"] * V * (1 + 1e-12)  # a tumour cell dies at most at d_kill_max
    # the per-CTL rate lies in the measured range (Halle 2016: 2-16 cells per CTL per day)
    sp = next(s for s in parameter_table() if s.name == "k_kill")
    assert 1.0 <= sp.lower and sp.upper <= 20.0


def test_kill_per_cell_depends_on_the_ratio_not_on_the_size():
    # a small tumour with the same CTL : tumour-cell ratio is killed at the same per-cell rate: the
    # effector route does not vanish as the tumour shrinks (the old form E V / (W + K_kill) did)
    p = ab.default_params("CT26")
    big = _kill_rate(p, 100.0, 20.0, 5.0) / 100.0
    for scale in (1e-2, 1e-4):
        small = _kill_rate(p, 100.0 * scale, 20.0 * scale, 5.0 * scale) / (100.0 * scale)
        assert small == pytest.approx(big, rel=1e-3)


def test_an_extinct_tumour_stays_extinct():
    # 0.1 cell and no immunity: without the one-cell floor it would regrow at r (x e^24 in 60 days)
    p = ab.default_params("CT26", dict(NO_IMMUNITY, v0_irr=1e-7, v0_abs=15.0))
    tr = ab.simulate(ab.Schedule(horizon_days=60, tumour_line="CT26"), p, ab.SolverOptions(rtol=1e-8, atol=1e-14, n_out=61))
    v = tr.state("V_irr")
    assert np.all(v < p["v_cell"]) and v[-1] < 1.01e-7  # under 1 % in 60 days
    assert tr.volume("abscopal")[-1] > 1000.0  # the other tumour grows as before


def test_the_abscopal_tumour_can_be_eliminated():
    # strong systemic immunity (primed T cells flood the blood): the non-irradiated tumour is driven
    # below one cell, i.e. cured by extinction, and does not come back
    p = ab.default_params("CT26", dict(k_prime=40.0, k_in=3.0, k_kill=15.0, d_kill_max=2.0, antigenicity=3.0))
    s = ab.Schedule(ab.fractionated(3, 8.0, 7.0), ab.drug_course("anti-PD-1", 10, "mg/kg", 7, 6, 3), 60, "CT26")
    tr = ab.simulate(s, p, ab.SolverOptions(rtol=1e-7, atol=1e-14, n_out=61))
    v = tr.state("V_abs")
    below = np.flatnonzero(v < p["v_cell"])
    assert below.size, f"abscopal tumour never extinct: min {v.min():.3g} mm3"
    assert np.all(v[below[0] :] < p["v_cell"])


def test_doomed_cells_do_not_crowd_viable_growth():
    # after one large fraction the viable cells regrow logistically from V * SF whatever the doomed
    # volume D (which used to count against the carrying capacity and stall the tumour)
    p = ab.default_params("CT26", NO_IMMUNITY)
    day, dose = 10.0, 12.0
    s = ab.Schedule((ab.RTFraction(day, dose, "irradiated"),), horizon_days=40, tumour_line="CT26")
    tr = ab.simulate(s, p, ab.SolverOptions(rtol=1e-10, atol=1e-12, n_out=41))
    sf = np.exp(-p["alpha"] * dose - p["alpha"] / p["ab_ratio"] * dose**2)
    v_day = logistic(day, p["v0_irr"], p["r"], p["vmax"]) * sf
    after = tr.days > day
    expected = logistic(tr.days[after] - day, v_day, p["r"], p["vmax"])
    np.testing.assert_allclose(tr.state("V_irr")[after], expected, rtol=1e-6)
    assert tr.state("D_irr")[after][0] > 0.5 * tr.state("V_irr")[after][0]  # plenty of doomed volume there


def test_resident_t_cells_outlive_20_gy():
    p = ab.default_params("CT26")
    rt_event = functions("numpy")[2]
    y = _state(V_irr=100.0, E_irr=1.0, X_irr=0.5, V_abs=100.0, E_abs=1.0)
    after = rt_event(y, p.values, 20.0, 1.0, 0.0)
    surv = after[STATES.index("E_irr")] / 1.0
    assert surv == pytest.approx(np.exp(-20.0 * p["alpha_res"]), rel=1e-12)
    assert surv > 0.05  # a sizeable fraction survives (Arina 2019); blood lymphocytes (alpha 0.73/Gy) would leave 5e-7
    assert after[STATES.index("E_abs")] == 1.0  # out of field: untouched


def test_effector_t_cells_remove_mdscs():
    s = ab.Schedule(ab.fractionated(5, 2.0, 7.0), ab.drug_course("anti-PD-L1", 10, "mg/kg", 7, 9, 2.33), 30, "CT26")
    opts = ab.SolverOptions(rtol=1e-7, atol=1e-12, n_out=31)
    with_term = ab.simulate(s, ab.default_params("CT26"), opts).state("M_irr")
    without = ab.simulate(s, ab.default_params("CT26", {"k_ME": 0.0}), opts).state("M_irr")
    assert np.all(with_term[10:] < without[10:])
    assert with_term[20] < 0.9 * without[20]


def test_equal_bed_schedules_differ_in_immunogenic_release():
    # 1 x 6.8 Gy and 5 x 2 Gy have the same BED at alpha/beta 10 (12 Gy), so (between fractions
    # without regrowth) they leave exactly the same surviving fraction; the larger fraction releases
    # more antigen/DAMPs per killed cell (immunogenic cell death rises with the dose per fraction)
    p = ab.default_params("CT26")
    rt_event = functions("numpy")[2]
    d1 = (-10 + np.sqrt(100 + 4 * 10 * 12.0)) / 2
    assert ab.bed([d1], 10.0) == pytest.approx(ab.bed([2.0] * 5, 10.0))
    iv, ia = STATES.index("V_irr"), STATES.index("Ag")

    def course(doses):
        y = _state(V_irr=100.0, V_abs=100.0)
        for d in doses:
            y = rt_event(y, p.values, d, 1.0, 0.0)
        return 100.0 - y[iv], y[ia]  # killed volume, antigen released

    kill_one, ag_one = course([d1])
    kill_five, ag_five = course([2.0] * 5)
    assert kill_one == pytest.approx(kill_five, rel=1e-12)
    assert ag_one > 2.0 * ag_five > 0.0


def test_a_blockers_emax_cannot_exceed_one():
    bounded = structural_bounds()
    assert bounded["emax_pdl1"] == (0.0, 1.0) and bounded["emax_pd1"] == (0.0, 1.0)
    with pytest.raises(ValueError, match="emax_pdl1"):
        ab.default_params("CT26").replace(emax_pdl1=1.2)
    # the PD-(L)1 blockers' maximal block is fixed at 1 (Kosinsky 2018: blockade = occupancy) ...
    assert ab.default_params("CT26").as_dict()["emax_pdl1"] == 1.0 and ab.default_params("CT26").as_dict()["emax_pd1"] == 1.0
    # ... and an estimated blocker's (anti-TGF-beta) stays inside [0, 1] under the fit's transform
    # for every unconstrained value
    assert "emax_tgfb" in estimated()[0]
    pr = prior("emax_tgfb")
    vals = np.asarray(pr.value(np.linspace(-60.0, 60.0, 241)))
    assert np.all((vals >= 0.0) & (vals <= 1.0)) and vals.min() < 1e-6 and vals.max() > 1 - 1e-6


def test_pd1_blockade_during_priming_prevents_exhaustion():
    # exhaustion needs PD-1 engagement: with anti-PD-L1 given with RT, fewer effectors become
    # exhausted than with RT alone (the rationale of concurrent scheduling, Dovedi 2014)
    rt = ab.fractionated(5, 2.0, 7.0)
    opts = ab.SolverOptions(rtol=1e-7, atol=1e-12, n_out=31)
    p = ab.default_params("CT26", {"emax_pdl1": 1.0})
    alone = ab.simulate(ab.Schedule(rt, (), 30, "CT26"), p, opts).state("X_irr")
    both = ab.simulate(ab.Schedule(rt, ab.drug_course("anti-PD-L1", 10, "mg/kg", 7, 9, 2.33), 30, "CT26"), p, opts).state("X_irr")
    assert both[14] < 0.5 * alone[14]


def test_pd1_blockade_lifts_a_brake_on_priming():
    # PD-L1 on dendritic cells restrains priming (g_ln_pd: the gain at full blockade; Mayoux 2020,
    # Oh 2020): a blocker given while RT releases antigen enlarges the primed wave, so its timing
    # relative to the antigen pulse matters (why concurrent can beat sequential, Dovedi 2014)
    rt = ab.fractionated(5, 2.0, 7.0)
    opts = ab.SolverOptions(rtol=1e-8, atol=1e-12, n_out=41)

    def primed(gain, start):
        p = ab.default_params("CT26", {"g_ln_pd": gain, "emax_pdl1": 1.0})
        drugs = () if start is None else ab.drug_course("anti-PD-L1", 10, "mg/kg", start, 9, 2.33)
        return ab.simulate(ab.Schedule(rt, drugs, 40, "CT26"), p, opts).state("Tp")

    # without a drug the gain changes nothing: k_prime and rho_T keep their meaning
    np.testing.assert_allclose(primed(3.0, None), primed(0.01, None), rtol=1e-9)
    assert primed(3.0, 7.0)[14] > 1.5 * primed(3.0, None)[14]  # the brake lifted during the pulse
    # with (almost) no gain the blocker hardly changes priming (only through more kill and antigen)
    assert primed(0.01, 7.0)[14] < 1.2 * primed(0.01, None)[14]


def test_mice_differ_in_t_cell_infiltration_as_kosinsky_measured():
    # Kosinsky 2018 (BIOMD0000000863, omegaSL 0.696): the between-mouse variability of CT26
    # dynamics is the T cells' ability to infiltrate; the virtual population varies k_in with it
    from abscopal.model.population import variability, virtual_population

    sd, source = variability()["k_in"]
    assert sd == pytest.approx(0.696) and "Kosinsky" in source
    p = ab.default_params("CT26")
    mice = virtual_population(p, 4000, seed=3)
    log_k = np.log(mice[:, p.index("k_in")] / p.values[p.index("k_in")])
    assert np.std(log_k) == pytest.approx(0.696, rel=0.05) and abs(np.mean(log_k)) < 0.05
