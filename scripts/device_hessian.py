"""The Laplace Hessian of a fit on a GPU (every row's two gradients vmapped in a few calls), and
optionally the log posterior at the importance-sampling proposal draws (vmapped too).

On this project's 2-core CPU the 130 gradients of the central-difference Hessian take about 15
minutes one by one; on a GPU, 64 vectorised gradients cost little more than one
(``benchmarks/results_likelihood_gpu_h200.md``). Run on the device from the repository root:

    PYTHONPATH=model python scripts/device_hessian.py fits/review/work [--batch 66] [--out DIR]
        [--importance-draws N --importance-batch 256]

It reads ``map.json`` (which must have been found for the current records: the data fingerprints
must agree), writes ``hessian.npz`` (the point, the matrix, the fingerprint) to ``--out`` (default:
the work folder), and prints its timings. Copy the file into the fit's ``work/`` folder and rerun
``abscopal fit ... --laplace [--importance-draws N]``: it resumes from the Hessian (same point,
same data) and from ``importance.npz`` (same point, data, covariance and N) instead of
recomputing them. The proposal's seed is the fit's seed + ``inference.PROPOSAL_SEED_OFFSET``, as in ``run_fit``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from abscopal.inference import (  # noqa: E402
    importance,  # noqa: E402
    laplace,  # noqa: E402
    likelihood,
    posterior,
)
from abscopal.records import load_records  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path, help="the fit's work folder (holds map.json)")
    ap.add_argument("--batch", type=int, default=66, help="gradients per vmapped call")
    ap.add_argument("--n-nodes", type=int, default=13, help="nodes of the cohort grid (inference/cohort.py)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--importance-draws", type=int, default=0, help="Student-t proposal draws to evaluate (0: none)")
    ap.add_argument("--importance-batch", type=int, default=256, help="draws per vmapped call")
    args = ap.parse_args()
    t0 = time.perf_counter()
    prob = likelihood.build_problem(load_records(), use="fit", n_nodes=args.n_nodes)
    record = json.loads((args.work / "map.json").read_text())
    fp = likelihood.problem_fingerprint(prob)
    if record.get("data_sha256") != fp:
        raise SystemExit(f"{args.work / 'map.json'}: found for other records (fingerprint differs); refit the MAP first")
    z = np.asarray(record["z"], dtype=np.float64)
    out = (args.out or args.work) / "hessian.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"device {jax.devices()[0]}; {z.size} coordinates; batch {args.batch}", flush=True)
    H = laplace.laplace_hessian(prob, z, checkpoint=out, progress=False, batch=args.batch)
    w = np.linalg.eigvalsh(H)
    print(
        f"Hessian in {time.perf_counter() - t0:.1f} s (compile included); eigenvalues {w.min():.3g} .. {w.max():.3g}, "
        f"{int((w < 0).sum())} negative, {int((w < laplace.MIN_PRECISION).sum())} below {laplace.MIN_PRECISION}; written to {out}",
        flush=True,
    )
    if args.importance_draws > 0:
        t1 = time.perf_counter()
        cov, _ = laplace.laplace_covariance(H)
        try:
            imp = importance.importance_draws(
                posterior.make_log_density(prob),
                prob,
                z,
                cov,
                args.importance_draws,
                args.seed + importance.PROPOSAL_SEED_OFFSET,
                checkpoint=out.parent / "importance.npz",
                progress=False,
                batch=args.importance_batch,
            )
        except ImportError as e:  # PSIS needs arviz-stats, which a bare device image may lack: the draws are saved
            print(f"draws evaluated and saved in {time.perf_counter() - t1:.1f} s; PSIS left to the CPU ({e})", flush=True)
            return
        print(
            f"{imp['n']} importance draws in {time.perf_counter() - t1:.1f} s (compile included): PSIS k-hat {imp['khat']:.2f}, "
            f"ESS {imp['ess']:.1f}, {imp['n_failed']} failed solves",
            flush=True,
        )


if __name__ == "__main__":
    main()
