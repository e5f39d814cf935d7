"""Angular symmetry functions with zeta < 1 (Amp accepts any zeta > 0).

References: hand-computed values, the original Amp's numbers (``data/amp_zeta_half.json``,
made by ``data/make_amp_zeta_reference.py``), central finite differences, and numpy
against the compiled kernel. Where 1 + gamma cos(theta) = 0 (collinear atoms) a zeta < 1
function has no finite derivative: asking for derivatives there is a DataError naming the atoms.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from amp_core import ConfigError, DataError, Potential, create_descriptor, create_model, evaluate_loss
from amp_plugins.descriptors.gaussian import Gaussian

DATA = Path(__file__).parent / "data"


def kernels(descriptor: Gaussian) -> list[tuple[str, Gaussian]]:
    """The numpy descriptor and, when built here, its compiled twin."""
    out = [("numpy", descriptor)]
    try:
        out.append(("compiled", descriptor.compiled()))
    except Exception:  # noqa: BLE001 - no compiled kernel here: numpy only
        pass
    return out


def g4(kind: str, eta: float, zeta: float, gamma: float, pair=("H", "H")) -> dict:
    return {"type": kind, "elements": list(pair), "eta": eta, "zeta": zeta, "gamma": gamma}


def cosine(r: float, rc: float) -> float:
    return 0.5 * (math.cos(math.pi * r / rc) + 1.0)


@pytest.mark.parametrize("zeta", [0, -0.5])
def test_zeta_must_be_positive(zeta: float) -> None:
    with pytest.raises(ConfigError, match="zeta must be positive"):
        create_descriptor("gaussian", Gs={"H": [g4("G4", 0.1, zeta, 1.0)]})


def test_zeta_below_one_by_hand() -> None:
    """An isosceles triangle: each centre sees one pair; G4 and G5 for zeta 0.5 and 0.25."""
    rc, eta = 5.0, 0.4
    positions = np.array([[0.0, 0.0, 0.0], [1.7, 0.0, 0.0], [0.4, 1.5, 0.2]])
    functions = [
        g4("G4", eta, 0.5, 1.0), g4("G4", eta, 0.5, -1.0), g4("G5", eta, 0.25, 0.6), g4("G5", eta, 0.5, -1.0),
    ]  # fmt: skip
    descriptor = create_descriptor("gaussian", cutoff=rc, Gs={"H": functions})
    atoms = Atoms("H3", positions=positions)
    expected = []
    for i in range(3):
        j, k = [n for n in range(3) if n != i]
        a, b = positions[j] - positions[i], positions[k] - positions[i]
        ra, rb, rjk = np.linalg.norm(a), np.linalg.norm(b), np.linalg.norm(b - a)
        cos = a @ b / (ra * rb)
        row = []
        for f in functions:
            angular = 2.0 ** (1.0 - f["zeta"]) * (1.0 + f["gamma"] * cos) ** f["zeta"]
            if f["type"] == "G4":
                radial = math.exp(-eta * (ra**2 + rb**2 + rjk**2) / rc**2) * cosine(rjk, rc)
            else:
                radial = math.exp(-eta * (ra**2 + rb**2) / rc**2)
            row.append(angular * radial * cosine(ra, rc) * cosine(rb, rc))
        expected.append(row)
    for name, d in kernels(descriptor):
        np.testing.assert_allclose(d.compute(atoms).values, expected, rtol=1e-13, err_msg=name)


def amp_reference() -> tuple[dict, list[tuple[Atoms, np.ndarray, np.ndarray]]]:
    document = json.loads((DATA / "amp_zeta_half.json").read_text())
    images = []
    for record in document["images"]:
        atoms = Atoms(record["symbols"], positions=record["positions"], cell=record["cell"], pbc=record["pbc"])
        n, values = len(atoms), np.array(record["values"])
        dense = np.zeros((n, n, 3, values.shape[1]))
        for row in record["primes"]:
            i, m, direction = (int(x) for x in row[:3])
            dense[i, m, direction] = row[3:]
        images.append((atoms, values, dense))
    return document, images


def test_values_and_derivatives_match_original_amp() -> None:
    """zeta 0.5 and 0.25 (G4, G5; gamma 1, -1, 0.6) on Cu/O/Pd: Amp 1.0.1's fingerprints and primes."""
    document, images = amp_reference()
    descriptor = create_descriptor("gaussian", cutoff=document["cutoff"], Gs=document["Gs"])
    for atoms, values, dense in images:
        for name, d in kernels(descriptor):
            fp = d.compute(atoms, derivatives=True)
            np.testing.assert_allclose(fp.values, values, rtol=1e-10, atol=1e-13, err_msg=name)
            scale = np.abs(dense).max()
            np.testing.assert_allclose(fp.dense_derivatives(), dense, rtol=0, atol=1e-10 * scale, err_msg=name)


def rattled_cluster(seed: int) -> Atoms:
    rng = np.random.default_rng(seed)
    points: list[np.ndarray] = []
    while len(points) < 6:
        p = rng.uniform(0, 3.4, 3)
        if all(np.linalg.norm(p - q) > 1.2 for q in points):
            points.append(p)
    return Atoms("CuOPdCuOPd", positions=points)


def fd_derivatives(descriptor: Gaussian, atoms: Atoms, h: float = 1e-5) -> np.ndarray:
    n = len(atoms)
    out = np.zeros((n, n, 3, descriptor.compute(atoms).values.shape[1]))
    for m in range(n):
        for axis in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[m, axis] += h
            minus.positions[m, axis] -= h
            out[:, m, axis] = (descriptor.compute(plus).values - descriptor.compute(minus).values) / (2 * h)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_derivatives_match_finite_differences_and_kernels_agree(seed: int) -> None:
    document, _ = amp_reference()
    descriptor = create_descriptor("gaussian", cutoff=document["cutoff"], Gs=document["Gs"])
    atoms = rattled_cluster(seed)
    ours = kernels(descriptor)
    first = ours[0][1].compute(atoms, derivatives=True)
    expected = fd_derivatives(descriptor, atoms)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(first.dense_derivatives(), expected, rtol=1e-5, atol=1e-7 * scale)
    for name, d in ours[1:]:
        fp = d.compute(atoms, derivatives=True)
        np.testing.assert_allclose(fp.values, first.values, rtol=1e-10, atol=1e-14, err_msg=name)
        np.testing.assert_allclose(
            fp.dense_derivatives(), first.dense_derivatives(), rtol=1e-10, atol=1e-12 * scale, err_msg=name
        )


LINE_GS = {"H": [g4("G4", 0.3, 0.5, 1.0), g4("G5", 0.3, 0.5, -1.0)]}


@pytest.mark.parametrize(
    "positions, gs, message",
    [
        # centre 0 between atoms 1 and 2: cos = -1, gamma = +1
        ([[0, 0, 0], [1.1, 0, 0], [-1.3, 0, 0]], LINE_GS, "atoms 1 and 2 lie on one line on opposite sides of centre atom 0"),
        # atoms 1 and 2 on the same side of atom 0 (G5, gamma = -1): cos = +1; centre 0 is checked first
        ([[0, 0, 0], [1.1, 0, 0], [2.5, 0, 0]], {"H": LINE_GS["H"][1:]}, "atoms 1 and 2 lie on one line on the same side of centre atom 0"),
    ],
)
def test_collinear_triplet_with_derivatives_names_the_atoms(positions: list, gs: dict, message: str) -> None:
    descriptor = create_descriptor("gaussian", cutoff=5.0, Gs=gs)
    atoms = Atoms("H3", positions=positions)
    for name, d in kernels(descriptor):
        values = d.compute(atoms).values  # values alone are defined (Amp's numbers)
        assert np.all(np.isfinite(values)), name
        with pytest.raises(DataError, match=message) as info:
            d.compute(atoms, derivatives=True)
        assert "zeta = 0.5 < 1" in str(info.value) and "rattle" in str(info.value), name
        with pytest.raises(DataError, match=message) as info:  # the one-pass contraction (MD force calls)
            d.contract(atoms, lambda rows, values: np.ones_like(values))
        assert "zeta = 0.5 < 1" in str(info.value), name


def test_collinear_periodic_images_name_the_shift() -> None:
    """A cell vector shorter than the cutoff: an atom's own images at +a and -a are collinear with it."""
    atoms = Atoms("H2", positions=[[0, 0, 0], [0.9, 1.1, 1.4]], cell=[2.2, 6.0, 6.0], pbc=True)
    descriptor = create_descriptor("gaussian", cutoff=3.0, Gs={"H": [g4("G5", 0.3, 0.5, 1.0)]})
    for name, d in kernels(descriptor):
        with pytest.raises(DataError, match=r"its periodic image shifted by \(-?1, 0, 0\) cell vectors"):
            d.compute(atoms, derivatives=True)
        d.compute(atoms)  # fine without derivatives
        assert name


def test_collinear_triplet_in_a_data_set_names_the_image(tmp_path: Path) -> None:
    """Through the pipeline the error also names the image (file and index)."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    good = Atoms("H3", positions=[[0, 0, 0], [1.1, 0.1, 0], [0.2, 1.3, 0.1]])
    line = Atoms("H3", positions=[[0, 0, 0], [1.1, 0, 0], [-1.3, 0, 0]])
    for atoms in (good, line):
        atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((3, 3)))
    path = tmp_path / "line.xyz"
    write(path, [good, line])
    potential = Potential(create_descriptor("gaussian", cutoff=5.0, Gs=LINE_GS),
                          create_model("neuralnetwork", hiddenlayers=(2,)))
    with pytest.raises(DataError, match=r"line\.xyz.*1.*atoms 1 and 2 lie on one line"):
        evaluate_loss(str(path), potential, backend="serial", force_coefficient=0.04)
    result = evaluate_loss(str(path), potential, backend="serial", force_coefficient=None)
    assert np.isfinite(result.loss)
