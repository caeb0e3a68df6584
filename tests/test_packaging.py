"""A non-editable install (``pip install .``) carries the curated data and the shipped fit: the
package-data globs of ``pyproject.toml`` cover every file the package reads from ``fits/``."""

import fnmatch
import tomllib
from pathlib import Path

from abscopal.inference.fitresult import fits_root
from abscopal.io import shipped_fits
from abscopal.records import default_data_dir

ROOT = Path(__file__).resolve().parents[1]


def test_source_checkout_reads_the_repository_fits():
    assert shipped_fits() == ROOT / "fits"
    assert default_data_dir() == ROOT / "fits" / "data"
    assert (fits_root() / "review" / "fit.json").is_file()


def test_package_data_covers_the_data_and_the_shipped_fit():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert tool["package-dir"]["abscopal._fits"] == "fits"
    globs = tool["package-data"]["abscopal._fits"]
    wanted = [p for p in (ROOT / "fits").rglob("*") if p.is_file() and "work" not in p.relative_to(ROOT / "fits").parts]
    assert len(wanted) > 50
    # setuptools' "*" does not cross a folder: match each relative path against each glob
    rel = [str(p.relative_to(ROOT / "fits")) for p in wanted]
    missing = [r for r in rel if not any(fnmatch.fnmatch(r, g) and g.count("/") == r.count("/") for g in globs)]
    assert not missing, f"files under fits/ that a wheel would leave out: {missing}"
