"""Files: atomic output (write to a temporary file in the same folder, then rename) and where the
curated data and the shipped fit are (``shipped_fits``)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def shipped_fits() -> Path:
    """The repository's ``fits/`` folder (curated data, shipped fit): inside an installed package it
    is ``abscopal/_fits`` (``pyproject.toml`` puts it there), in a source checkout ``fits/`` itself."""
    here = Path(__file__).resolve().parent
    installed = here / "_fits"
    return installed if installed.is_dir() else here.parents[1] / "fits"


def atomic_write_text(path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path, obj) -> None:
    """``obj`` as indented JSON, written atomically (numpy scalars as floats)."""
    atomic_write_text(path, json.dumps(obj, indent=1, default=float))


#: how results files spell a number that JSON cannot hold
NONFINITE_NOTE = (
    "null stands for a value that is not a finite number: an end point not reached by the horizon "
    "(censored; e.g. time to a volume), or undefined"
)


def strict_json(obj, **kw) -> str:
    """``json.dumps`` that writes standard JSON: NaN and +-Infinity become ``null`` (see
    ``NONFINITE_NOTE``), NumPy scalars become numbers, anything else unknown a string."""
    import math

    import numpy as np

    def clean(x):
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, np.ndarray):
            return clean(x.tolist())
        if isinstance(x, (np.bool_, bool)):
            return bool(x)
        if isinstance(x, (np.integer, int)):
            return int(x)
        if isinstance(x, (np.floating, float)):
            return float(x) if math.isfinite(x) else None
        if x is None or isinstance(x, str):
            return x
        return str(x)

    return json.dumps(clean(obj), allow_nan=False, **kw)


def atomic_write_figure(fig, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_npz(path, arrays: dict) -> None:
    """Write plain arrays to ``path`` (.npz, no pickle) atomically: a temporary file in the same
    folder, then a rename, so an interrupted write leaves the previous file usable."""
    import numpy as np

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
