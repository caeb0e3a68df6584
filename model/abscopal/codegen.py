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
    if backend not in ("jax", "numpy"):
        raise ValueError(f"backend must be 'jax' or 'numpy', got {backend!r}")
    xp = jnp if backend == "jax" else np
    m = build_model()
    states, params = list(m.states), list(m.params)
    rhs_raw = _lambdify([states, params], m.rhs, backend)
    init_raw = _lambdify([params], m.initial, backend)
    ev_raw = _lambdify([states, params, *m.rt_symbols], m.rt_event, backend)
    index = {name: i for i, name in enumerate(m.state_names)}
    factors = _lambdify([params], [f for _, f in m.bolus], backend)
    targets = np.array([index[name] for name, _ in m.bolus])
    n_states = len(states)

    def stack(values):
        # constants (e.g. a zero rate) broadcast to the lane shape of the states, if any
        arrays = xp.broadcast_arrays(*[xp.asarray(v, dtype=xp.float64) for v in values])
        return xp.stack(arrays)

    def rhs(y, p):
        return stack(rhs_raw(y, p))

    def initial(p):
        return stack(init_raw(p))

    def rt_event(y, p, dose, on_irr, on_abs):
        return stack(ev_raw(y, p, dose, on_irr, on_abs))

    def bolus_matrix(p):
        f = stack(factors(p))  # (n_agents, *lanes)
        onehot = xp.asarray(np.eye(n_states)[targets]).reshape((len(targets), n_states) + (1,) * (f.ndim - 1))
        return onehot * f[:, None]

    return rhs, initial, rt_event, bolus_matrix


@cache
def observable_function(backend: str = "jax"):
    """``observables(y, p) -> dict`` of the model's named observables (volumes, densities)."""
    m = build_model()
    names = list(m.observables)
    raw = _lambdify([list(m.states), list(m.params)], [m.observables[n] for n in names], backend)

    def observables(y, p):
        return dict(zip(names, raw(y, p)))

    return observables
