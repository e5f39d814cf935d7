"""Run the original Amp (1.0.1) as a separate program: load an ``.amp`` file and predict.

Amp lives in its own virtual environment (``$AMP_VENV``, default ``~/.cache/amp-original``;
see the AMP_SETUP notes); it is never imported into amp-core's process. Structures go
to it as extxyz and results come back as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write

DRIVER = r'''
import json, sys
from ase.io import read
from amp import Amp
calc = Amp.load(sys.argv[1], label="amp-original")
out = {"energies": [], "forces": []}
for atoms in read(sys.argv[2], ":"):
    atoms.calc = calc
    out["energies"].append(float(atoms.get_potential_energy()))
    try:
        out["forces"].append(atoms.get_forces().tolist())
    except Exception:  # Amp's bispectrum has no derivatives: energies only
        out["forces"].append(None)
json.dump(out, open("amp-predictions.json", "w"))
'''


def amp_python() -> Path | None:
    """Return the original Amp environment's Python, or ``None`` when it is not installed."""
    python = Path(os.environ.get("AMP_VENV", "~/.cache/amp-original")).expanduser() / "bin" / "python"
    return python if python.is_file() else None


def amp_predict(python: Path, amp_file: Path, images: list[Atoms], work: Path) -> tuple[list[Atoms], np.ndarray, list[np.ndarray]]:
    """Load ``amp_file`` with the original Amp's ``Amp.load`` and predict ``images`` (in folder ``work``).

    Returns:
        the images as Amp read them (extxyz round trip), energies (eV) and forces (eV/A).
    """
    work.mkdir(parents=True, exist_ok=True)
    plain = []
    for atoms in images:
        atoms = atoms.copy()
        atoms.info.clear()  # e.g. ASE's adsorbate_info, which extxyz cannot store
        plain.append(atoms)
    write(work / "images.extxyz", plain)
    (work / "driver.py").write_text(DRIVER)
    env = dict(os.environ, PYTHONNOUSERSITE="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [str(python), "driver.py", str(Path(amp_file).resolve()), "images.extxyz"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"the original Amp failed to load or use {amp_file}:\n{done.stderr[-3000:]}")
    result = json.loads((work / "amp-predictions.json").read_text())
    forces = [None if f is None else np.array(f) for f in result["forces"]]
    return read(work / "images.extxyz", ":"), np.array(result["energies"]), forces  # type: ignore[return-value]
