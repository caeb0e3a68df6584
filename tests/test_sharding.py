"""Cohort simulation sharded over JAX devices gives exactly the single-device result.

XLA flags must be set before JAX starts, so the run is a subprocess with two forced CPU devices:
the default mesh spans both, and the reference is the same cohort on a one-device mesh (the code
path of a one-device machine, ``population_mesh`` over the first device only)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

import abscopal as ab
from abscopal.model.population import virtual_population

ROOT = Path(__file__).resolve().parents[1]
KW = dict(rtol=1e-6, atol=1e-9, n_out=11, max_steps=16384)
N, CHUNK = 11, 3  # 4 chunks (the last padded), 2 steps of 2 devices, the last step half padding


def _cohort():
    s = ab.concurrent(
        ab.fractionated(3, 8.0, 7.0), "anti-PD-1", 10, "mg/kg", n_doses=2, every=3.0, horizon_days=20, tumour_line="CT26"
    )
    return s, virtual_population(ab.default_params("CT26"), N, seed=3)


CHILD = textwrap.dedent(
    """
    import sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    import test_sharding as T
    from abscopal.simulation.simulate import TRACE_COUNT, population_mesh, simulate_population
    import abscopal as ab
    assert len(jax.devices()) == 2, jax.devices()
    s, pop = T._cohort()
    ts, ys, ok = simulate_population(s, pop, ab.SolverOptions(**T.KW), chunk=T.CHUNK)
    traces = TRACE_COUNT["core"]
    simulate_population(s, pop[:5], ab.SolverOptions(**T.KW), chunk=T.CHUNK)  # another cohort size: no new trace
    assert TRACE_COUNT["core"] == traces == 1, TRACE_COUNT
    _, ys1, ok1 = simulate_population(s, pop, ab.SolverOptions(**T.KW), chunk=T.CHUNK, devices=jax.devices()[:1])
    np.savez(sys.argv[1], ts=ts, ys=ys, ok=ok, ys1=ys1, ok1=ok1, n_mesh=population_mesh().devices.size)
    """
)


def test_two_devices_equal_one(tmp_path):
    out = tmp_path / "two.npz"
    flags = os.environ.get("XLA_FLAGS", "")  # the suite's compile settings (conftest.py), plus two host devices
    env = dict(os.environ, XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count=2".strip(), JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "model"), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(out), str(Path(__file__).parent)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = np.load(out)
    assert int(two["n_mesh"]) == 2  # the default mesh really spans both devices
    ys = two["ys1"]  # one device
    assert ys.shape == (N, KW["n_out"], len(ab.build_model().states)) and two["ok1"].all()
    np.testing.assert_array_equal(two["ys"], ys)  # bit for bit: the same chunks, each on one device
    np.testing.assert_array_equal(two["ok"], two["ok1"])
    np.testing.assert_allclose(two["ts"], np.linspace(0.0, 20.0, KW["n_out"]))
    # the mice differ (the check is not comparing copies of one row)
    assert np.ptp(ys[:, -1, 0]) > 0
