"""The fit's settings: the solver tolerances of its log density (``SOLVER``) and the settings of a
run (``FitSettings``, stored in fit.json so that a fit can be reproduced)."""

from __future__ import annotations

from dataclasses import dataclass

#: the fit's solver settings; ``max_steps`` is per segment between state jumps (a segment can span
#: the whole 60-day horizon of an untreated arm). Since the one-cell extinction floor (2026-11-29)
#: volumes near 1e-6 mm^3 matter: at the review MAP rtol 1e-5 / atol 1e-8 left the log posterior
#: 0.011 off an rtol-1e-9 solve (1e-5 / 1e-10: 0.0047); 1e-6 / 1e-10 leaves 2.5e-4 for 1.5x the cost
SOLVER = dict(rtol=1e-6, atol=1e-10, max_steps=4096)


@dataclass(frozen=True)
class FitSettings:
    """Settings of a fit run (stored in fit.json, so that a fit can be reproduced)."""

    seed: int = 0
    n_nodes: int = 13  # grid nodes of the cohort fractions (inference/cohort.py)
    map_starts: int = 4
    map_steps: int = 300
    map_lr: float = 0.05
    lbfgs_steps: int = 60
    chains: int = 2
    warmup: int = 200
    samples: int = 200
    segment: int = 50
    processes: int = 1  # NUTS chains split over this many processes (same draws; 2 uses both cores here)
    max_tree_depth: int = 6
    target_accept: float = 0.8
    quick: bool = False
    refine_steps: int = 0  # further L-BFGS iterations from the best MAP start (resumable)
    hessian_batch: int = 1  # gradients per vmapped call of the Laplace Hessian (>1 pays on a GPU)
    importance_draws: int = 0  # Laplace: Student-t proposal draws, PSIS-resampled when k-hat < 0.7 (0: Gaussian draws)
    laplace_rescale: int = 0  # Laplace: rounds of secant rescaling of the covariance (rescale_covariance)
    laplace_split: int = 0  # Laplace: rounds of per-side rescaling: split-normal draws (split_rescale)
    precondition: str = ""  # a fit (name or folder) whose draws' covariance preconditions the MAP refinement

    @staticmethod
    def quick_settings(seed: int = 0) -> FitSettings:
        """The CI mode: few records' worth of work, a handful of steps and draws (NOT converged)."""
        return FitSettings(
            seed=seed,
            n_nodes=5,
            map_starts=1,  # one start, 10 L-BFGS iterations: no test needs this MAP converged (profiled:
            map_steps=5,  # the MAP and NUTS runs were 26 of the quick fit's 67 s, at 0.25 s per gradient)
            lbfgs_steps=10,
            chains=2,
            warmup=4,
            samples=4,
            segment=2,
            max_tree_depth=1,  # one leapfrog step per iteration: the sampler's plumbing, not its mixing
            quick=True,
        )
