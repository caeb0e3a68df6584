"""The model's equations, written once in sympy: the single source of truth.

Everything else is generated from the objects built here: the JAX and NumPy right-hand sides
(``codegen``), the LaTeX and plain text of ``abscopal equations``, the event maps (RT fractions and
drug boluses) and the Jacobian used for equilibrium analysis.

Units: time in days, tumour volumes in mm^3 (1 mm^3 ~ 1e6 cells, Del Monte 2009), immune cells in
1e6 cells, drug amounts in ug (cells: 1e6 cells; AdV-tk: vp), concentrations in ug/mL, PD-L1 as a
level in [0, 1], TGF-beta and type I IFN relative to baseline.

Review sections cited in the docstrings refer to the seed review (Section 2: mechanisms).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp

from .agents import catalogue

SITES = ("irr", "abs")
SITE_NAMES = {"irr": "irradiated", "abs": "abscopal"}
SITE_STATES = ("V", "D", "E", "X", "R", "M", "G", "P")
SYSTEMIC_STATES = ("Ag", "IFN", "DC", "Tp", "Tc", "Tm")

STATE_DOC = {
    "V": ("viable tumour volume", "mm^3"),
    "D": ("doomed (RT-damaged, non-proliferating) tumour volume", "mm^3"),
    "E": ("effector CD8 T cells in the tumour", "1e6 cells"),
    "X": ("exhausted CD8 T cells in the tumour", "1e6 cells"),
    "R": ("regulatory T cells (Tregs) in the tumour", "1e6 cells"),
    "M": ("suppressive myeloid cells (MDSCs, M2 TAMs) in the tumour", "1e6 cells"),
    "G": ("TGF-beta level", "relative to baseline"),
    "P": ("PD-L1 level", "fraction"),
    "Ag": ("tumour antigen and DAMP load available to DCs", "mm^3 dead-tumour equivalent"),
    "IFN": ("type I interferon (cGAS-STING)", "relative"),
    "DC": ("activated dendritic cells reaching the lymph node", "1e6 cells"),
    "Tp": ("primed tumour-specific CD8 T cells in the lymph node", "1e6 cells"),
    "Tc": ("circulating effector CD8 T cells", "1e6 cells"),
    "Tm": ("memory CD8 T cells", "1e6 cells"),
}


def _sym(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


class _Symbols(dict):
    """Parameter symbols created on first use, so the parameter list is whatever the equations use."""

    def __missing__(self, key: str) -> sp.Symbol:
        value = self[key] = _sym(key)
        return value


@dataclass(frozen=True)
class Model:
    """The assembled model: ordered states and parameters with their expressions."""

    states: tuple[sp.Symbol, ...]
    params: tuple[sp.Symbol, ...]
    rhs: tuple[sp.Expr, ...]  # d state / dt, same order as ``states``
    initial: tuple[sp.Expr, ...]  # initial state as functions of the parameters
    rt_event: tuple[sp.Expr, ...]  # state right after one RT fraction (symbols rt_dose, rt_irr, rt_abs)
    bolus: tuple[tuple[str, sp.Expr], ...]  # per agent: (state name it enters, amount factor)
    observables: dict[str, sp.Expr]
    rt_symbols: tuple[sp.Symbol, sp.Symbol, sp.Symbol]

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


def occupancy(conc: sp.Expr, ec50: sp.Expr) -> sp.Expr:
    """Receptor occupancy / fractional effect of a drug concentration (PK/PD, DESIGN.md)."""
    return conc / (conc + ec50)


def lq_survival(alpha: sp.Expr, beta: sp.Expr, dose: sp.Expr) -> sp.Expr:
    """Linear-quadratic surviving fraction of one fraction of ``dose`` Gy."""
    return sp.exp(-alpha * dose - beta * dose**2)


#: mechanisms through which an agent blocks a pathway: modifier ``prod(1 - emax * occupancy)``, so
#: each such emax is a fraction in [0, 1] (``parameters.structural_bounds``)
BLOCK_MECHANISMS = frozenset({"pd1_axis", "tgfb_block", "myeloid_recruitment", "myeloid_function"})


def drug_modifiers(p: _Symbols, conc: dict[str, sp.Expr]) -> dict[str, sp.Expr]:
    """Pharmacodynamic modifiers, one per mechanism, from each agent's occupancy (review Section 3).

    Multiplicative boosts are ``1 + sum(emax * occupancy)``; blocks are ``prod(1 - emax * occupancy)``;
    depletions are extra first-order loss rates ``sum(kmax * occupancy)``.
    """
    occ = {}
    for agent in catalogue():
        if agent.has_pk:
            occ[agent.key] = occupancy(conc[agent.key], p[f"ec50_{agent.key}"])

    def boost(mech: str, tag: str = "emax") -> sp.Expr:
        terms = [p[f"{tag}_{a.key}"] * occ[a.key] for a in catalogue() if a.has_pk and mech in a.mechanisms]
        return 1 + sp.Add(*terms)

    def block(mech: str) -> sp.Expr:
        assert mech in BLOCK_MECHANISMS, mech  # its emax must be bounded to [0, 1] (parameters.structural_bounds)
        terms = [1 - p[f"emax_{a.key}"] * occ[a.key] for a in catalogue() if a.has_pk and mech in a.mechanisms]
        return sp.Mul(*terms)

    def rate(mech: str) -> sp.Expr:
        terms = [p[f"kdep_{a.key}"] * occ[a.key] for a in catalogue() if a.has_pk and mech in a.mechanisms]
        return sp.Add(*terms)

    return {
        # fraction of the PD-1/PD-L1 axis left unblocked (anti-PD-1 and anti-PD-L1 act on one axis)
        "pd1_free": block("pd1_axis"),
        "priming": boost("priming"),
        "treg_depletion": rate("treg_depletion"),
        "treg_expansion": boost("treg_expansion", "emaxtreg"),
        "dc_recruitment": boost("dc_recruitment"),
        "dc_activation": boost("dc_activation"),
        "t_expansion": boost("t_expansion"),
        "tgfb_free": block("tgfb_block"),
        "myeloid_depletion": rate("myeloid_depletion"),
        "myeloid_recruitment_free": block("myeloid_recruitment"),
        "myeloid_function_free": block("myeloid_function"),
        "ifn_drive": boost("ifn") - 1,
        "in_situ_kill": rate("in_situ_kill"),
    }


def site_rates(s: dict[str, sp.Symbol], sysv: dict[str, sp.Symbol], p: _Symbols, mod: dict, injected: int):
    """Per-tumour dynamics, written once and used for both sites.

    ``s``: this site's states; ``sysv``: systemic states; ``injected``: 1 for the site that receives
    intratumoural agents (the irradiated one), 0 otherwise. Returns (rates, influx, antigen release).
    """
    V, D, E, X, R, M, G, P = (s[k] for k in SITE_STATES)
    W = V + D + p["v_eps"]  # total tumour volume (guarded away from zero) for densities
    dmg = D / W  # RT damage signal: fraction of doomed cells (drives suppression, PD-L1, chemokines)
    # suppression of effector function by Tregs, MDSCs/TAMs (as densities) and TGF-beta (review Section 2)
    suppression = 1 + (R + p["c_M"] * mod["myeloid_function_free"] * M) / (p["K_sup"] * W) + p["c_G"] * mod["tgfb_free"] * G
    # PD-L1 brake on killing (adaptive resistance, Kosinsky 2018), lifted by anti-PD-(L)1
    pd_brake = 1 - P * mod["pd1_free"]
    # effector killing, ratio-dependent (de Pillis, Radunskaya, Wiseman 2005 Cancer Res 65:7950): each
    # CTL kills at most k_kill cells a day (intravital imaging: 2-16, Halle 2016 Immunity 44:233), and a
    # tumour cell dies at most at d_kill_max a day when CTLs are in excess. The per-cell kill rate
    # depends on the CTL : tumour-cell ratio E/(V + D), not on the absolute volume, so a small tumour
    # that keeps its ratio can be eliminated (the abscopal tumour is no longer protected by its size).
    k_eff = p["k_kill"] * pd_brake / suppression  # cells killed per CTL per day at this site
    kill = k_eff * E * V / (V + D + k_eff * E / p["d_kill_max"] + p["v_cell"])
    tk_kill = injected * mod["in_situ_kill"] * V
    # trafficking of circulating effectors into the tumour: the abscopal coupling (Poleszczuk 2016),
    # saturating in size (perfusion) and raised by RT-induced chemokines/adhesion molecules (CXCL16, VCAM-1)
    influx = p["k_in"] * sysv["Tc"] * (V + D) / (V + D + p["K_in"]) * (1 + p["a_chem"] * dmg)
    stim = V / (V + p["K_stim"])  # antigen stimulation of infiltrating T cells
    # immunosuppression that grows with tumour burden (Kosinsky 2018: the T cells' activation and
    # proliferation fall as TV / (TV + S_R), S_R = 30.5 uL): local expansion of effectors is damped by
    # K_esc / (K_esc + V + D), so the expansion that can keep pace with a small tumour cannot with a
    # large one, and a tumour that has outgrown its immune response escapes instead of being held
    # (or rejected) at any size
    escape = p["K_esc"] / (p["K_esc"] + V + D)
    # IFN-gamma / TNF signal of the effectors, saturating in their density: induces PD-L1 (Kosinsky 2018)
    # and removes MDSCs (CD8 T cells reduce MDSCs through TNF after RT + anti-PD-L1, Deng 2014 JCI 124:687)
    effector_signal = E / W / (E / W + p["K_PE"])
    rates = {
        # logistic growth of viable cells (Kosinsky 2018), crowded by viable cells only (doomed cells
        # stop dividing and are cleared, so they do not hold the tumour at its carrying capacity), times
        # a smooth switch V^4 / (V^4 + v_cell^4): growth needs a cell to divide, so a tumour driven
        # below one cell is extinct and stays so (the deterministic form of extinction; the exponent 4
        # is a numerical choice: from 0.1 cell, regrowth would take thousands of days), minus immune
        # and in-situ killing
        "V": p["r"] * V * (1 - V / p["vmax"]) * V**4 / (V**4 + p["v_cell"] ** 4) - kill - tk_kill,
        # doomed cells die with delay (mitotic catastrophe) at rate mu
        "D": tk_kill - p["mu"] * D,
        # effectors: influx, antigen-driven local expansion (co-stimulation), death, exhaustion, reinvigoration.
        # Exhaustion is driven by chronic antigen AND PD-1 engagement (P * pd1_free: PD-L1 not blocked):
        # blockade present while an RT-induced response is primed prevents exhaustion, blockade started
        # later can only reinvigorate what is left (the rationale of concurrent scheduling, Dovedi 2014
        # Cancer Res 74:5458)
        "E": influx
        + p["rho_E"] * mod["t_expansion"] * pd_brake * stim * escape * E / suppression
        - p["delta_E"] * E
        - p["k_exh"] * stim * P * mod["pd1_free"] * E
        + p["k_reinv"] * (1 - mod["pd1_free"]) * X,
        "X": p["k_exh"] * stim * P * mod["pd1_free"] * E - p["k_reinv"] * (1 - mod["pd1_free"]) * X - p["delta_X"] * X,
        # Tregs recruited in proportion to tumour size, more after RT (review Section 2), IL-2 expands them,
        # anti-CTLA-4 / anti-GITR / low-dose cyclophosphamide deplete them
        "R": p["k_R"] * (1 + p["a_R"] * dmg) * mod["treg_expansion"] * (V + D) - (p["delta_R"] + mod["treg_depletion"]) * R,
        # MDSCs / M2 TAMs recruited after RT via CCL2 (blocked by CCR2 antagonists), depleted by CSF-1R
        # inhibition and removed by effector CD8 T cells (TNF; Deng 2014 JCI)
        "M": p["k_M"] * (1 + p["a_M"] * dmg) * mod["myeloid_recruitment_free"] * (V + D)
        - (p["delta_M"] + mod["myeloid_depletion"] + p["k_ME"] * effector_signal) * M,
        # TGF-beta relaxes to a baseline raised by RT damage
        "G": p["delta_G"] * (1 + p["a_G"] * dmg - G),
        # PD-L1 induced by IFN-gamma from effectors and by RT, relaxing to the line's baseline
        "P": p["k_P"] * (effector_signal + p["a_P"] * dmg) * (1 - P) - p["delta_P"] * (P - p["p0"]),
    }
    release = p["antigenicity"] * (p["mu"] * D + p["f_kill_ag"] * kill + p["k_shed"] * V)
    return rates, influx, release


@cache
def build_model(display: bool = False) -> Model:
    """Assemble the two-site model with systemic immunity and per-agent PK.

    ``display=True`` keeps the drug modifiers as named symbols (for printing; see
    ``modifier_definitions``); the numerical model substitutes them."""
    p = _Symbols()
    site = {k: {n: _sym(f"{n}_{k}") for n in SITE_STATES} for k in SITES}
    sysv = {n: _sym(n) for n in SYSTEMIC_STATES}
    pk_agents = [a for a in catalogue() if a.has_pk]
    depot = {a.key: _sym(f"A_{a.key}") for a in pk_agents}
    conc = {a.key: _sym(f"C_{a.key}") for a in pk_agents}

    mod = drug_modifiers(p, conc)
    if display:
        mod = {k: _sym(k) for k in mod}
    rates, influx, release = {}, {}, {}
    for k in SITES:
        rates[k], influx[k], release[k] = site_rates(site[k], sysv, p, mod, injected=int(k == "irr"))

    Ag, IFN, DC, Tp, Tc, Tm = (sysv[n] for n in SYSTEMIC_STATES)
    dc_drive = Ag / (Ag + p["K_Ag"])
    dc_sat = DC / (DC + p["K_DC"])
    recall = p["k_recall"] * Tm * dc_drive
    # PD-L1 on dendritic cells restrains the priming and clonal expansion of CD8 T cells; anti-PD-(L)1
    # lifts this brake (Mayoux et al. 2020 Sci Transl Med 12:eaav7431; Oh et al. 2020 Nat Cancer
    # 1:681). A blocker present while RT releases antigen therefore enlarges the primed wave, one given
    # after the antigen pulse finds less priming to enlarge: a mechanism for concurrent-only benefit
    # (Dovedi 2014 Cancer Res 74:5458; Kosinsky 2018: concurrent blockade gives a "rapid boosting of T
    # cell influx"). Written as the gain at full blockade, g_ln_pd (an estimate), so that k_prime and
    # rho_T keep their meaning without a drug.
    ln_gain = 1 + p["g_ln_pd"] * (1 - mod["pd1_free"])
    sys_rates = {
        # antigen + DAMPs released by immunogenic death (doomed cells, effector kill, basal turnover)
        "Ag": release["irr"] + release["abs"] - p["delta_Ag"] * Ag,
        # type I IFN from cGAS-STING: RT fractions add to it (event map), STING agonists drive it
        "IFN": p["sting"] * p["k_ifn_ag"] * mod["ifn_drive"] - p["delta_IFN"] * IFN,
        # DC activation by antigen/DAMPs, amplified by type I IFN, Flt3L/GM-CSF, TLR and CD40 agonists
        "DC": p["k_DC"] * mod["dc_recruitment"] * mod["dc_activation"] * dc_drive * (1 + p["a_IFN"] * IFN / (IFN + p["K_IFN"]))
        - p["delta_DC"] * DC,
        # priming in the lymph node (anti-CTLA-4 boosts), clonal expansion (IL-2, OX40, CD137; saturating at K_T),
        # egress, recall
        "Tp": p["k_prime"] * mod["priming"] * ln_gain * dc_sat
        + p["rho_T"] * mod["t_expansion"] * ln_gain * dc_sat * Tp / (1 + Tp / p["K_T"])
        - p["k_out"] * Tp
        + recall,
        # circulating effectors leave into both tumours (abscopal coupling) or die
        "Tc": p["k_out"] * Tp * (1 - p["f_mem"]) - influx["irr"] - influx["abs"] - p["delta_c"] * Tc,
        "Tm": p["f_mem"] * p["k_out"] * Tp - recall - p["delta_m"] * Tm,
    }
    pk_rates = {}
    for a in pk_agents:
        pk_rates[depot[a.key].name] = -p[f"ka_{a.key}"] * depot[a.key]
        pk_rates[conc[a.key].name] = p[f"ka_{a.key}"] * depot[a.key] / p[f"vd_{a.key}"] - p[f"ke_{a.key}"] * conc[a.key]

    states, rhs, init = [], [], []
    for k in SITES:
        for n in SITE_STATES:
            states.append(site[k][n])
            rhs.append(rates[k][n])
    init_site = {
        "V": lambda k: p[f"v0_{k}"],
        "D": lambda k: sp.Integer(0),
        "E": lambda k: p["e0"] * p[f"v0_{k}"],
        "X": lambda k: sp.Integer(0),
        "R": lambda k: p["k_R"] / p["delta_R"] * p[f"v0_{k}"],
        "M": lambda k: p["k_M"] / p["delta_M"] * p[f"v0_{k}"],
        "G": lambda k: sp.Integer(1),
        "P": lambda k: p["p0"],
    }
    for k in SITES:
        for n in SITE_STATES:
            init.append(init_site[n](k))
    for n in SYSTEMIC_STATES:
        states.append(sysv[n])
        rhs.append(sys_rates[n])
        init.append(sp.Integer(0))
    for a in pk_agents:
        for sym in (depot[a.key], conc[a.key]):
            states.append(sym)
            rhs.append(pk_rates[sym.name])
            init.append(sp.Integer(0))

    # --- RT fraction: a pure map on the state (review Section 2; LQ for tumour and lymphocytes) ---
    dose, on_irr, on_abs = _sym("rt_dose"), _sym("rt_irr"), _sym("rt_abs")
    beta = p["alpha"] / p["ab_ratio"]
    sf = lq_survival(p["alpha"], beta, dose)
    # tumour-resident T cells resist radiation, unlike circulating lymphocytes (Arina et al. 2019 Nat
    # Commun, "Tumor-reprogrammed resident T cells resist radiation to control tumors"): a purely linear
    # survival exp(-alpha_res * d) with a small alpha_res (assumed: no surviving fraction per dose was
    # found in stored text), so that a fraction of them outlives even 20 Gy
    sf_res = lq_survival(p["alpha_res"], 0, dose)
    sf_treg = lq_survival(p["alpha_Treg"], p["alpha_Treg"] / p["ab_L"], dose)
    # innate sensing of RT-damaged DNA falls at high doses per fraction (TREX1, Vanpouille-Box 2017)
    trex = 1 / (1 + (dose / p["d_trex"]) ** p["n_trex"])
    event = {s: s for s in states}
    killed = 0
    for k, on in (("irr", on_irr), ("abs", on_abs)):
        V, D = site[k]["V"], site[k]["D"]

        def hit(f, on=on):  # factor on a state of a targeted site
            return 1 - on + on * f

        event[V] = V * hit(sf)
        event[D] = D + on * V * (1 - sf)
        event[site[k]["E"]] = site[k]["E"] * hit(sf_res)
        event[site[k]["X"]] = site[k]["X"] * hit(sf_res)
        event[site[k]["R"]] = site[k]["R"] * hit(sf_treg)
        killed = killed + on * V * (1 - sf)
    event[IFN] = IFN + p["sting"] * p["k_ifn_rt"] * trex * killed
    # immunogenic cell death: calreticulin exposure, ATP and HMGB1 release rise with the dose per
    # fraction (Golden 2014 OncoImmunology 3:e28518), so a fraction releases antigen/DAMPs at once,
    # per killed volume f_icd * d / (d + d_icd): schedules of equal BED (equal kill) prime differently
    # (review Section 4, records R26/R27). The saturating form and its constants are assumptions.
    event[Ag] = Ag + p["antigenicity"] * p["f_icd"] * dose / (dose + p["d_icd"]) * killed
    rt_event = tuple(event[s] for s in states)

    # --- drug administrations: the internal amount enters one state, times a factor ---
    bolus = []
    for a in catalogue():
        if a.has_pk:
            bolus.append((depot[a.key].name, sp.Integer(1)))
        elif a.bolus_state == "DC":
            bolus.append(("DC", p["f_dc_ln"]))
        elif a.bolus_state == "Tc":
            bolus.append(("Tc", p["f_engraft"]))
        elif a.bolus_state == "Ag":
            bolus.append(("Ag", p["vax_potency"]))
        else:  # pragma: no cover - catalogue validated on load
            raise ValueError(f"agent {a.name}: unknown delivery {a.delivery}")

    observables = {}
    for k in SITES:
        V, D, E, R, M = (site[k][n] for n in ("V", "D", "E", "R", "M"))
        observables[f"volume_{k}"] = V + D
        observables[f"cd8_density_{k}"] = E / (V + D + p["v_eps"])
        observables[f"treg_density_{k}"] = R / (V + D + p["v_eps"])
        observables[f"myeloid_density_{k}"] = M / (V + D + p["v_eps"])

    params = tuple(sorted(p.values(), key=lambda s: s.name))
    return Model(
        states=tuple(states),
        params=params,
        rhs=tuple(rhs),
        initial=tuple(init),
        rt_event=rt_event,
        bolus=tuple(bolus),
        observables=observables,
        rt_symbols=(dose, on_irr, on_abs),
    )


def modifier_definitions() -> dict[str, sp.Expr]:
    """The pharmacodynamic modifiers in terms of drug concentrations (what ``display`` names)."""
    p = _Symbols()
    conc = {a.key: _sym(f"C_{a.key}") for a in catalogue() if a.has_pk}
    return drug_modifiers(p, conc)


def equations_text(latex: bool = False) -> str:
    """The model's equations, one line per state (plain text or LaTeX), drug modifiers named."""
    m = build_model(display=True)
    lines = []
    for s, expr in zip(m.states, m.rhs):
        if latex:
            lines.append(rf"\frac{{d {sp.latex(s)}}}{{dt}} = {sp.latex(expr)}")
        else:
            lines.append(f"d{s.name}/dt = {sp.sstr(expr)}")
    header = "RT fraction (dose d, targeted site): V <- V*SF(d), D <- D + V*(1-SF(d)), in-field E, X, R killed (LQ), IFN and antigen released"
    mods = modifier_definitions()
    if latex:
        ev = [rf"{sp.latex(s)}^{{+}} = {sp.latex(e)}" for s, e in zip(m.states, m.rt_event) if e != s]
        md = [rf"\mathrm{{{k.replace('_', '\\_')}}} = {sp.latex(v)}" for k, v in mods.items()]
        return "\n".join(lines + ["% RT fraction event"] + ev + ["% drug modifiers"] + md)
    ev = [f"{s.name}+ = {sp.sstr(e)}" for s, e in zip(m.states, m.rt_event) if e != s]
    md = [f"{k} = {sp.sstr(v)}" for k, v in mods.items()]
    return "\n".join(lines + ["", header] + ev + ["", "Drug modifiers (occupancy C/(C + ec50) of each agent):"] + md)
