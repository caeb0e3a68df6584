"""Parameter export and loaders: round trips bit for bit, refusal of truncated / edited files."""

import json

import numpy as np
import pytest
import xarray as xr

import abscopal as ab
from abscopal.cli import main
from abscopal.export.formats import FIELDS, ExportError, default_records, export, load_params, load_posterior
from abscopal.inference.fitresult import load_fit, toy_fit
from abscopal.model.parameters import parameter_table, tumour_line_table, tumour_lines


@pytest.fixture(scope="module")
def fit(tmp_path_factory):
    return load_fit(toy_fit(tmp_path_factory.mktemp("fit") / "toy"))


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_fit_round_trip_bit_for_bit(fit, tmp_path, fmt):
    out = export(fmt, tmp_path / f"p.{fmt}", fit=fit)
    loaded = load_params(out)
    summary = fit.summary()
    by_key = {(r["name"], r["tumour_line"]): r for r in loaded.records}
    for row in summary.to_dict(orient="records"):
        rec = by_key[(row["name"], row["tumour_line"])]
        # exact equality: floats are written in their shortest round-trip form
        assert (rec["value"], rec["q05"], rec["q95"]) == (row["median"], row["q05"], row["q95"])
        assert rec["estimated"] and rec["unit"] == row["unit"] and rec["scale"] == row["scale"]
    # every table parameter has a shared record, per-line ones carry their line
    names = {r["name"] for r in loaded.records if r["tumour_line"] == ""}
    assert {s.name for s in parameter_table()} - set(fit.shared) <= names
    assert {r["tumour_line"] for r in loaded.records if r["name"] == "r" and r["estimated"]} == set(fit.lines)
    # the full parameter vector of a fitted line equals the fit's own posterior-median vector
    for line in fit.lines:
        np.testing.assert_array_equal(loaded.params(line).values, fit.params(line).values)
    # the written text itself survives a second export unchanged
    assert export(fmt, tmp_path / f"q.{fmt}", fit=fit).read_text() == out.read_text()


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_defaults_round_trip_without_intervals(tmp_path, fmt):
    loaded = load_params(export(fmt, tmp_path / f"d.{fmt}"))
    assert all(r["q05"] is None and r["q95"] is None and not r["estimated"] for r in loaded.records)
    assert "no fit" in loaded.source
    for line in tumour_lines():
        np.testing.assert_array_equal(loaded.params(line).values, ab.default_params(line).values)
        for name, (value, _src) in tumour_line_table(line).items():
            assert [r["value"] for r in loaded.records if r["name"] == name and r["tumour_line"] == line] == [value]


def test_unfitted_line_keeps_its_table_values(fit, tmp_path):
    """A line without growth data in the fit keeps its table values of the per-line parameters;
    the shared ones are the fit's."""
    loaded = load_params(export("json", tmp_path / "p.json", fit=fit))
    other = next(line for line in tumour_lines() if line not in fit.lines)
    s = fit.summary().set_index(["name", "tumour_line"])
    for name in fit.per_line:
        assert loaded.params(other)[name] == ab.default_params(other)[name]
    for name in fit.shared:
        assert loaded.params(other)[name] == s.loc[(name, ""), "median"]


def test_json_truncated_or_edited_is_refused(fit, tmp_path):
    path = export("json", tmp_path / "p.json", fit=fit)
    text = path.read_text()
    bad = tmp_path / "t.json"
    bad.write_text(text[: len(text) // 2])
    with pytest.raises(ExportError, match="not a valid parameter JSON"):
        load_params(bad)
    doc = json.loads(text)
    doc["parameters"][0]["value"] *= 1.0000001
    bad.write_text(json.dumps(doc))
    with pytest.raises(ExportError, match="edited after export"):
        load_params(bad)
    doc = json.loads(text)
    doc["parameters"].pop()
    bad.write_text(json.dumps(doc))
    with pytest.raises(ExportError, match="truncated or edited"):
        load_params(bad)
    doc = json.loads(text)
    doc["parameters"][3]["scale"] = "log10"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ExportError, match="scale must be 'log' or 'lin'"):
        load_params(bad)
    doc = json.loads(text)
    doc["format"] = "something-else"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ExportError, match="field 'format'"):
        load_params(bad)


def test_csv_truncated_or_edited_is_refused(tmp_path):
    path = export("csv", tmp_path / "p.csv")
    lines = path.read_text().splitlines(keepends=True)
    bad = tmp_path / "t.csv"
    bad.write_text("".join(lines[:-3]))  # whole rows lost
    with pytest.raises(ExportError, match="truncated or edited"):
        load_params(bad)
    bad.write_text("".join(lines)[:-40])  # cut inside a row
    with pytest.raises(ExportError, match="truncated or edited|columns"):
        load_params(bad)
    row = lines[10].split(",")
    row[2] = repr(float(row[2]) * 2)
    bad.write_text("".join(lines[:10] + [",".join(row)] + lines[11:]))
    with pytest.raises(ExportError, match="edited after export"):
        load_params(bad)
    row[2] = "abc"
    bad.write_text("".join(lines[:10] + [",".join(row)] + lines[11:]))
    with pytest.raises(ExportError, match="value must be a number"):
        load_params(bad)
    assert lines[6].strip() == ",".join(FIELDS)  # after the header: format, source, estimate, interval, count, sha256


def test_netcdf_is_the_fits_inference_data(fit, tmp_path):
    out = export("netcdf", tmp_path / "post.nc", fit=fit)
    tree = load_posterior(out)
    original = xr.open_datatree(fit.path / "posterior.nc", engine="h5netcdf").load()
    for group in ("posterior", "prior"):
        a, b = tree[group].to_dataset(), original[group].to_dataset()
        assert set(a.data_vars) == set(b.data_vars)
        for v in a.data_vars:
            np.testing.assert_array_equal(a[v].values, b[v].values)
    bad = tmp_path / "t.nc"
    bad.write_bytes(out.read_bytes()[:2000])
    with pytest.raises(ExportError, match="truncated or edited"):
        load_posterior(bad)
    with pytest.raises(ExportError, match="needs --fit"):
        export("netcdf", tmp_path / "x.nc")


def test_bad_requests_name_the_field(tmp_path):
    with pytest.raises(ExportError, match="--format: 'yaml'"):
        export("yaml", tmp_path / "x.yaml")
    with pytest.raises(ExportError, match="extension must be .json or .csv"):
        (tmp_path / "x.txt").write_text("{}")
        load_params(tmp_path / "x.txt")
    loaded = load_params(export("json", tmp_path / "d.json"))
    with pytest.raises(ExportError, match="tumour_line: unknown tumour line 'XYZ'"):
        loaded.params("XYZ")
    assert len(loaded.records) == len(default_records())


def test_cli_export(fit, tmp_path, capsys):
    assert main(["export", "--fit", str(fit.path), "--format", "csv", "--out", str(tmp_path / "p.csv")]) == 0
    assert "fit toy" in capsys.readouterr().out
    assert load_params(tmp_path / "p.csv").records == load_params(export("csv", tmp_path / "q.csv", fit=fit)).records
    assert main(["export", "--format", "json", "--out", str(tmp_path / "d.json")]) == 0
    assert "no intervals" in capsys.readouterr().out
    assert main(["export", "--format", "netcdf", "--out", str(tmp_path / "d.nc")]) == 2
    assert "needs --fit" in capsys.readouterr().err
    assert not (tmp_path / "d.nc").exists()


def test_a_fitted_variant_line_exports_and_loads(tmp_path):
    """A fit with a hierarchy line ('MC38 SIRPa-KO', records S01-S03) gives parameters for it: its
    own fitted values on top of its parent line's (MC38) table values, in the fit and after export."""
    from abscopal.model.parameters import base_tumour_line

    assert base_tumour_line("MC38 SIRPa-KO") == "MC38" and base_tumour_line("CT26") == "CT26"
    for bad in ("SIRPa-KO", "MC38 ", "MC99 KO"):
        with pytest.raises(ValueError, match="unknown tumour_line"):
            base_tumour_line(bad)
    fit = load_fit(toy_fit(tmp_path / "toy", lines=("CT26", "MC38", "MC38 SIRPa-KO")))
    variant, parent = fit.params("MC38 SIRPa-KO"), ab.default_params("MC38")
    assert variant["r"] == pytest.approx(float(np.median(fit.posterior["r"].values[..., 2])))
    for name in ab.default_params().names:
        if name not in fit.shared + fit.per_line:
            assert variant[name] == parent[name]
    out = export("json", tmp_path / "p.json", fit=fit)
    loaded = load_params(out)
    np.testing.assert_array_equal(loaded.params("MC38 SIRPa-KO").values, fit.params("MC38 SIRPa-KO").values)
