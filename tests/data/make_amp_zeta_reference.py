"""Make ``amp_zeta_half.json``: the original Amp's Gaussian fingerprints and primes for zeta < 1.

How the reference numbers were made (run from the repository root with amp-core's Python):

    python tests/data/make_amp_zeta_reference.py

The original Amp (``amp-atomistics`` 1.0.1, installed in ``$AMP_VENV``, default
``~/.cache/amp-original``) runs as a separate program on two rattled Cu/O/Pd structures
(a 7-atom cluster and an 8-atom periodic cell whose cell vectors are longer than the
cutoff) with symmetry functions of zeta 0.5 and 0.25 (G4 and G5, gamma +1, -1 and 0.6)
beside G2s, a Cosine cutoff of 4.0 A. Its Fortran path gives the fingerprints and the
primes; its Python path is run too and must agree with the Fortran path to 1e-10 (the
script stops otherwise). Amp keys a prime ``(m, symbol, i, symbol, l)`` as d G_i / d x_(m, l);
the file stores them as ``[i, m, l, value...]`` rows. Structures go to Amp as extxyz; the
file keeps the positions Amp read. Nothing of Amp is imported into amp-core.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "amp_zeta_half.json"
CUTOFF = 4.0
ELEMENTS = ["Cu", "O", "Pd"]


def symmetry_functions() -> dict[str, list[dict[str, object]]]:
    """G2 for every element, G4/G5 with zeta 0.5 and 0.25 for every element pair (the same list per centre)."""
    functions: list[dict[str, object]] = []
    for element in ELEMENTS:
        functions.append({"type": "G2", "element": element, "eta": 0.05, "offset": 0.0})
        functions.append({"type": "G2", "element": element, "eta": 4.0, "offset": 0.0})
    for i, a in enumerate(ELEMENTS):
        for b in ELEMENTS[i:]:
            functions.append({"type": "G4", "elements": [a, b], "eta": 0.005, "zeta": 0.5, "gamma": 1.0})
            functions.append({"type": "G4", "elements": [a, b], "eta": 0.005, "zeta": 0.5, "gamma": -1.0})
            functions.append({"type": "G4", "elements": [a, b], "eta": 0.3, "zeta": 0.25, "gamma": 0.6})
            functions.append({"type": "G5", "elements": [a, b], "eta": 0.1, "zeta": 0.5, "gamma": -1.0})
    return {element: functions for element in ELEMENTS}


def structures() -> list[Atoms]:
    """A rattled Cu3O2Pd2 cluster and a rattled periodic Cu4O2Pd2 cell (cell vectors > cutoff)."""
    rng = np.random.default_rng(7)
    points: list[np.ndarray] = []
    while len(points) < 7:
        p = rng.uniform(0.0, 3.2, 3)
        if all(np.linalg.norm(p - q) > 1.6 for q in points):
            points.append(p)
    cluster = Atoms("Cu3O2Pd2", positions=points)
    cell = Atoms("Cu4O2Pd2", cell=[[4.4, 0.0, 0.0], [0.3, 4.3, 0.0], [0.2, -0.1, 4.5]], pbc=True)
    cell.set_scaled_positions(rng.uniform(0.0, 1.0, (8, 3)))
    while min(cell.get_all_distances(mic=True)[np.triu_indices(8, 1)]) < 1.5:
        cell.set_scaled_positions(rng.uniform(0.0, 1.0, (8, 3)))
    return [cluster, cell]


DRIVER = r'''
import json, sys
import numpy as np
from ase.io import read
from amp.descriptor.cutoffs import Cosine
from amp.descriptor.gaussian import Gaussian
from amp.utilities import Logger, get_hash, hash_images

cfg = json.load(open(sys.argv[1]))
images = read("images.extxyz", ":")
quiet = Logger(None)
out = {}
for fortran in (True, False):
    d = Gaussian(cutoff=Cosine(cfg["cutoff"]), Gs=cfg["Gs"], elements=cfg["elements"], fortran=fortran,
                 dblabel="ref-%s" % fortran)
    d.calculate_fingerprints(hash_images(images, log=quiet), log=quiet, calculate_derivatives=True)
    for k, atoms in enumerate(images):
        key = get_hash(atoms)
        fps = [list(map(float, v)) for _, v in d.fingerprints[key]]
        primes = [[int(c), int(a), int(l)] + list(map(float, v)) for (a, _, c, _, l), v in d.fingerprintprimes[key].items()]
        out["%s_%d" % ("fortran" if fortran else "python", k)] = {"values": fps, "primes": primes}
json.dump(out, open("amp-out.json", "w"))
'''


def compact(text: str) -> str:
    """Put every innermost list of numbers (a fingerprint or prime row) on one line."""
    return re.sub(r"\[\s*([-0-9.eE+,\s]+?)\s*\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)


def main() -> int:
    venv = Path(os.environ.get("AMP_VENV", "~/.cache/amp-original")).expanduser()
    python = venv / "bin" / "python"
    if not python.is_file():
        print(f"no original Amp at {venv}; see the AMP_SETUP notes")
        return 1
    gs = symmetry_functions()
    with tempfile.TemporaryDirectory(prefix="amp-zeta-") as tmp:
        work = Path(tmp)
        write(work / "images.extxyz", structures())
        images = read(work / "images.extxyz", ":")
        (work / "driver.py").write_text(DRIVER)
        (work / "config.json").write_text(json.dumps({"cutoff": CUTOFF, "Gs": gs, "elements": ELEMENTS}))
        env = dict(os.environ, PYTHONNOUSERSITE="1")
        env.pop("PYTHONPATH", None)
        done = subprocess.run([str(python), "driver.py", "config.json"], cwd=work, env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-3000:])
            return 1
        amp = json.loads((work / "amp-out.json").read_text())
    records = []
    for k, atoms in enumerate(images):
        fortran, python_path = amp[f"fortran_{k}"], amp[f"python_{k}"]
        for key in ("values", "primes"):
            a = np.array(sorted(fortran[key]) if key == "primes" else fortran[key])
            b = np.array(sorted(python_path[key]) if key == "primes" else python_path[key])
            error = float(np.max(np.abs(a - b)) / np.max(np.abs(a)))
            print(f"image {k}: Amp Fortran vs Python path, {key}: max relative difference {error:.1e}")
            if error > 1e-10:
                return 1
        records.append({
            "symbols": atoms.get_chemical_symbols(),
            "positions": atoms.positions.tolist(),
            "cell": atoms.cell.array.tolist(),
            "pbc": atoms.pbc.tolist(),
            "values": fortran["values"],
            "primes": sorted(fortran["primes"]),
        })
    document = {
        "made_by": "tests/data/make_amp_zeta_reference.py (see its docstring): amp-atomistics 1.0.1, "
                   "Fortran path, checked against its Python path",
        "cutoff": {"name": "Cosine", "Rc": CUTOFF},
        "Gs": gs,
        "primes_layout": "rows [i, m, l, dG_i/dx_(m,l) for each feature] (1/Angstrom)",
        "images": records,
    }
    OUTPUT.write_text(compact(json.dumps(document, indent=1)) + "\n")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
