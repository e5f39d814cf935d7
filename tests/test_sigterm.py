"""SIGTERM (what SLURM sends at the time limit) behaves like Ctrl-C: exit 130, finished work kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write


@pytest.fixture(scope="module")
def many(tmp_path_factory, slab_images) -> Path:
    """300 distinct labelled slab images (the shipped ones, rattled), so fingerprinting takes seconds."""
    rng = np.random.default_rng(3)
    images = []
    for k in range(300):
        atoms = slab_images[k % len(slab_images)].copy()
        atoms.positions += rng.normal(0.0, 0.01, atoms.positions.shape)
        atoms.calc = SinglePointCalculator(atoms, energy=float(k), forces=np.zeros((len(atoms), 3)))
        images.append(atoms)
    path = tmp_path_factory.mktemp("many") / "many.xyz"
    write(path, images)
    return path


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_sigterm_during_fingerprinting_keeps_every_finished_entry(tmp_path, many):
    config = tmp_path / "run.toml"
    config.write_text(f'[descriptor]\nname = "gaussian"\nelements = ["Cu", "Pt"]\n[model]\nname = "neuralnetwork"\n'
                      f'[backend]\nname = "multiprocessing"\ncores = 2\n[data]\ntrain = "{many}"\n'
                      '[training]\nforce_coefficient = 0.04\nmaxiter = 2\n')
    process = subprocess.Popen([sys.executable, "-m", "amp_core.cli", "train", str(config), "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = tmp_path / "run" / "fingerprints"
    assert _wait_for(lambda: len(list(store.glob("*/tmp/*.npz"))) >= 10, 120), "fingerprinting never started"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    merged = list(store.glob("*/*.npz"))
    assert len(merged) >= 10 and not list(store.glob("*/tmp/*.npz"))  # finished entries merged, none left behind
    assert len(merged) < 300  # it really was interrupted


def test_sigterm_during_evaluate_leaves_no_temporary_folder(tmp_path, many, slab_images):
    from amp_core import Potential, create_descriptor, create_model, evaluate_loss
    from amp_core.ensemble import Ensemble

    # an ensemble: its members' errors come from the loss pipeline, with its temporary store
    members = [create_model("neuralnetwork", hiddenlayers=(3,), seed=seed) for seed in (1, 2)]
    potential = Potential(create_descriptor("gaussian", elements=["Cu", "Pt"]), Ensemble(members))
    evaluate_loss(slab_images[:2], potential)
    model = potential.save(tmp_path / "potential.json")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    process = subprocess.Popen([sys.executable, "-m", "amp_core.cli", "evaluate", str(model), str(many)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert _wait_for(lambda: list(scratch.glob("amp-run-*/fingerprints/*/*")), 120), "evaluate never started"
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert not list(scratch.glob("amp-run-*")), "the temporary run folder was left behind"
