"""A fitted posterior: load it, draw parameter sets from it, summarise it.

A fit is a folder (``fits/review/`` is the shipped one) with

* ``posterior.nc``: the arviz InferenceData (an ``xarray.DataTree``; groups posterior, prior,
  posterior_predictive, observed_data, sample_stats), netCDF via h5netcdf. Posterior variables are
  in the parameters' own units: a shared parameter is ``name`` with dims (chain, draw); a
  per-tumour-line parameter is ``name`` with dims (chain, draw, tumour_line), one value per line
  with growth data (fits made before 2026-11-29 also hold the hierarchical ``mu_<name>`` and
  ``sigma_<name>``);
* ``fit.json``: which parameters were estimated, the lines, the seed and settings, the
  diagnostics and an honest convergence status.

``Fit.draws`` turns posterior samples into full parameter vectors for any tumour line: a fitted
line uses its own per-line draws, any other line keeps its table values, and inter-animal
variability is added on top.
Nothing is unpickled: netCDF and JSON only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import shipped_fits
from ..model.parameters import Params, base_tumour_line, default_params, spec
from ..model.population import variability

FIT_FILES = ("posterior.nc", "fit.json")


class FitError(ValueError):
    """A fit folder is missing, truncated or inconsistent."""


def fits_root() -> Path:
    """Where named fits live: $ABSCOPAL_FITS, else the shipped ``fits/`` folder (``io.shipped_fits``)."""
    env = os.environ.get("ABSCOPAL_FITS")
    if env:
        return Path(env)
    return shipped_fits()


def resolve_fit_path(name_or_path: str | os.PathLike) -> Path:
    p = Path(name_or_path)
    if p.is_dir():
        return p
    cand = fits_root() / str(name_or_path)
    if cand.is_dir():
        return cand
    raise FitError(
        f"fit {str(name_or_path)!r}: no such folder (looked at {p} and {cand}); "
        "give a fit folder or a name under fits/ (shipped: 'review')"
    )


class _SeriesSpec:
    """The summary's description of ``sigma_series`` (a likelihood nuisance, not a table parameter)."""

    unit = "log-SD"
    scale = "log"
    value = float("nan")
    source = "fitted model discrepancy of the time courses with an estimated error model, one per discrepancy group (fits/data/README.md)"


class _InoculumSpec:
    """The summary's description of ``v0_inoculum`` (a likelihood nuisance, not a table parameter)."""

    unit = "mm^3"
    scale = "log"
    value = float("nan")
    source = (
        "fitted day-0 tumour volume of the records of one source (inoculum_group in fits/data/records), one per group; "
        "other records start from the table's v0_irr"
    )


@dataclass
class Fit:
    """A loaded posterior (see the module docstring for the file layout)."""

    name: str
    meta: dict
    posterior: object  # xarray.Dataset of the posterior group
    tree: object = None  # the whole xarray.DataTree (arviz InferenceData)
    path: Path | None = None
    _flat: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ structure
    @property
    def shared(self) -> list[str]:
        return list(self.meta["estimated"]["shared"])

    @property
    def per_line(self) -> list[str]:
        return list(self.meta["estimated"]["per_line"])

    @property
    def lines(self) -> list[str]:
        return list(self.meta["estimated"]["lines"])

    @property
    def line_entries(self) -> dict[str, list[str]]:
        """Per-line parameter -> the lines it was estimated for (fits before 2026-11-29: every line)."""
        est = self.meta["estimated"]
        return {n: list(est.get("line_entries", {}).get(n, self.lines)) for n in self.per_line}

    @property
    def n_samples(self) -> int:
        p = self.posterior
        return int(p.sizes["chain"] * p.sizes["draw"])

    def samples(self, var: str) -> np.ndarray:
        """The draws of posterior variable ``var``, chains and draws flattened: (n_samples, ...)."""
        if var not in self.posterior.data_vars:
            raise KeyError(f"var: the fit has no posterior variable {var!r}; it has {sorted(self.posterior.data_vars)}")
        if var not in self._flat:
            da = self.posterior[var]
            arr = np.asarray(da.values, dtype=np.float64)
            self._flat[var] = arr.reshape((-1,) + arr.shape[2:])
        return self._flat[var]

    def fixed_overrides(self) -> dict[str, float]:
        """Parameters held fixed in the fit at values other than the table's defaults."""
        return {k: float(v) for k, v in self.meta.get("fixed", {}).items()}

    # ------------------------------------------------------------------ draws
    def parameter_samples(self, tumour_line: str = "generic", n: int | None = None, seed: int = 0) -> np.ndarray:
        """Posterior parameter vectors (rows, in the model's parameter order) for a tumour line,
        without inter-animal variability. All samples when ``n`` is None, else ``n`` drawn with
        replacement."""
        base = default_params(base_tumour_line(tumour_line), self.fixed_overrides())
        rng = np.random.default_rng(seed)
        idx = np.arange(self.n_samples) if n is None else rng.integers(0, self.n_samples, int(n))
        out = np.tile(base.values, (len(idx), 1))
        for name in self.shared:
            out[:, base.index(name)] = self.samples(name)[idx]
        for name in self.per_line:
            if tumour_line in self.lines:
                j = self.lines.index(tumour_line)
                out[:, base.index(name)] = self.samples(name)[idx, j]
            elif f"mu_{name}" in self.posterior:  # an older, hierarchical fit: draw from its line population
                mu = self.samples(f"mu_{name}")[idx]
                sd = self.samples(f"sigma_{name}")[idx]
                out[:, base.index(name)] = mu * np.exp(sd * rng.standard_normal(len(idx)))
            # else: a line without growth data in the fit keeps its table value (already in ``base``)
        return out

    def draws(self, n: int, seed: int = 0, tumour_line: str = "generic", animals: bool = True) -> np.ndarray:
        """``n`` virtual mice: a posterior draw each, with inter-animal variability on top
        (``animals=False`` for parameter uncertainty only)."""
        if int(n) != n or n < 1:
            raise ValueError(f"n: number of draws must be a positive integer, got {n!r}")
        out = self.parameter_samples(tumour_line, int(n), seed)
        if animals:
            rng = np.random.default_rng(seed + 7919)
            names = default_params().names
            for name, (sd, _src) in self.variability().items():
                out[:, names.index(name)] *= np.exp(sd * rng.standard_normal(len(out)))
        return out

    def variability(self) -> dict[str, tuple[float, str]]:
        """Inter-animal log-SDs used with this fit (the fit's own if it estimated them)."""
        v = dict(variability())
        for name, sd in self.meta.get("variability", {}).items():
            v[name] = (float(sd), f"fit {self.name}")
        return v

    def params(self, tumour_line: str = "generic") -> Params:
        """The posterior median of every estimated parameter (other parameters at their defaults)."""
        samples = self.parameter_samples(tumour_line)
        base = default_params(base_tumour_line(tumour_line), self.fixed_overrides())
        return Params(np.median(samples, axis=0), tumour_line, base.body_weight_g)

    # ------------------------------------------------------------------ reporting
    def summary(self) -> pd.DataFrame:
        """One row per estimated quantity: name, tumour_line ('' when shared), median, 5 % and 95 %
        quantiles, unit, scale, prior, source (of the prior), and contraction (1 - posterior/prior
        SD of the log, when the prior draws are stored)."""
        rows = []
        prior = self.tree["prior"].to_dataset() if self.tree is not None and "prior" in self.tree.children else None

        def add(var, line, s, prior_s):
            lik = self.meta.get("likelihood", {})
            if var == "sigma_series":
                sp = _SeriesSpec
                prior_text = f"HalfNormal({lik.get('series_sigma_scale', '?')})"
            elif var == "v0_inoculum":
                sp = _InoculumSpec
                prior_text = f"lognormal(median={spec('v0_irr').value:g}, sigma={lik.get('inoculum_sigma', '?')})"
            else:
                sp = spec(var.removeprefix("mu_").removeprefix("sigma_"))
                prior_text = sp.prior
                if var.startswith("sigma_"):
                    prior_text = f"HalfNormal({lik.get('hyper_sigma_scale', '?')})"
            unit = "log-SD" if var.startswith("sigma_") else sp.unit
            contraction = float("nan")
            if prior_s is not None and len(prior_s) > 2:
                ps = np.std(np.log(prior_s)) if np.all(prior_s > 0) else np.std(prior_s)
                qs = np.std(np.log(s)) if np.all(s > 0) else np.std(s)
                contraction = float(1 - qs / ps) if ps > 0 else float("nan")
            rows.append(
                dict(
                    name=var,
                    tumour_line=line,
                    median=float(np.median(s)),
                    q05=float(np.quantile(s, 0.05)),
                    q95=float(np.quantile(s, 0.95)),
                    unit=unit,
                    scale=sp.scale,
                    # a per-line parameter's default is its line's table value
                    default=default_params(base_tumour_line(line))[var] if var in self.per_line else sp.value,
                    prior=prior_text,
                    source=sp.source,
                    contraction=contraction,
                )
            )

        def prior_of(var, j=None):
            if prior is None or var not in prior:
                return None
            a = np.asarray(prior[var].values, dtype=np.float64)
            a = a.reshape((-1,) + a.shape[2:])
            return a if j is None else a[:, j]

        for name in self.shared:
            add(name, "", self.samples(name), prior_of(name))
        entries = self.line_entries
        for name in self.per_line:
            for j, line in enumerate(self.lines):
                if line in entries[name]:  # (a line without growth data holds r and alpha at the table's)
                    add(name, line, self.samples(name)[:, j], prior_of(name, j))
            for hyper in (f"mu_{name}", f"sigma_{name}"):
                if hyper in self.posterior:
                    add(hyper, "(population)", self.samples(hyper), prior_of(hyper))
        # likelihood nuisances, one per group: the series discrepancy SD, the day-0 volume of a source
        for var, key, label in (("sigma_series", "series_groups", "series"), ("v0_inoculum", "inoculum_groups", "inoculum")):
            if var not in self.posterior:
                continue
            groups = self.meta.get("estimated", {}).get(key) or ["all series"]
            post, pri = self.samples(var), prior_of(var)
            post = post.reshape(len(post), -1)
            pri = None if pri is None else pri.reshape(len(pri), -1)
            for j in range(post.shape[1]):
                add(var, f"({label}: {groups[j]})", post[:, j], None if pri is None else pri[:, j])
        return pd.DataFrame(rows)

    def at_map(self) -> Fit:
        """The fit's MAP (posterior mode) as a one-draw fit: every method works on it, and intervals
        then show between-mouse spread only, not parameter uncertainty. For a fit whose posterior
        draws are a poor approximation (its status says so) the mode can be the better point."""
        import xarray as xr

        m = self.meta.get("map")
        if not m or "values" not in m:
            raise FitError(f"fit {self.name}: fit.json stores no MAP point (fits made before 2026-11-27 lack it); refit")
        data = {}
        for v in self.posterior.data_vars:
            if v not in m["values"]:
                raise FitError(f"fit {self.name}: the stored MAP lacks {v!r}")
            val = np.asarray(m["values"][v], dtype=np.float64)
            dims = self.posterior[v].dims
            if val.shape != tuple(self.posterior.sizes[d] for d in dims[2:]):
                raise FitError(f"fit {self.name}: the stored MAP of {v!r} has shape {val.shape}")
            data[v] = (dims, val.reshape((1, 1) + val.shape))
        coords = {k: c for k, c in self.posterior.coords.items() if k not in ("chain", "draw")}
        status = (
            f"MAP point of fit '{self.name}' (posterior mode, log posterior {m['log_posterior']:.1f}, gradient norm "
            + ("not computed" if m.get("grad_norm") is None else f"{m['grad_norm']:.3g}")
            + f"); no parameter uncertainty. The fit's own status: {self.meta.get('status', 'unknown')}"
        )
        meta = dict(self.meta, name=f"{self.name}@map", status=status, point="map")
        return Fit(name=f"{self.name}@map", meta=meta, posterior=xr.Dataset(data, coords=coords), tree=None, path=self.path)

    def describe(self) -> str:
        d = self.meta.get("diagnostics", {})
        status = self.meta.get("status", "unknown")
        if self.meta.get("point") == "map" or self.meta.get("method") == "map" or self.n_samples == 1:
            return f"fit '{self.name}' (status: {status}) with inter-animal variability: intervals show between-mouse spread only, no parameter uncertainty"
        bits = [f"fit '{self.name}' ({self.n_samples} posterior draws, status: {status}"]
        if d:
            bits.append(
                f"; max R-hat {d.get('max_rhat', float('nan')):.3f}, min bulk ESS {d.get('min_ess_bulk', float('nan')):.0f}, "
                f"divergences {100 * d.get('divergent_fraction', float('nan')):.1f} %"
            )
        bits.append(") with inter-animal variability: intervals combine parameter uncertainty and between-mouse spread")
        return "".join(bits)


def load_fit(name_or_path: str | os.PathLike = "review") -> Fit:
    """Load a fit folder (or a named fit under ``fits/``), checking that it is complete. A name or
    path ending in ``@map`` gives the fit's MAP point instead of its draws (``Fit.at_map``)."""
    import xarray as xr

    if str(name_or_path).endswith("@map"):
        return load_fit(str(name_or_path)[: -len("@map")]).at_map()
    path = resolve_fit_path(name_or_path)
    for f in FIT_FILES:
        if not (path / f).is_file():
            raise FitError(f"fit {path}: missing {f}")
    try:
        meta = json.loads((path / "fit.json").read_text())
    except json.JSONDecodeError as e:
        raise FitError(f"fit {path}: fit.json is not valid JSON ({e})") from None
    for key in ("estimated",):
        if key not in meta:
            raise FitError(f"fit {path}: fit.json lacks {key!r}")
    try:
        tree = xr.open_datatree(path / "posterior.nc", engine="h5netcdf")
        tree.load()
    except Exception as e:  # truncated or not netCDF
        raise FitError(f"fit {path}: posterior.nc cannot be read ({type(e).__name__}: {e})") from None
    if "posterior" not in tree.children:
        raise FitError(f"fit {path}: posterior.nc has no 'posterior' group")
    post = tree["posterior"].to_dataset()
    est = meta["estimated"]
    needed = list(est["shared"]) + list(est["per_line"])
    missing = [v for v in needed if v not in post]
    if missing:
        raise FitError(f"fit {path}: posterior lacks variables {missing}")
    for v in needed:
        arr = np.asarray(post[v].values)
        if not np.all(np.isfinite(arr)):
            raise FitError(f"fit {path}: posterior variable {v!r} has non-finite values")
    return Fit(name=meta.get("name", path.name), meta=meta, posterior=post, tree=tree, path=path)


def save_fit(path: str | os.PathLike, tree, meta: dict) -> Path:
    """Write a fit folder atomically (each file to a temporary name, then renamed)."""
    import tempfile

    from ..io import atomic_write_text

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path, prefix=".posterior.nc.", suffix=".tmp")
    os.close(fd)
    try:
        tree.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path / "posterior.nc")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic_write_text(path / "fit.json", json.dumps(meta, indent=1, default=float))
    return path


def toy_fit(path: str | os.PathLike, n_chains: int = 2, n_draws: int = 50, seed: int = 0, lines=("CT26", "MC38")) -> Path:
    """A small synthetic fit folder (log-normal draws around the defaults of r, alpha, k_kill and
    antigenicity for ``lines``: shipped lines or variants '<line> <variant>'), for tests and
    examples of code that consumes fits. It is not a fit of anything and says so in its metadata."""
    import arviz as az

    rng = np.random.default_rng(seed)
    shared = ["alpha", "k_kill"]
    per_line = ["r", "antigenicity"]
    lines = list(lines)
    post, prior = {}, {}
    for name in shared:
        v = spec(name).value
        post[name] = v * np.exp(0.1 * rng.standard_normal((n_chains, n_draws)))
        prior[name] = v * np.exp(0.5 * rng.standard_normal((1, n_draws)))
    for name in per_line:
        vals = np.array([default_params(base_tumour_line(line))[name] for line in lines])
        post[name] = vals * np.exp(0.1 * rng.standard_normal((n_chains, n_draws, len(lines))))
        prior[name] = vals * np.exp(0.5 * rng.standard_normal((1, n_draws, len(lines))))
    dims = {name: ["tumour_line"] for name in per_line}
    tree = az.from_dict({"posterior": post, "prior": prior}, dims=dims, coords={"tumour_line": lines})
    meta = {
        "name": "toy",
        "status": "synthetic (not a fit of data)",
        "estimated": {"shared": shared, "per_line": per_line, "lines": lines},
        "fixed": {},
    }
    return save_fit(path, tree, meta)
