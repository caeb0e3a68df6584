"""The NUTS driver (``abscopal.inference.nuts``): right draws of a known density, bit-for-bit resume after an
interruption, one run per folder."""

import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from abscopal.inference import nuts
from helpers import GAUSS_COV as COV
from helpers import GAUSS_MU as MU
from helpers import gauss_neg_logp_and_grad as _neg_logp_and_grad
from helpers import gauss_potential

POTENTIAL = gauss_potential()  # the fit's path: a host callback
OPTS = nuts.NutsOptions(chains=2, warmup=60, samples=100, segment=20, max_tree_depth=5, seed=3)
INIT = np.zeros((2, 3))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    return nuts.sample(POTENTIAL, INIT, OPTS, tmp_path_factory.mktemp("full"), progress=False, log=lambda *_: None)


def test_draws_match_the_density(full_run):
    draws, stats = full_run
    assert draws.shape == (2, 100, 3)
    x = draws.reshape(-1, 3)
    se = np.sqrt(np.diag(COV) / 50)  # generous: 200 autocorrelated draws, ESS >= 50
    assert np.all(np.abs(x.mean(0) - MU) < 4 * se), (x.mean(0), MU)
    assert np.allclose(np.cov(x.T), COV, atol=0.5)
    assert stats["diverging"].shape == (2, 100) and not stats["diverging"].any()
    assert np.allclose(stats["potential_energy"], [[float(_neg_logp_and_grad(jnp.asarray(z))[0]) for z in c] for c in draws])


def test_an_interrupted_run_resumes_bit_for_bit(full_run, tmp_path, monkeypatch):
    saves = []
    real_save = nuts._save

    def save_then_die(*a, **k):
        real_save(*a, **k)
        saves.append(1)
        if len(saves) == 2:  # killed after the second checkpoint (iteration 40: inside the warm-up)
            raise KeyboardInterrupt

    monkeypatch.setattr(nuts, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        nuts.sample(POTENTIAL, INIT, OPTS, tmp_path, progress=False, log=lambda *_: None)
    assert not (tmp_path / nuts.LOCK).exists()  # released on the way out
    assert int(np.load(tmp_path / nuts.CHECKPOINT)["done"]) == 40
    saves.clear()
    monkeypatch.setattr(nuts, "_save", lambda *a, **k: (saves.append(1), real_save(*a, **k)))
    draws, stats = nuts.sample(POTENTIAL, INIT, OPTS, tmp_path, progress=False, log=lambda *_: None)
    assert len(saves) == (OPTS.iterations - 40) // OPTS.segment  # it continued, it did not start again
    assert np.array_equal(draws, full_run[0])
    for k in ("diverging", "num_steps", "potential_energy", "accept_prob", "step_size"):
        assert np.array_equal(stats[k], full_run[1][k]), k


def test_other_settings_on_a_checkpoint_are_refused(full_run, tmp_path):
    opts = nuts.NutsOptions(chains=2, warmup=10, samples=10, segment=10, max_tree_depth=3, seed=0)
    nuts.sample(POTENTIAL, INIT, opts, tmp_path, progress=False, log=lambda *_: None)
    with pytest.raises(ValueError, match="other sampler settings"):
        nuts.sample(POTENTIAL, INIT, nuts.NutsOptions(chains=2, warmup=20, samples=10, segment=10), tmp_path, progress=False)


def test_more_draws_continue_the_chains(tmp_path):
    short = nuts.NutsOptions(chains=2, warmup=10, samples=10, segment=10, max_tree_depth=3, seed=0)
    nuts.sample(POTENTIAL, INIT, short, tmp_path / "a", progress=False, log=lambda *_: None)
    longer = nuts.NutsOptions(chains=2, warmup=10, samples=30, segment=10, max_tree_depth=3, seed=0)
    resumed = nuts.sample(POTENTIAL, INIT, longer, tmp_path / "a", progress=False, log=lambda *_: None)
    fresh = nuts.sample(POTENTIAL, INIT, longer, tmp_path / "b", progress=False, log=lambda *_: None)
    assert resumed[0].shape == (2, 30, 3) and np.array_equal(resumed[0], fresh[0])


def test_one_run_per_folder(tmp_path):
    (tmp_path / nuts.LOCK).write_text(str(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]).pid))
    try:
        with pytest.raises(nuts.SamplerBusy, match="another run"):
            nuts.sample(POTENTIAL, INIT, OPTS, tmp_path, progress=False)
    finally:
        pid = int((tmp_path / nuts.LOCK).read_text())
        subprocess.run(["kill", str(pid)], check=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / nuts.LOCK).write_text(str(dead.pid))  # a stale lock: its process is gone
    with nuts.RunLock(tmp_path):
        assert (tmp_path / nuts.LOCK).read_text() == str(os.getpid())
    assert not (tmp_path / nuts.LOCK).exists()


def test_bad_options_name_the_field():
    with pytest.raises(ValueError, match="chains"):
        nuts.NutsOptions(chains=0)
    with pytest.raises(ValueError, match="target_accept"):
        nuts.NutsOptions(target_accept=1.5)
    with pytest.raises(ValueError, match="one starting point per chain"):
        nuts.sample(POTENTIAL, np.zeros((3, 3)), OPTS, "/tmp/never-used", progress=False)


def test_chains_in_two_processes_draw_what_one_process_draws(tmp_path):
    opts = nuts.NutsOptions(chains=4, warmup=20, samples=20, segment=20, max_tree_depth=4, seed=1)
    init = np.zeros((4, 3)) + np.arange(4)[:, None] * 0.1
    one = nuts.sample(POTENTIAL, init, opts, tmp_path / "one", progress=False, log=lambda *_: None)
    two = nuts.sample_processes(gauss_potential, init, opts, tmp_path / "two", processes=2, progress=False)
    assert np.array_equal(one[0], two[0])
    assert np.array_equal(one[1]["num_steps"], two[1]["num_steps"])
    assert np.array_equal(one[1]["chain_step_size"], two[1]["chain_step_size"]) and one[1]["step_size"] == two[1]["step_size"]
    assert (tmp_path / "two" / "group1" / nuts.CHECKPOINT).is_file()
