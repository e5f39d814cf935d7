"""Make ``zernike_amp_reference.json``: Zernike fingerprints and derivatives from the original Amp.

Run with the original Amp's interpreter (amp-atomistics 1.0.1 in its own venv, see
/work/shared/peers/AMP_SETUP.md), never from amp-core's environment:

    ~/.cache/amp-original/bin/python tests/data/make_zernike_reference.py tests/data/zernike_amp_reference.json

It builds a few small structures (non-periodic, fully and partly periodic; Cu and Pt),
runs ``amp.descriptor.zernike.Zernike`` in a temporary folder, and writes the structures,
the parameters (in amp-core's format), Amp's values and Amp's derivatives from its
Fortran path (the default; ``derivatives``) and from its Python path (``fortran=False``;
``derivatives_python``). Values of the two paths agree to ~1e-15 relative. It also checks
both sets of derivatives against central finite differences of Amp's own values (step
1e-5 Angstrom) and records the largest difference relative to max(1, |FD|) per case under
``amp_fd_max_error`` (Fortran path) and ``amp_python_fd_max_error``. With the
Polynomial cutoff Amp's Fortran derivatives are wrong (errors of order 0.1-1) while its
Python path agrees with finite differences.

Amp's derivative keys (m, sym_m, i, sym_i, l) mean d fingerprint[i] / d position[m][l];
they are stored as {"i", "m", "d": (3, F)}. Amp leaves out the pair (m, i) when every
image of m near i has a cell offset with no zero component (its ``noffset.all() == 0``
test), so such pairs can be missing from the file.

Amp 1.0.1's Zernike cannot run with a Polynomial cutoff as shipped: it calls the cutoff
as ``cutoff_fxn(r, gamma)`` but ``Polynomial.__call__``/``prime`` take only ``r``
(TypeError). This script wraps both to accept and check that extra ``gamma`` (it must
equal the cutoff's own), which changes no number.
"""

import json
import os
import sys
import tempfile

import numpy as np
from amp.descriptor.cutoffs import Cosine, Polynomial
from amp.descriptor.zernike import Zernike
from amp.utilities import hash_images
from ase import Atoms
from ase.build import bulk, fcc111


def _accept_gamma(method):
    def wrapped(self, r, gamma=None):
        assert gamma is None or gamma == self.gamma, (gamma, self.gamma)
        return method(self, r)

    return wrapped


Polynomial.__call__ = _accept_gamma(Polynomial.__call__)
Polynomial.prime = _accept_gamma(Polynomial.prime)


def structures():
    rng = np.random.RandomState(7)
    cluster = Atoms(
        "Cu3Pt2", positions=[[0, 0, 0], [2.4, 0.3, 0.1], [0.2, 2.5, -0.3], [1.4, 1.2, 1.9], [-1.1, 1.0, -1.6]]
    )
    cluster.positions += rng.uniform(-0.1, 0.1, (5, 3))
    cube = bulk("Cu", "fcc", a=3.61, cubic=True)
    cube[1].symbol = "Pt"
    cube.positions += rng.uniform(-0.08, 0.08, (4, 3))
    slab = fcc111("Cu", size=(2, 2, 2), vacuum=4.0)
    slab[5].symbol = "Pt"
    slab.positions += rng.uniform(-0.08, 0.08, (len(slab), 3))
    weights = {"Cu": {"Cu": 1.0, "Pt": 2.5}, "Pt": {"Cu": 0.7, "Pt": 3.0}}
    return [
        ("cluster_cosine", cluster, {"name": "Cosine", "Rc": 4.0}, 5, None),
        ("cluster_polynomial", cluster, {"name": "Polynomial", "Rc": 4.5, "gamma": 4.0}, 4, weights),
        ("bulk_polynomial", cube, {"name": "Polynomial", "Rc": 4.0, "gamma": 2.0}, 4, weights),
        ("bulk_cosine", cube, {"name": "Cosine", "Rc": 3.8}, 5, None),
        ("slab_cosine", slab, {"name": "Cosine", "Rc": 4.5}, 3, None),
    ]


def amp_run(atoms, cutoff, nmax, gs, derivatives, fortran=True):
    cut = (
        Cosine(cutoff["Rc"])
        if cutoff["name"] == "Cosine"
        else Polynomial(cutoff["Rc"], gamma=cutoff["gamma"])
    )
    here = os.getcwd()
    os.chdir(tempfile.mkdtemp())
    try:
        z = Zernike(cutoff=cut, Gs=gs, nmax=nmax, elements=["Cu", "Pt"], dblabel="ref", fortran=fortran)
        images = hash_images([atoms])
        z.calculate_fingerprints(images, calculate_derivatives=derivatives)
        key = list(images)[0]
        values = np.array([fp for _, fp in z.fingerprints[key]])
        primes = dict(z.fingerprintprimes[key]) if derivatives else None
        return values, primes, z.parameters.Gs
    finally:
        os.chdir(here)


def blocks_of(primes, n_features):
    """Amp's {(m, sym, i, sym, l): list} as {(i, m): (3, F) array}."""
    blocks = {}
    for (m, _, i, _, l), d in primes.items():
        blocks.setdefault((int(i), int(m)), np.zeros((3, n_features)))[l] = d
    return blocks


def main(out):
    cases = []
    for name, atoms, cutoff, nmax, gs in structures():
        values, primes, used_gs = amp_run(atoms, cutoff, nmax, gs, True)
        python_values, python_primes, _ = amp_run(atoms, cutoff, nmax, gs, True, fortran=False)
        assert np.allclose(python_values, values, rtol=1e-13, atol=1e-13 * np.abs(values).max())
        blocks = blocks_of(primes, values.shape[1])
        python_blocks = blocks_of(python_primes, values.shape[1])
        worst, python_worst, h = 0.0, 0.0, 1e-5
        for (i, m), d in blocks.items():
            for l in range(3):
                plus, minus = atoms.copy(), atoms.copy()
                plus.positions[m, l] += h
                minus.positions[m, l] -= h
                fd = (
                    amp_run(plus, cutoff, nmax, gs, False)[0][i]
                    - amp_run(minus, cutoff, nmax, gs, False)[0][i]
                ) / (2 * h)
                scale = max(1.0, np.abs(fd).max())
                worst = max(worst, float(np.abs(fd - d[l]).max() / scale))
                python_worst = max(python_worst, float(np.abs(fd - python_blocks[(i, m)][l]).max() / scale))
        cases.append(
            {
                "name": name,
                "numbers": atoms.numbers.tolist(),
                "positions": atoms.positions.tolist(),
                "cell": atoms.cell.array.tolist(),
                "pbc": atoms.pbc.tolist(),
                "params": {"cutoff": cutoff, "nmax": nmax, "Gs": used_gs, "elements": ["Cu", "Pt"]},
                "values": values.tolist(),
                "derivatives": [{"i": i, "m": m, "d": d.tolist()} for (i, m), d in sorted(blocks.items())],
                "derivatives_python": [
                    {"i": i, "m": m, "d": d.tolist()} for (i, m), d in sorted(python_blocks.items())
                ],
                "amp_fd_max_error": worst,
                "amp_python_fd_max_error": python_worst,
            }
        )
        print(
            name,
            values.shape,
            len(blocks),
            "Amp derivatives vs FD, Fortran / Python path:",
            worst,
            python_worst,
        )
    made_by = "tests/data/make_zernike_reference.py with amp-atomistics 1.0.1"
    with open(out, "w") as handle:
        json.dump({"made_by": made_by, "cases": cases}, handle)


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]))
