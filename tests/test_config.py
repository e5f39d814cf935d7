"""Config validation: every error names the file, the table and the key, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from amp_core.config import build, load_config
from amp_core.data import FORCE_COEFFICIENT
from amp_core.errors import ConfigError, UnknownPluginError

DATA = Path(__file__).resolve().parent.parent / "examples" / "data" / "ptcu-train.xyz"

GOOD = f"""
[descriptor]
name = "none"
[model]
name = "pairpotential"
cutoff = 5.0
[backend]
name = "serial"
[data]
train = "{DATA}"
[training]
maxiter = 5
[training.convergence]
energy_rmse = 0.01
force_rmse = 0.2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_good_config_builds_plugins_and_force_coefficient(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    descriptor, model, backend = build(config)
    assert (descriptor.name, model.name, backend.name) == ("none", "pairpotential", "serial")
    assert config.forces and config.force_coefficient == FORCE_COEFFICIENT  # a force criterion turns force training on
    assert config.run_dir == (tmp_path / "run").resolve()


def test_energy_only_when_no_force_criterion(tmp_path):
    text = GOOD.replace("force_rmse = 0.2", "")
    assert not load_config(write(tmp_path, text)).forces


@pytest.mark.parametrize(("extra", "forces", "coefficient"), [
    ("forces = true", True, FORCE_COEFFICIENT),
    ("forces = false\nforce_coefficient = 0.3", False, 0.3),
    ("force_coefficient = 0.3", True, 0.3),
])
def test_train_forces_is_its_own_switch(tmp_path, extra, forces, coefficient):
    text = GOOD.replace("force_rmse = 0.2", "").replace("maxiter = 5", "maxiter = 5\n" + extra)
    config = load_config(write(tmp_path, text))
    assert (config.forces, config.force_coefficient) == (forces, coefficient)


def test_forces_switch_must_be_a_boolean(tmp_path):
    text = GOOD.replace("maxiter = 5", "maxiter = 5\nforces = 1")
    with pytest.raises(ConfigError, match=r"\[training\] key 'forces': expected true or false"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    ("old", "new", "pattern"),
    [
        ('name = "serial"', 'name = "seral"', r"unknown backend 'seral' \(.*run.toml, \[backend\].*Did you mean 'serial'"),
        ("cutoff = 5.0", "cutof = 5.0", r"run.toml, \[model\]: unknown key\(s\) 'cutof'.*Accepted keys:"),
        ("cutoff = 5.0", "cutoff = -1.0", r"run.toml, \[model\]: invalid parameters"),
        ("maxiter = 5", 'maxiter = "5"', r"run.toml, \[training\] key 'maxiter': expected an integer"),
        ("maxiter = 5", "maxiter = 5\nlearning_rate = 3", r"\[training\]: unknown key\(s\) 'learning_rate'"),
        ("energy_rmse = 0.01", "energy_rms = 0.01", r"\[training.convergence\]: unknown key\(s\) 'energy_rms'"),
        ("energy_rmse = 0.01", 'energy_rmse = "small"', r"\[training.convergence\] key 'energy_rmse': expected a number"),
        (f'train = "{DATA}"', 'train = "missing.traj"', r"\[data\] key 'train': data file .*missing.traj does not exist"),
        (f'train = "{DATA}"', "train = 3", r"\[data\] key 'train': expected a file name"),
        ("[training]", "[trianing]", r"unknown table\(s\) \[trianing\]"),
        ("maxiter = 5", 'optimizer = "adamw"', r"unknown optimizer 'adamw' \(.*run.toml, \[training\] optimizer\)"),
    ],
)
def test_config_errors_name_file_table_and_key(tmp_path, old, new, pattern):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ConfigError, match=pattern):
        build(load_config(path))


def test_unknown_plugin_error_is_lookup_error(tmp_path):
    path = write(tmp_path, GOOD.replace('name = "none"', 'name = "gausian"'))
    with pytest.raises(UnknownPluginError) as info:
        build(load_config(path))
    assert info.value.kind == "descriptor" and "run.toml, [descriptor]" in str(info.value)


def test_missing_config_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[model\nname="))


def test_missing_tables(tmp_path):
    with pytest.raises(ConfigError, match=r"missing table \[data\]"):
        load_config(write(tmp_path, GOOD.split("[data]")[0]))
    with pytest.raises(ConfigError, match=r"\[model\]: missing key 'name'"):
        load_config(write(tmp_path, GOOD.replace('name = "pairpotential"', "")))


def test_overrides_replace_keys(tmp_path):
    config = load_config(write(tmp_path, GOOD), {"backend": {"cores": 2}})
    assert config.backend["cores"] == 2
    with pytest.raises(ConfigError, match=r"\[backend\]: unknown key\(s\) 'cores' for backend 'serial'"):
        build(config)


@pytest.mark.parametrize(("value", "seconds"), [(600, 600.0), ("10m", 600.0), ("1h30m", 5400.0), ("90s", 90.0)])
def test_max_time_durations(tmp_path, value, seconds):
    text = GOOD.replace("maxiter = 5", f"maxiter = 5\nmax_time = {value!r}".replace("'", '"'))
    assert load_config(write(tmp_path, text)).training.max_time == seconds


@pytest.mark.parametrize("value", ['"soon"', "-5", '"10 minutes"', "0"])
def test_bad_max_time(tmp_path, value):
    text = GOOD.replace("maxiter = 5", f"maxiter = 5\nmax_time = {value}")
    with pytest.raises(ConfigError, match=r"key 'max_time': expected a duration"):
        load_config(write(tmp_path, text))
