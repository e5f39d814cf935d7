"""amp_core.testing.check_descriptor: built-ins pass it, deliberately broken descriptors fail it."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from ase import Atoms

from amp_core import create_descriptor
from amp_core.data import ImageFingerprints
from amp_core.testing import check_descriptor, default_structures
from amp_plugins.descriptors.gaussian import Gaussian, GaussianParams


def gaussian() -> Gaussian:
    return create_descriptor("gaussian", cutoff=4.5, elements=["Cu", "Pt"])


def test_gaussian_passes_with_default_structures():
    check_descriptor(gaussian())


def test_gaussian_with_a_polynomial_cutoff_passes_on_given_structures():
    d = create_descriptor("gaussian", cutoff={"name": "Polynomial", "Rc": 5.0}, elements=["H", "C", "O"])
    check_descriptor(d, default_structures(["O", "H"]))


def test_none_descriptor_passes():
    check_descriptor(create_descriptor("none"))


def test_default_structures_use_only_the_given_elements():
    structures = default_structures(["Pt"])
    assert len(structures) == 3
    assert all(set(a.get_chemical_symbols()) == {"Pt"} for a in structures)
    assert [a.pbc.tolist() for a in structures] == [[False] * 3, [True] * 3, [True, True, False]]


# ------------------------------------------------------------------ broken descriptors


class Broken(Gaussian):
    """A gaussian descriptor whose output is altered by ``alter(fp, atoms)``."""

    def alter(self, fp: ImageFingerprints, atoms: Atoms) -> ImageFingerprints:
        return fp

    def compute(self, atoms: Atoms, derivatives: bool = False, neighbours: Any = None) -> ImageFingerprints:
        return self.alter(super().compute(atoms, derivatives, neighbours), atoms)


class WrongDerivativeSign(Broken):
    def alter(self, fp, atoms):
        if fp.derivatives is None:
            return fp
        return dataclasses.replace(fp, derivatives=-fp.derivatives)


class MissingPair(Broken):
    def alter(self, fp, atoms):
        if fp.pairs is None:
            return fp
        keep = np.ones(len(fp.pairs), bool)
        keep[np.nonzero(fp.pairs[:, 0] != fp.pairs[:, 1])[0][0]] = False
        return dataclasses.replace(fp, pairs=fp.pairs[keep], derivatives=fp.derivatives[keep])


class UnsortedPairs(Broken):
    def alter(self, fp, atoms):
        if fp.pairs is None:
            return fp
        return dataclasses.replace(fp, pairs=fp.pairs[::-1].copy(), derivatives=fp.derivatives[::-1].copy())


class DependsOnOrigin(Broken):
    def alter(self, fp, atoms):
        values = fp.values.copy()
        values[:, 0] += 1e-3 * atoms.positions[:, 0]
        return dataclasses.replace(fp, values=values)


class DependsOnOrder(Broken):
    def alter(self, fp, atoms):
        values = fp.values.copy()
        values[:, 0] += np.arange(len(atoms))
        return dataclasses.replace(fp, values=values)


class WrongDtype(Broken):
    def alter(self, fp, atoms):
        return dataclasses.replace(fp, values=fp.values.astype(np.float32))


class NotFinite(Broken):
    def alter(self, fp, atoms):
        values = fp.values.copy()
        values[0, 0] = np.nan
        return dataclasses.replace(fp, values=values)


class WrongNumbers(Broken):
    def alter(self, fp, atoms):
        return dataclasses.replace(fp, numbers=fp.numbers[::-1].copy())


class Unpicklable(Gaussian):
    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.hook = lambda x: x


class LossyTodict(Gaussian):
    def todict(self) -> dict[str, Any]:
        document = super().todict()
        document["cutoff"] = {"name": "Cosine", "Rc": document["cutoff"]["Rc"] + 1.0}
        return document


class WrongContractSign(Gaussian):
    def contract(self, atoms, gradient, *, virial=False, neighbours=None):
        result = super().contract(atoms, gradient, virial=virial, neighbours=neighbours)
        return dataclasses.replace(result, forces=-result.forces)


class AsksTwice(Gaussian):
    def contract(self, atoms, gradient, *, virial=False, neighbours=None):
        gradient(np.array([0]), np.zeros((1, self.plan.n_features)))
        return super().contract(atoms, gradient, virial=virial, neighbours=neighbours)


class WrongVirial(Gaussian):
    def contract(self, atoms, gradient, *, virial=False, neighbours=None):
        result = super().contract(atoms, gradient, virial=virial, neighbours=neighbours)
        return result if result.virial is None else dataclasses.replace(result, virial=result.virial.T * 1.01)


class SetsMixedUp(Gaussian):
    def contract(self, atoms, gradient, *, virial=False, neighbours=None, sets=None):
        result = super().contract(atoms, gradient, virial=virial, neighbours=neighbours, sets=sets)
        return result if sets is None else dataclasses.replace(result, forces=result.forces[::-1])


class StaleNeighbours(Gaussian):
    def compute(self, atoms, derivatives=False, neighbours=None):
        if neighbours is not None:  # a descriptor whose kept list disturbs the result
            atoms = atoms.copy()
            atoms.positions[0] += 0.05
        return super().compute(atoms, derivatives, neighbours)


BROKEN = {
    WrongContractSign: "contract\\(\\) forces",
    AsksTwice: "more than once",
    WrongVirial: "contract\\(\\) virial",
    SetsMixedUp: "contract\\(sets=2\\) forces of set 0",
    StaleNeighbours: "positions 0.2 A away",
    WrongDerivativeSign: "finite differences",
    MissingPair: "finite differences",
    UnsortedPairs: "sorted by i then m",
    DependsOnOrigin: "rigid translation",
    DependsOnOrder: "permuting the atoms",
    WrongDtype: "dtype float32, expected float64",
    NotFinite: "NaN or infinity",
    WrongNumbers: "atom order",
    Unpicklable: "does not pickle",
    LossyTodict: "round trip changed params",
}


@pytest.mark.parametrize("cls", list(BROKEN), ids=lambda c: c.__name__)
def test_broken_descriptors_fail_with_a_clear_message(cls):
    broken = cls(GaussianParams(cutoff=4.5, elements=("Cu", "Pt")))
    with pytest.raises(AssertionError, match=BROKEN[cls]) as info:
        check_descriptor(broken)
    assert "descriptor 'gaussian'" in str(info.value)


def test_not_a_descriptor_fails():
    with pytest.raises(AssertionError, match="Descriptor protocol; missing"):
        check_descriptor(object())


def test_empty_structure_list_fails():
    with pytest.raises(AssertionError, match="no structures"):
        check_descriptor(gaussian(), [])


def test_example_third_party_descriptor_passes():
    pytest.importorskip("amp_coordination", reason="install examples/amp-coordination (README test command)")
    check_descriptor(create_descriptor("coordination", elements=["Cu", "Pt"], radii=[3.0, 4.5]))


def test_compiled_gaussian_passes():
    from amp_plugins.backends.fortran import probe

    if probe() is not None:
        pytest.skip(f"no Fortran build: {probe()}")
    check_descriptor(create_descriptor("gaussian", elements=["Cu", "Pt"]).compiled())
