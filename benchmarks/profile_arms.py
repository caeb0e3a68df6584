"""Where the fit's likelihood spends its solver steps: steps per arm (typical mouse) at a point
(the shipped MAP by default), and the cost that the vmapped solve pays, which is the SLOWEST arm
of every segment (a vmapped while loop runs until its last lane is done).

Run: python benchmarks/profile_arms.py [--point map|prior] [--fit fits/review]
Prints a table; nothing here asserts anything. Counting uses a host callback, so it is slow.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import importlib  # noqa: E402

import diffrax as dfx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from abscopal import inference as I  # noqa: E402
from abscopal import likelihood as L  # noqa: E402

S = importlib.import_module("abscopal.simulate")  # the module (the package exports a function of that name)
from abscopal.records import load_records  # noqa: E402

_COUNTS: list[np.ndarray] = []


class _CountingDiffrax:
    """diffrax with ``diffeqsolve`` reporting each call's step count to the host."""

    def __getattr__(self, name):
        return getattr(dfx, name)

    @staticmethod
    def diffeqsolve(*a, **k):
        sol = dfx.diffeqsolve(*a, **k)
        jax.debug.callback(lambda n: _COUNTS.append(int(n)), sol.stats["num_steps"], ordered=True)
        return sol


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--point", default="map", choices=["map", "prior"])
    ap.add_argument("--fit", default="fits/review")
    args = ap.parse_args()
    prob = L.build_problem(load_records(), use="fit", n_virtual=8, seed=0)
    if args.point == "map":
        z = np.asarray(json.loads((Path(args.fit) / "work" / "map.json").read_text())["z"])
    else:
        z = I.prior_median_z(prob)
    lay = I.layout_of(prob)
    log_shared, mu, log_sd, eta, _ = lay.split(jnp.asarray(z))
    line_vals = jnp.exp(mu[:, None] + jnp.exp(log_sd)[:, None] * eta).T
    P = L.arm_values(prob, jnp.exp(log_shared), line_vals, jnp.exp(lay.log_inoculum(jnp.asarray(z))))
    S.dfx = _CountingDiffrax()
    try:
        obs, obs_pop, ok = jax.jit(lambda P: L.solve_arms(prob, P, **I.SOLVER))(P)
        jax.block_until_ready(obs)
        jax.effects_barrier()
    finally:
        S.dfx = dfx
    A, B = prob.n_arms, len(prob.pop_arms)
    counts = np.asarray(_COUNTS)  # under vmap: one call per lane, in lane order, per segment
    n_seg = counts.size // (A + B)
    typical = counts[: n_seg * A].reshape(n_seg, A)  # (segments, arms)
    per_arm = typical.sum(0)
    paid = typical.max(1).sum()
    print(f"point {args.point}: ok={bool(ok)}; {n_seg} segments per arm, {A} arms, {B} population arms")
    print(f"steps the vmapped solve pays (sum over segments of the slowest arm): {paid}")
    print(
        f"steps if each arm paid only its own: mean {per_arm.mean():.0f}, median {np.median(per_arm):.0f}, total {per_arm.sum()}"
    )
    print(f"segments at the step limit ({I.SOLVER['max_steps']}): {(typical >= I.SOLVER['max_steps']).sum()}")
    print("\nslowest arms: record arm steps (max in one segment)")
    for i in np.argsort(-per_arm)[:15]:
        a = prob.arms[i]
        print(f"  {a.record:4s} {a.arm:24s} {per_arm[i]:6d} ({typical[:, i].max()})")
    if B:
        pop = counts[n_seg * A :].reshape(n_seg, B)
        print(f"\npopulation arms (K mice as one system): paid {pop.max(1).sum()}, per arm {pop.sum(0).tolist()}")
    print("\nslowest arm per segment (segment: steps):", typical.max(1).tolist())


if __name__ == "__main__":
    main()
