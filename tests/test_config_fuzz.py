"""Config fuzzing: hundreds of mutated quickstart configs, each refused with a ConfigError or accepted sanely.

No mutation may raise anything but :class:`~amp_core.ConfigError` (no traceback for a
user), none may hang, and what is accepted must hold finite, in-range values. Seeded, so a
failure reproduces; capped in time.
"""

from __future__ import annotations

import copy
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from amp_core import ConfigError
from amp_core.config import build, from_dict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart" / "config.toml"
HOSTILE: list[Any] = [float("nan"), float("inf"), -float("inf"), -1, 0, -0.0, 1e308, 10**18, 10**100, "5", "",
                      "x" * 10_000, [], {}, [[1]], True, False, [10**9, 10**9], {"Cu": [3]}, 0.5, 3, 1e-300,
                      ["Cu", "Cu"], ["Xx"], [0], [-3], ["5"], 2.5]


def _paths(config: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in config.items():
        if isinstance(value, dict):
            out += _paths(value, (*prefix, key))
        else:
            out.append((*prefix, key))
    return out


def _mutate(base: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    config = copy.deepcopy(base)
    for _ in range(rng.choice((1, 1, 2))):
        path = rng.choice(_paths(config))
        target = config
        for key in path[:-1]:
            target = target[key]
        operation = rng.random()
        if operation < 0.8:
            target[path[-1]] = copy.deepcopy(rng.choice(HOSTILE))
        elif operation < 0.9:
            del target[path[-1]]
        else:
            target[rng.choice(["cores", "cutof", "learning_rate", "Rc"])] = rng.choice(HOSTILE)
    return config


def _check_accepted(config: Any, built: tuple[Any, Any, Any]) -> None:
    training = config.training
    for name in ("energy_coefficient", "overfit"):
        assert math.isfinite(getattr(training, name))
    assert math.isfinite(config.force_coefficient)
    for name in ("energy_rmse", "energy_maxresid", "force_rmse", "force_maxresid"):
        value = getattr(training.convergence, name)
        assert value is None or math.isfinite(value)
    descriptor, model, backend = built
    assert backend.cores <= 64, f"accepted {backend.cores} workers"
    cutoff = descriptor.todict().get("cutoff")
    if isinstance(cutoff, dict):
        cutoff = cutoff.get("kwargs", {}).get("Rc")
    assert cutoff is None or (isinstance(cutoff, (int, float)) and 0 < cutoff <= 100), f"accepted cutoff {cutoff!r}"
    layers = getattr(model.params, "hiddenlayers", ())
    widths = [w for entry in layers for w in (entry[1] if isinstance(entry, tuple) else (entry,))]
    for width in widths:
        assert isinstance(width, int) and 0 < width <= 10_000, f"accepted hidden layer width {width!r}"


def test_mutated_quickstart_configs_give_config_errors_or_sane_values(tmp_path):
    base = tomllib.loads(QUICKSTART.read_text())
    base["data"] = {"train": str(QUICKSTART.parent.parent / "data" / "ptcu-train.xyz")}
    base["backend"] = {"name": "serial"}
    rng = random.Random(20261206)
    began, tried, refused = time.monotonic(), 0, 0
    while tried < 300 and time.monotonic() - began < 60:
        config = _mutate(base, rng)
        tried += 1
        try:
            loaded = from_dict(config, QUICKSTART)
            built = build(loaded)
        except ConfigError:
            refused += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"mutation {tried} raised {type(exc).__name__}: {str(exc)[:300]}\nconfig: {str(config)[:500]}")
        _check_accepted(loaded, built)
        built[2].close()
    assert tried >= 100 and refused > tried // 3, (tried, refused)
