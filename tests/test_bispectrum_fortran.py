"""The compiled bispectrum kernel against the numpy kernel (1e-10 relative) and Amp's values.

The kernel is built here with ``-fcheck=all`` (bounds-checked) into a temporary folder
that ``AMP_KERNEL_DIR`` points at (``AMP_KERNEL_GENERIC=1``, so it is loaded even where an
installed AVX2 build would be preferred); the descriptor under test is the twin that
``Bispectrum.compiled()`` returns.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from amp_core import create_descriptor
from amp_core.errors import DataError

SOURCE = (
    Path(__file__).resolve().parents[1] / "plugins" / "descriptors" / "bispectrum" / "bispectrum_kernels.f90"
)
REFERENCE = Path(__file__).parent / "data" / "bispectrum_amp.json"
WEIGHTS = {"Cu": {"Cu": 1.0, "Pt": 2.5}, "Pt": {"Cu": 0.7, "Pt": -1.3}}

pytestmark = pytest.mark.skipif(
    shutil.which("gfortran") is None,
    reason="gfortran is not installed: the compiled bispectrum kernel cannot be built (apt-get install gfortran)",
)


@pytest.fixture()
def checked(bounds_checked):
    """Load the bounds-checked build for the test; afterwards prove it was the one used."""
    with bounds_checked.loaded(bounds_checked(SOURCE), "amp_plugins.descriptors.bispectrum", "bispectrum_kernels"):
        yield


def structures() -> list[Atoms]:
    rng = np.random.default_rng(3)
    cluster = Atoms("CuPtCuCuPtCu", positions=rng.uniform(0, 3.5, (6, 3)))
    cluster.positions[1] += [4.0, 0, 0]  # spread them: no overlaps
    crystal = bulk("Cu", "fcc", a=3.3) * (2, 1, 1)  # triclinic, many images of each atom
    crystal.symbols[1] = "Pt"
    crystal.rattle(0.1, seed=4)
    slab = bulk("Cu", "fcc", a=3.6, cubic=True)
    slab.symbols[::3] = "Pt"
    slab.rattle(0.1, seed=5)
    slab.pbc = (True, True, False)
    return [cluster, crystal, slab, Atoms("Cu", positions=[[0, 0, 0]])]


def relative(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference per feature column, relative to that column's largest magnitude."""
    axis = tuple(range(a.ndim - 1))
    scale = np.maximum(np.abs(b).max(axis=axis), 1e-300)
    return float((np.abs(a - b).max(axis=axis) / scale).max()) if a.size else 0.0


@pytest.mark.parametrize(
    "cutoff", [3.5, {"name": "Polynomial", "Rc": 3.5, "gamma": 3}], ids=["cosine", "poly3"]
)
@pytest.mark.parametrize("jmax", [0, 1.5, 3])
def test_compiled_equals_numpy_to_1e_10(checked, cutoff, jmax):
    numpy_kernel = create_descriptor("bispectrum", cutoff=cutoff, jmax=jmax, Gs=WEIGHTS)
    compiled = numpy_kernel.compiled()
    assert compiled.kernel == "fortran" and numpy_kernel.kernel == "numpy"
    for atoms in structures():
        for derivatives in (False, True):
            a = numpy_kernel.compute(atoms, derivatives=derivatives)
            b = compiled.compute(atoms, derivatives=derivatives)
            assert relative(b.values, a.values) <= 1e-10
            if derivatives:
                assert np.array_equal(a.pairs, b.pairs)
                assert relative(b.derivatives, a.derivatives) <= 1e-10
            else:
                assert b.pairs is None and b.derivatives is None


def test_compiled_values_equal_amps(checked):
    for case in json.loads(REFERENCE.read_text())["cases"]:
        atoms = Atoms(case["symbols"], positions=case["positions"], cell=case["cell"], pbc=case["pbc"])
        p = case["params"]
        d = create_descriptor(
            "bispectrum", cutoff=p["cutoff"], jmax=p["jmax"], Gs=p["Gs"], elements=p["elements"]
        )
        expected = np.array([fp for _, fp in case["amp"]])
        values = d.compiled().compute(atoms).values
        bound = 1e-10 * np.abs(expected) + 1e-13 * np.abs(expected).max(axis=1, keepdims=True)
        assert np.all(np.abs(values - expected) <= bound)


def test_compiled_twin_pickles_and_keeps_its_kernel(checked):
    twin = create_descriptor("bispectrum", cutoff=3.0, jmax=1).compiled()
    again = pickle.loads(pickle.dumps(twin))
    assert again.kernel == "fortran" and again == twin
    atoms = structures()[1]
    assert np.array_equal(again.compute(atoms, True).derivatives, twin.compute(atoms, True).derivatives)


def test_the_kernel_refuses_inconsistent_input(checked):
    from amp_plugins.descriptors.bispectrum._fortran import fingerprint
    from amp_plugins.descriptors.bispectrum._plan import make_plan
    from amp_plugins.descriptors.gaussian._neighbors import Neighbours, derivative_blocks, neighbour_list
    from amp_plugins.descriptors.gaussian._params import Cutoff

    atoms = structures()[1]
    nb = neighbour_list(atoms, 3.0, half_search=True)
    weights = np.ones(len(nb.centre))
    plan, cutoff = make_plan(2), Cutoff.parse(3.0)
    bad_starts = Neighbours(
        nb.centre, nb.neighbour, nb.shift, nb.vectors, nb.distances, nb.starts[::-1].copy()
    )
    with pytest.raises(DataError, match="neighbour offsets are not ascending"):
        fingerprint(plan, cutoff, weights, bad_starts, None)
    zero = nb.vectors.copy()
    zero[3] = 0.0
    overlapping = Neighbours(nb.centre, nb.neighbour, nb.shift, zero, nb.distances, nb.starts)
    with pytest.raises(DataError, match="neighbour entry 3 is at zero distance"):
        fingerprint(plan, cutoff, weights, overlapping, None)
    blocks = derivative_blocks(nb)
    broken = type(blocks)(blocks.pairs[:1], blocks.entry, blocks.own, blocks.starts)
    with pytest.raises(DataError, match="derivative block index is out of range"):
        fingerprint(plan, cutoff, weights, nb, broken)
