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
    """Each data folder is a package of its own (so setuptools does not warn that it is absent from
    ``packages``), whose package-data globs cover its files."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert tool["package-dir"]["abscopal._fits"] == "fits"
    wanted = [p for p in (ROOT / "fits").rglob("*") if p.is_file() and "work" not in p.relative_to(ROOT / "fits").parts]
    wanted += [p for p in (ROOT / "model" / "abscopal" / "data").glob("*") if p.is_file()]
    assert len(wanted) > 50
    missing = []
    for p in wanted:
        inside_fits = ROOT / "fits" in p.parents
        rel = p.relative_to(ROOT / "fits") if inside_fits else p.relative_to(ROOT / "model")
        package = ".".join((("abscopal", "_fits") if inside_fits else ()) + rel.parent.parts)
        globs = tool["package-data"].get(package, [])
        # setuptools' "*" does not cross a folder: each package's globs match its own files
        if package not in tool["packages"] or not any(fnmatch.fnmatch(p.name, g) for g in globs):
            missing.append(str(rel))
    assert not missing, f"data files a wheel would leave out: {missing}"
