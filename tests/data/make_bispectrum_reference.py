"""Make ``bispectrum_amp.json``: bispectrum fingerprints computed by the original Amp 1.0.1.

How the reference was made (run from the repository root with amp-core's environment):

    python tests/data/make_bispectrum_reference.py

This script builds a few small structures (a 5-atom Cu/Pt cluster, a rattled 4-atom
Cu3Pt fcc cell, a rattled Cu/Pt slab periodic in x and y, a 3-atom cluster at jmax 3.5, a
dimer at Amp's default jmax 5), passes them as JSON (full precision) to a driver in a
temporary folder, which runs Amp's own
``amp.descriptor.bispectrum.Bispectrum(...).calculate_fingerprints`` there with the
Python of Amp's separate environment (``$AMP_VENV``, default ``~/.cache/amp-original``;
see the peers' AMP_SETUP notes). Amp is never imported into amp-core. The JSON file holds,
per case, the structure (symbols, positions, cell, pbc), the parameters (cutoff radius,
jmax, Gs or None for Amp's default weights, elements) and Amp's fingerprints per atom.

Amp's Python bispectrum is slow (on the shared 2-core machine the slab and the jmax 5
dimer took the better part of an hour each), so the stored file was assembled from this
script's driver run once per case in separate processes (``structures()[k]`` alone),
then ``write_document`` over all five; the script as above gives the same file when
``AMP_REFERENCE_TIMEOUT`` leaves Amp the time (it keeps only the cases finished in time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc111

HERE = Path(__file__).resolve().parent
TIMEOUT = float(os.environ.get("AMP_REFERENCE_TIMEOUT", 3600))
"""Seconds Amp may run (its Python bispectrum is slow: the jmax 5 dimer takes minutes)."""
AMP_PYTHON = Path(os.environ.get("AMP_VENV", Path.home() / ".cache" / "amp-original")) / "bin" / "python"

DRIVER = r"""
import json, sys
from ase import Atoms
from amp.descriptor.bispectrum import Bispectrum
from amp.utilities import hash_images
cases = json.load(open("cases.json"))
out = []
for k, case in enumerate(cases):
    atoms = Atoms(case["symbols"], positions=case["positions"], cell=case["cell"], pbc=case["pbc"])
    images = hash_images([atoms])
    d = Bispectrum(cutoff=case["cutoff"], Gs=case["Gs"], jmax=case["jmax"], elements=case["elements"],
                   dblabel="amp-data-%d" % k)
    d.calculate_fingerprints(images)
    key = list(images.keys())[0]
    out.append([[symbol, list(map(float, fp))] for symbol, fp in d.fingerprints[key]])
    json.dump(out, open("out.json", "w"))  # after each case: a slow last case may be cut off
"""


def structures() -> list[tuple[Atoms, dict]]:
    rng = np.random.default_rng(11)
    cluster = Atoms(
        "CuPtCuCuPt",
        positions=[[0, 0, 0], [2.3, 0.3, 0.1], [-0.4, 2.4, 0.2], [0.6, 0.9, 2.2], [2.4, 2.2, 1.9]],
    )
    cluster.positions += rng.normal(scale=0.1, size=(5, 3))
    crystal = bulk("Cu", "fcc", a=3.7, cubic=True)
    crystal[0].symbol = "Pt"
    crystal.positions += rng.normal(scale=0.1, size=crystal.positions.shape)
    slab = fcc111("Cu", size=(2, 2, 2), vacuum=5.0)
    slab[1].symbol = "Pt"
    slab.positions += rng.normal(scale=0.1, size=slab.positions.shape)
    slab.pbc = (True, True, False)
    small = Atoms("CuPtCu", positions=[[0, 0, 0], [2.4, 0.2, 0.3], [0.5, 2.2, -0.4]])
    small.positions += rng.normal(scale=0.05, size=(3, 3))
    dimer = Atoms("CuPt", positions=[[0.1, -0.2, 0.3], [1.9, 1.1, -0.8]])
    weights = {"Cu": {"Cu": 1.0, "Pt": 2.5}, "Pt": {"Cu": 0.7, "Pt": -1.3}}
    return [
        (cluster, {"cutoff": 4.0, "jmax": 2, "Gs": None, "elements": ["Cu", "Pt"]}),
        (crystal, {"cutoff": 4.5, "jmax": 1.5, "Gs": weights, "elements": ["Cu", "Pt"]}),
        (slab, {"cutoff": 5.0, "jmax": 2.5, "Gs": None, "elements": ["Cu", "Pt"]}),
        (small, {"cutoff": 6.5, "jmax": 3.5, "Gs": None, "elements": ["Cu", "Pt"]}),
        (dimer, {"cutoff": 6.5, "jmax": 5, "Gs": None, "elements": ["Cu", "Pt"]}),  # Amp's default jmax
    ]


def _structure(atoms: Atoms) -> dict:
    return {
        "symbols": atoms.get_chemical_symbols(),
        "positions": atoms.positions.tolist(),
        "cell": atoms.cell.array.tolist(),
        "pbc": atoms.pbc.tolist(),
    }


def write_document(cases: list[tuple[Atoms, dict]], results: list) -> None:
    """Write ``bispectrum_amp.json`` from the structures and Amp's fingerprints of each."""
    document = {
        "made_by": "tests/data/make_bispectrum_reference.py with amp-atomistics 1.0.1 "
        "(amp.descriptor.bispectrum.Bispectrum.calculate_fingerprints, Python path)",
        "cases": [
            {
                **_structure(atoms),
                "params": params,
                "amp": result,
            }
            for (atoms, params), result in zip(cases, results)
        ],
    }
    (HERE / "bispectrum_amp.json").write_text(json.dumps(document, indent=1) + "\n")


def main() -> int:
    if not AMP_PYTHON.exists():
        print(f"Amp's environment is missing ({AMP_PYTHON}); see AMP_SETUP.md", file=sys.stderr)
        return 1
    cases = structures()
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "cases.json").write_text(json.dumps([{**p, **_structure(a)} for a, p in cases]))
        (Path(folder) / "driver.py").write_text(DRIVER)
        try:
            subprocess.run([str(AMP_PYTHON), "driver.py"], cwd=folder, check=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"Amp did not finish in {TIMEOUT} s; keeping the cases it finished", file=sys.stderr)
        results = json.loads((Path(folder) / "out.json").read_text())
        cases = cases[: len(results)]
    write_document(cases, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
