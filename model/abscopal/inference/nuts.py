"""NUTS that survives interruption: numpyro's NUTS kernel, stepped in segments by a compiled loop of
our own, with every chain's full kernel state checkpointed after each segment.

numpyro's ``MCMC.run`` runs the warm-up in one piece and keeps the kernel's state in memory, so an
interrupted warm-up is lost and a resumed run differs from an uninterrupted one. Here the kernel's
documented API (``NUTS.init``, ``NUTS.sample``) is driven directly: a ``lax.scan`` of ``segment``
iterations (warm-up and sampling alike: the kernel adapts while its iteration counter is below the
warm-up length), then the whole ``HMCState`` of every chain (position, gradient, momentum, step
size and mass-matrix adaptation state, random key) goes to ``checkpoint.npz``, written atomically
(a run killed while writing keeps the previous checkpoint). A resumed run loads that state and runs
the same segments with the same keys, so it reproduces an uninterrupted run bit for bit.

The algorithm takes a potential (minus the log density, a function of a flat vector) and a folder,
never the statistical problem. A lock file (``run.lock``, holding the process id) refuses a second
run on the same folder while one is alive.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

#: per-iteration statistics kept beside the draws
EXTRA = ("diverging", "num_steps", "potential_energy", "accept_prob", "step_size")
CHECKPOINT = "checkpoint.npz"
LOCK = "run.lock"


class SamplerBusy(RuntimeError):
    """Another sampler run holds the folder."""


@dataclass(frozen=True)
class NutsOptions:
    chains: int = 4
    warmup: int = 500
    samples: int = 500
    segment: int = 50  # iterations per compiled segment and per checkpoint
    max_tree_depth: int = 8
    target_accept: float = 0.8
    seed: int = 0

    def __post_init__(self):
        for name in ("chains", "samples", "segment", "max_tree_depth"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: must be a positive integer, got {getattr(self, name)!r}")
        if int(self.warmup) < 0:
            raise ValueError(f"warmup: must be >= 0, got {self.warmup!r}")
        if not 0 < self.target_accept < 1:
            raise ValueError(f"target_accept: must be in (0, 1), got {self.target_accept!r}")

    @property
    def iterations(self) -> int:
        """Warm-up plus draws, rounded up to whole segments (the extra draws are discarded)."""
        n = self.warmup + self.samples
        return -(-n // self.segment) * self.segment


class RunLock:
    """``run.lock`` in ``folder`` for the life of a run; a lock whose process is gone is taken over."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pid = _lock_pid(self.path)
                if pid is not None and pid != os.getpid() and _alive(pid):
                    raise SamplerBusy(f"{self.path.parent}: another run (process {pid}) is using this folder") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise SamplerBusy(f"{self.path.parent}: could not take {self.path}")

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)
        return False


def _lock_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kernel(potential, opts: NutsOptions, inv_mass):
    from numpyro.infer import NUTS

    # a matrix (size, size) is a dense metric (e.g. the inverse Hessian at the mode), a vector a diagonal one
    return NUTS(
        potential_fn=potential,
        target_accept_prob=opts.target_accept,
        max_tree_depth=opts.max_tree_depth,
        inverse_mass_matrix=None if inv_mass is None else jnp.asarray(inv_mass),
        dense_mass=inv_mass is not None and np.ndim(inv_mass) == 2,
    )


def _segment_fn(kernel, length: int):
    """``length`` kernel iterations as one compiled scan: (state) -> (state, per-iteration record)."""

    def body(state, _):
        state = kernel.sample(state, (), {})
        rec = dict(
            z=state.z,
            diverging=state.diverging,
            num_steps=state.num_steps,
            potential_energy=state.potential_energy,
            accept_prob=state.accept_prob,
            step_size=state.adapt_state.step_size,
        )
        return state, rec

    return jax.jit(lambda state: jax.lax.scan(body, state, None, length=length))


def _save(path: Path, states: list, records: dict, done: int, seconds: np.ndarray, opts: NutsOptions, size: int):
    from ..io import atomic_write_npz

    leaves = [jax.tree.leaves(s) for s in states]
    arrays = {f"state_{i}": np.stack([np.asarray(chain[i]) for chain in leaves]) for i in range(len(leaves[0]))}
    arrays.update({f"rec_{k}": v for k, v in records.items()})
    arrays.update(
        done=np.array(done),
        seconds=np.array(seconds),
        settings=_settings_key(opts, size),
    )
    atomic_write_npz(path, arrays)


def _starts(init, opts: NutsOptions) -> np.ndarray:
    """The chains' starting points as a (chains, size) array, one per chain."""
    init = np.atleast_2d(np.asarray(init, dtype=np.float64))
    if init.shape[0] != opts.chains:
        raise ValueError(f"init: one starting point per chain ({opts.chains}), got {init.shape[0]}")
    return init


def _settings_key(opts: NutsOptions, size: int) -> np.ndarray:
    """What a resume may not change (the number of draws and the segment length it may: the chains
    continue the same way whatever the segments, and further draws extend them)."""
    return np.array([opts.chains, opts.warmup, opts.max_tree_depth, opts.seed, size, opts.target_accept], dtype=np.float64)


def sample(
    potential,
    init: np.ndarray,
    opts: NutsOptions,
    folder: Path,
    inv_mass=None,
    progress: bool = True,
    log=print,
    first_chain: int = 0,
):
    """NUTS draws of ``potential`` (minus a log density of a flat vector) from ``init`` (chains, size),
    checkpointed in ``folder`` (see the module docstring); a call on a folder with a checkpoint of
    the same settings resumes it. Returns ``(draws (chains, samples, size), stats)``: ``stats`` holds
    ``EXTRA`` per chain and draw (a resume may ask for more or fewer draws, or other segments:
    the chains continue as they would have), each chain's adapted step size (``chain_step_size``)
    and their median (``step_size``), the warm-up's divergences and the seconds spent in warm-up and sampling (a segment counts where it starts).
    Chains run one after another, a segment each in turn. (Two chains in two threads deadlock when
    the potential is a host callback into another compiled function, as the fit's is: measured
    2026-11-30. Parallel chains need two processes.)"""
    folder, init = Path(folder), _starts(init, opts)
    size = init.shape[1]
    with RunLock(folder):
        kernel = _kernel(potential, opts, inv_mass)
        # chain c's key depends on its index among all chains (``first_chain``: where a group starts)
        keys = [jax.random.fold_in(jax.random.PRNGKey(opts.seed), first_chain + c) for c in range(opts.chains)]
        states = [kernel.init(keys[c], opts.warmup, init_params=jnp.asarray(init[c])) for c in range(opts.chains)]
        ck_path = folder / CHECKPOINT
        done, seconds, records = 0, np.zeros(2), {}  # seconds: warm-up, sampling
        if ck_path.is_file():
            ck = dict(np.load(ck_path, allow_pickle=False))
            theirs = ck.get("settings", np.zeros(0))
            if not np.array_equal(theirs, _settings_key(opts, size)):
                raise ValueError(
                    f"{ck_path}: a checkpoint of other sampler settings {theirs.tolist()}; "
                    "remove it (or the folder) to start again, or use the same settings"
                )
            treedef = jax.tree.structure(states[0])
            states = [
                jax.tree.unflatten(treedef, [jnp.asarray(ck[f"state_{i}"][c]) for i in range(treedef.num_leaves)])
                for c in range(opts.chains)
            ]
            done, seconds = int(ck["done"]), np.asarray(ck["seconds"], dtype=np.float64)
            records = {k[4:]: v for k, v in ck.items() if k.startswith("rec_")}
            log(f"NUTS: resuming at iteration {done} of {opts.iterations} per chain ({ck_path})")
        run = _segment_fn(kernel, opts.segment)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=opts.iterations * opts.chains, initial=done * opts.chains, desc="NUTS", unit="it")
        while done < opts.iterations:
            t0 = time.perf_counter()
            outs = []
            for c in range(opts.chains):
                states[c], rec = run(states[c])
                outs.append(jax.tree.map(np.asarray, rec))
                if bar is not None:
                    bar.update(opts.segment)
            seg = {k: np.stack([o[k] for o in outs]) for k in outs[0]}  # (chains, segment, ...)
            records = {k: np.concatenate([records[k], v], axis=1) if k in records else v for k, v in seg.items()}
            seconds[0 if done < opts.warmup else 1] += time.perf_counter() - t0
            done += opts.segment
            _save(ck_path, states, records, done, seconds, opts, size)
            if bar is not None:
                post = records["diverging"][:, opts.warmup :]
                bar.set_postfix(
                    phase="warm-up" if done <= opts.warmup else "sampling",
                    divergences=int(post.sum()),
                    step_size=f"{float(np.median(seg['step_size'][:, -1])):.3g}",
                )
        if bar is not None:
            bar.close()
    keep = slice(opts.warmup, opts.warmup + opts.samples)
    stats = {k: records[k][:, keep] for k in EXTRA if k != "step_size"}
    stats["chain_step_size"] = records["step_size"][:, opts.warmup - 1 if opts.warmup else 0]  # each chain's adapted one
    stats.update(
        warmup_divergences=int(records["diverging"][:, : opts.warmup].sum()),
        warmup_seconds=float(seconds[0]),
        sample_seconds=float(seconds[1]),
        step_size=float(np.median(stats["chain_step_size"])),
    )
    return records["z"][:, keep], stats


# ---------------------------------------------------------------- chains in several processes
def _group_worker(args):
    factory, init, opts, folder, inv_mass, first = args
    jax.config.update("jax_enable_x64", True)
    return sample(factory(), init, opts, folder, inv_mass=inv_mass, progress=False, log=lambda *_: None, first_chain=first)


def sample_processes(
    factory, init: np.ndarray, opts: NutsOptions, folder: Path, processes: int = 2, inv_mass=None, progress=True, log=print
):
    """``sample`` with the chains split over ``processes`` processes (spawned; each builds its own
    potential with ``factory()``, which must be picklable: e.g. a ``functools.partial`` of a module
    function). Group k checkpoints in ``folder/group<k>``; the draws are those of ``sample`` with
    all chains in one process, bit for bit (each chain's key depends on its index only)."""
    import multiprocessing as mp

    folder, init = Path(folder), _starts(init, opts)
    if int(processes) < 1:
        raise ValueError(f"processes: must be a positive integer, got {processes!r}")
    bounds = np.linspace(0, opts.chains, min(int(processes), opts.chains) + 1).astype(int)
    groups = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    jobs = [
        (factory, init[a:b], replace(opts, chains=b - a), folder / f"group{k}", inv_mass, a) for k, (a, b) in enumerate(groups)
    ]
    with RunLock(folder):
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=opts.iterations * opts.chains, desc=f"NUTS ({len(groups)} processes)", unit="it")
        with mp.get_context("spawn").Pool(len(jobs)) as pool:
            pending = pool.map_async(_group_worker, jobs)
            while not pending.ready():
                pending.wait(2.0)
                if bar is not None:
                    done = [_done(folder / f"group{k}" / CHECKPOINT) * (b - a) for k, (a, b) in enumerate(groups)]
                    bar.n = int(sum(done))
                    bar.refresh()
            results = pending.get()
        if bar is not None:
            bar.n = bar.total
            bar.close()
    draws = np.concatenate([r[0] for r in results])
    stats = {k: np.concatenate([r[1][k] for r in results]) for k in results[0][1] if np.ndim(results[0][1][k]) >= 1}
    stats.update(
        warmup_divergences=int(sum(r[1]["warmup_divergences"] for r in results)),
        warmup_seconds=float(max(r[1]["warmup_seconds"] for r in results)),
        sample_seconds=float(max(r[1]["sample_seconds"] for r in results)),
        step_size=float(np.median(stats["chain_step_size"])),  # over all chains, as ``sample`` gives it
    )
    return draws, stats


def _done(path: Path) -> int:
    try:
        with np.load(path, allow_pickle=False) as ck:
            return int(ck["done"])
    except (OSError, KeyError, ValueError):
        return 0
