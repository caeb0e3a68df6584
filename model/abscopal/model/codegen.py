"""Numerical functions generated from the sympy model (``equations``): JAX for simulation and NumPy
for the ``scipy`` reference. Nothing here restates an equation."""

from __future__ import annotations

from functools import cache

import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
import sympy as sp

from .equations import build_model

_JAX_MODULES = [{"erf": jsp.erf}, "jax"]


def _lambdify(args, exprs, backend: str):
    modules = _JAX_MODULES if backend == "jax" else ["numpy"]
    return sp.lambdify(args, list(exprs), modules=modules, cse=True)


def _xp(backend: str):
    if backend not in ("jax", "numpy"):
        raise ValueError(f"backend must be 'jax' or 'numpy', got {backend!r}")
    return jnp if backend == "jax" else np


def _stacker(xp):
    def stack(values):
        # constants (e.g. a zero rate) broadcast to the lane shape of the states, if any
        arrays = xp.broadcast_arrays(*[xp.asarray(v, dtype=xp.float64) for v in values])
        return xp.stack(arrays)

    return stack


def _state_functions(backend: str, state_names, rhs_extra=()):
    """``(rhs, initial, rt_event, bolus_matrix)`` of the model restricted to ``state_names`` (model
    order); ``rhs`` takes ``rhs_extra`` (lists of symbols, e.g. drug concentrations) after ``p``. A
    bolus into a state outside the set is a zero row of ``bolus_matrix``."""
    xp = _xp(backend)
    stack = _stacker(xp)
    m = build_model()
    sym = {s.name: s for s in m.states}
    states, params = [sym[n] for n in state_names], list(m.params)
    position = [m.state_names.index(n) for n in state_names]
    of = lambda exprs: [exprs[i] for i in position]  # noqa: E731
    rhs_raw = _lambdify([states, params, *rhs_extra], of(m.rhs), backend)
    init_raw = _lambdify([params], of(m.initial), backend)
    ev_raw = _lambdify([states, params, *m.rt_symbols], of(m.rt_event), backend)
    factors = _lambdify([params], [f for _, f in m.bolus], backend)
    index = {name: i for i, name in enumerate(state_names)}
    targets = np.array([index.get(name, -1) for name, _ in m.bolus])
    onehot_np = np.zeros((len(targets), len(states)))
    onehot_np[targets >= 0, targets[targets >= 0]] = 1.0

    def rhs(y, p, *extra):
        return stack(rhs_raw(y, p, *extra))

    def initial(p):
        return stack(init_raw(p))

    def rt_event(y, p, dose, on_irr, on_abs):
        return stack(ev_raw(y, p, dose, on_irr, on_abs))

    def bolus_matrix(p):
        f = stack(factors(p))  # (n_agents, *lanes)
        onehot = xp.asarray(onehot_np).reshape(onehot_np.shape + (1,) * (f.ndim - 1))
        return onehot * f[:, None]

    return rhs, initial, rt_event, bolus_matrix


@cache
def functions(backend: str = "jax"):
    """``(rhs, initial, rt_event, bolus_matrix)`` for ``backend`` in {"jax", "numpy"}.

    - ``rhs(y, p) -> dy/dt`` (the model is autonomous)
    - ``initial(p) -> y0``
    - ``rt_event(y, p, dose_gy, on_irr, on_abs) -> y after one fraction``
    - ``bolus_matrix(p) -> (n_agents, n_states)``: the state increment per unit internal amount

    All accept trailing "lane" axes (``y``: (n_states, N), ``p``: (n_params, N)) to solve a whole
    virtual population as one system.
    """
    return _state_functions(backend, build_model().state_names)


@cache
def observable_function(backend: str = "jax"):
    """``observables(y, p) -> dict`` of the model's named observables (volumes, densities)."""
    m = build_model()
    names = list(m.observables)
    raw = _lambdify([list(m.states), list(m.params)], [m.observables[n] for n in names], backend)

    def observables(y, p):
        return dict(zip(names, raw(y, p)))

    return observables


@cache
def core_functions(backend: str = "jax"):
    """The model with its drug PK in closed form (``pk``): functions of the core states only.

    ``(rhs, initial, rt_event, bolus_matrix, pk_rates)``:

    - ``rhs(y, p, c) -> dy/dt`` of the core states, ``c`` the PK agents' concentrations (n_pk,)
    - ``initial(p)``, ``rt_event(y, p, dose_gy, on_irr, on_abs)``: as ``functions``, core states
    - ``bolus_matrix(p) -> (n_agents, n_core)``: core-state increment per unit amount (zero rows for
      the PK agents, whose doses enter the closed form instead)
    - ``pk_rates(p) -> (ka, b, ke)``, each (n_pk,): the rates of ``pk.pk_structure``

    Trailing lane axes are accepted as in ``functions``.
    """
    from .pk import pk_structure

    stack = _stacker(_xp(backend))
    pk = pk_structure()
    sym = {s.name: s for s in build_model().states}
    conc = [sym[n] for n in pk.conc_states]
    rhs, initial, rt_event, bolus_matrix = _state_functions(backend, pk.core_states, (conc,))
    rates_raw = _lambdify([list(build_model().params)], [*pk.ka, *pk.b, *pk.ke], backend)
    n_pk = len(pk.agents)

    def pk_rates(p):
        r = stack(rates_raw(p))
        return r[:n_pk], r[n_pk : 2 * n_pk], r[2 * n_pk :]

    return rhs, initial, rt_event, bolus_matrix, pk_rates
