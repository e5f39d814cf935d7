"""The ``amp`` command: plugins listing, train/evaluate round trip, errors, plots."""

from __future__ import annotations

import json

import pytest
from ase.io import write

from amp_core.cli import main

pytest.importorskip("amp_coordination", reason="install examples/amp-coordination (README test command)")


def test_plugins_json_lists_builtins_and_third_party(capsys):
    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {(r["kind"], r["name"]): r for r in rows}
    assert by_name[("backend", "serial")]["status"] == "active"
    assert by_name[("backend", "serial")]["distribution"] == "amp-core"
    third = by_name[("descriptor", "coordination")]
    assert (third["distribution"], third["version"], third["status"]) == ("amp-coordination", "0.1.0", "active")
    assert set(third) == {"kind", "name", "distribution", "version", "status", "summary", "kernels", "entry_point",
                          "module"}
    assert third["kernels"] == ""


def test_plugins_table_and_kind_filter(capsys):
    assert main(["plugins", "--kind", "backend", "-v"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["KIND", "NAME", "PROVIDER", "STATUS"]
    assert "serial" in out and "descriptor" not in out and "amp_plugins.backends.serial" in out


CONFIG = """
[descriptor]
name = "none"
[model]
name = "pairpotential"
cutoff = 5.0
[data]
train = "train.xyz"
[training]
maxiter = 200
[training.convergence]
energy_rmse = 0.02
"""


def test_train_evaluate_plot(tmp_path, slab_images, capsys):
    pytest.importorskip("matplotlib")
    write(tmp_path / "train.xyz", slab_images[:6])
    (tmp_path / "run.toml").write_text(CONFIG)
    assert main(["train", str(tmp_path / "run.toml"), "--quiet"]) == 0
    model = tmp_path / "run" / "potential.json"
    assert main(["evaluate", str(model), str(tmp_path / "train.xyz")]) == 0
    out = capsys.readouterr().out
    assert "energy RMSE" in out and "force  RMSE" in out
    assert main(["plot", "convergence", str(tmp_path / "run" / "train-log.txt"), "-o", str(tmp_path / "c.png")]) == 0
    assert main(["plot", "parity", str(model), str(tmp_path / "train.xyz"), "-o", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 1000 and (tmp_path / "p.png").stat().st_size > 1000


def test_errors_exit_2_with_message(tmp_path, slab_images, capsys):
    write(tmp_path / "train.xyz", slab_images[:2])
    (tmp_path / "run.toml").write_text(CONFIG.replace('"none"', '"nnone"'))
    assert main(["train", str(tmp_path / "run.toml")]) == 2
    err = capsys.readouterr().err
    assert "amp train: error: unknown descriptor 'nnone'" in err and "Did you mean 'none'?" in err
    assert main(["evaluate", str(tmp_path / "missing.json"), "x.xyz"]) == 2
    assert "does not exist" in capsys.readouterr().err
