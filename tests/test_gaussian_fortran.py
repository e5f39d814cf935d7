"""The compiled Gaussian kernel against an independent brute-force reference.

The kernel is built here with ``-fcheck=all`` (bounds-checked) into a temporary folder
that ``AMP_KERNEL_DIR`` points at (``AMP_KERNEL_GENERIC=1``, so that it is loaded even
where an installed AVX2 build would be preferred), and every test also proves it reads
and writes no array out of bounds. The descriptor under test is the twin that
``Gaussian.compiled()`` returns.
"""

from __future__ import annotations

import itertools
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule

from amp_core import create_descriptor
from amp_core.errors import ConfigError, DataError
from amp_plugins.descriptors.gaussian import Gaussian, GaussianParams, make_default_symmetry_functions

SOURCE = Path(__file__).resolve().parents[1] / "plugins" / "descriptors" / "gaussian" / "gaussian_kernels.f90"

pytestmark = pytest.mark.skipif(
    shutil.which("gfortran") is None,
    reason="gfortran is not installed: the compiled Gaussian kernel cannot be built (apt-get install gfortran)",
)


@pytest.fixture()
def compiled(bounds_checked):
    """Return ``make(cutoff, Gs) -> compiled gaussian descriptor``, with the bounds-checked build loaded."""

    def make(cutoff: dict, Gs: dict) -> Gaussian:
        return Gaussian(GaussianParams(cutoff=cutoff, Gs=Gs)).compiled()

    with bounds_checked.loaded(bounds_checked(SOURCE), "amp_plugins.descriptors.gaussian", "gaussian_kernels"):
        yield make


# ----------------------------------------------------------------------------- reference


def cutoff_fn(cutoff: dict, r: np.ndarray) -> np.ndarray:
    """Cosine or Polynomial cutoff, zero at and beyond Rc."""
    rc = cutoff["Rc"]
    if cutoff["name"] == "Cosine":
        f = 0.5 * (np.cos(np.pi * r / rc) + 1.0)
    else:
        g, x = cutoff.get("gamma", 4.0), r / rc
        f = 1.0 + g * x ** (g + 1) - (g + 1) * x**g
    return np.where(r < rc, f, 0.0)


def reference_neighbours(atoms: Atoms, rc: float) -> list[list[tuple[int, np.ndarray]]]:
    """Loop over every atom and every periodic translation; keep 0 < r < rc."""
    cell, pbc, pos = atoms.cell.complete(), atoms.pbc, atoms.positions
    reach = [int(np.ceil(rc * np.linalg.norm(b))) + 1 if p else 0 for b, p in zip(np.linalg.inv(cell).T, pbc)]
    shifts = [np.array(n) @ cell for n in itertools.product(*(range(-m, m + 1) for m in reach))]
    out = []
    for i in range(len(atoms)):
        found = []
        for j in range(len(atoms)):
            for shift in shifts:
                d = pos[j] + shift - pos[i]
                if 0.0 < np.linalg.norm(d) < rc:
                    found.append((j, d))
        out.append(found)
    return out


def reference_values(atoms: Atoms, cutoff: dict, Gs: dict) -> list[np.ndarray]:
    """Straightforward per-atom formulas (Amp's G2, G4, G5) over explicit neighbour images."""
    rc, symbols = cutoff["Rc"], atoms.get_chemical_symbols()
    result = []
    for i, shell in enumerate(reference_neighbours(atoms, rc)):
        els = np.array([symbols[j] for j, _ in shell])
        vec = np.array([d for _, d in shell]).reshape(-1, 3)
        r = np.linalg.norm(vec, axis=1)
        fc = cutoff_fn(cutoff, r)
        j, k = np.triu_indices(len(shell), 1)
        rjk = np.linalg.norm(vec[k] - vec[j], axis=1)
        cos = np.clip(np.einsum("pa,pa->p", vec[j], vec[k]) / (r[j] * r[k]), -1.0, 1.0)
        row = []
        for g in Gs[symbols[i]]:
            if g["type"] == "G2":
                mask = els == g["element"]
                term = np.exp(-g["eta"] * (r[mask] - g.get("offset", 0.0)) ** 2 / rc**2) * fc[mask]
                row.append(term.sum())
                continue
            want = sorted(g["elements"])
            mask = np.array([sorted([a, b]) == want for a, b in zip(els[j], els[k])], dtype=bool)
            ang = (1.0 + g["gamma"] * cos) ** g["zeta"]
            if g["type"] == "G4":
                term = ang * np.exp(-g["eta"] * (r[j] ** 2 + r[k] ** 2 + rjk**2) / rc**2)
                term = term * fc[j] * fc[k] * cutoff_fn(cutoff, rjk)
            else:
                term = ang * np.exp(-g["eta"] * (r[j] ** 2 + r[k] ** 2) / rc**2) * fc[j] * fc[k]
            row.append(2.0 ** (1.0 - g["zeta"]) * term[mask].sum() if len(term) else 0.0)
        result.append(np.array(row))
    return result


def finite_differences(values_of, atoms: Atoms, h: float = 1e-5) -> np.ndarray:
    """Dense (n, n, 3, F) central differences d values[i] / d positions[m] of values_of(atoms)."""
    n = len(atoms)
    out = None
    for m, axis in itertools.product(range(n), range(3)):
        moved = [atoms.copy(), atoms.copy()]
        moved[0].positions[m, axis] += h
        moved[1].positions[m, axis] -= h
        diff = (values_of(moved[0]) - values_of(moved[1])) / (2 * h)
        if out is None:
            out = np.zeros((n, n, 3, diff.shape[1]))
        out[:, m, axis] = diff
    return out


def padded(rows: list[np.ndarray], width: int) -> np.ndarray:
    """Stack per-atom rows into (n, width), zero-padded."""
    out = np.zeros((len(rows), width))
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


# ----------------------------------------------------------------------------- structures


def mixed_gs(elements: list[str]) -> dict:
    """G2 (with offsets), G4 and G5 (integer and non-integer zeta) for every element."""
    gs = []
    for e in elements:
        gs += [
            {"type": "G2", "element": e, "eta": 0.05},
            {"type": "G2", "element": e, "eta": 4.0, "offset": 1.2},
        ]
    for a, b in itertools.combinations_with_replacement(sorted(elements), 2):
        gs += [
            {"type": "G4", "elements": [a, b], "eta": 0.005, "zeta": 1.0, "gamma": -1.0},
            {"type": "G4", "elements": [b, a], "eta": 0.3, "zeta": 2.5, "gamma": 1.0},
            {"type": "G5", "elements": [a, b], "eta": 0.1, "zeta": 4.0, "gamma": -1.0},
            {"type": "G5", "elements": [a, b], "eta": 0.1, "zeta": 1.5, "gamma": 1.0},
        ]
    return {e: gs[: len(gs) - 2 * k] for k, e in enumerate(elements)}  # different lengths per element


def structures() -> dict[str, tuple[Atoms, dict]]:
    """Small cells covering molecules, bulk, slabs and self-images, with both cutoffs."""
    mol = molecule("CH3CH2OH")
    mol.rattle(0.02, seed=1)
    cu_pt = bulk("Cu", "fcc", a=3.7) * (2, 1, 1)
    cu_pt.symbols[1] = "Pt"
    cu_pt.rattle(0.05, seed=2)
    slab = fcc111("Cu", (2, 2, 2), vacuum=4.0)
    slab.symbols[[0, 5]] = "Pt"
    slab.pbc = (True, True, False)
    slab.rattle(0.05, seed=3)
    tiny = Atoms("CuPt", scaled_positions=[(0, 0, 0), (0.45, 0.52, 0.48)], cell=[1.8, 1.8, 1.8], pbc=True)
    tiny.rattle(0.03, seed=4)
    return {
        "molecule": (mol, {"name": "Cosine", "Rc": 3.0}),
        "bulk": (cu_pt, {"name": "Polynomial", "Rc": 4.2, "gamma": 4.0}),
        "slab": (slab, {"name": "Cosine", "Rc": 4.0}),
        "tiny": (tiny, {"name": "Polynomial", "Rc": 2.9, "gamma": 3.5}),
    }


CASES = sorted(structures())


def wide_gs(elements: list[str]) -> dict:
    """mixed_gs's G2, and G4 and G5 groups of 20 and 10 functions (integer and non-integer zeta, two etas):
    groups wider than the kernel's fold_min (8), so every routine takes the folded routine's angular values."""
    gs = mixed_gs(elements)[elements[0]][: 2 * len(elements)]
    for a, b in itertools.combinations_with_replacement(sorted(elements), 2):
        for eta, zeta, gamma in itertools.product((0.005, 0.3), (1.0, 2.0, 2.5, 4.0, 16.0), (1.0, -1.0)):
            gs.append({"type": "G4", "elements": [a, b], "eta": eta, "zeta": zeta, "gamma": gamma})
        for zeta, gamma in itertools.product((1.0, 1.5, 3.0, 4.0, 6.0), (1.0, -1.0)):
            gs.append({"type": "G5", "elements": [b, a], "eta": 0.1, "zeta": zeta, "gamma": gamma})
    return {e: gs[: len(gs) - 3 * k] for k, e in enumerate(elements)}  # different lengths per element


def case(name: str) -> tuple[Atoms, dict, dict]:
    atoms, cutoff = structures()[name]
    return atoms, cutoff, mixed_gs(sorted(set(atoms.get_chemical_symbols())))


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", CASES)
def test_values_match_brute_force_reference(compiled, name: str) -> None:
    atoms, cutoff, gs = case(name)
    fp = compiled(cutoff, gs).compute(atoms)
    reference = reference_values(atoms, cutoff, gs)
    assert fp.values.shape == (len(atoms), max(len(v) for v in gs.values()))
    np.testing.assert_array_equal(fp.lengths, [len(r) for r in reference])
    np.testing.assert_allclose(fp.values, padded(reference, fp.values.shape[1]), rtol=1e-12, atol=1e-14)
    assert fp.pairs is None and fp.derivatives is None


@pytest.mark.parametrize("name", CASES)
def test_derivatives_match_reference_finite_differences(compiled, name: str) -> None:
    atoms, cutoff, gs = case(name)
    fp = compiled(cutoff, gs).compute(atoms, derivatives=True)
    width = fp.values.shape[1]
    expected = finite_differences(lambda a: padded(reference_values(a, cutoff, gs), width), atoms)
    np.testing.assert_allclose(fp.dense_derivatives(), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("width", ["narrow", "wide"])
@pytest.mark.parametrize("name", CASES)
def test_derivatives_match_own_finite_differences(compiled, name: str, width: str) -> None:
    atoms, cutoff, gs = case(name)
    if width == "wide":  # values from the folded routine, derivatives from the per-feature one
        gs = wide_gs(sorted(gs))
    descriptor = compiled(cutoff, gs)
    fp = descriptor.compute(atoms, derivatives=True)
    np.testing.assert_allclose(fp.values, descriptor.compute(atoms).values, rtol=0, atol=0)
    expected = finite_differences(lambda a: descriptor.compute(a).values, atoms)
    np.testing.assert_allclose(fp.dense_derivatives(), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", CASES)
def test_pairs_are_centre_plus_distinct_neighbours_sorted(compiled, name: str) -> None:
    atoms, cutoff, gs = case(name)
    fp = compiled(cutoff, gs).compute(atoms, derivatives=True)
    expected = sorted(
        {(i, i) for i in range(len(atoms))}
        | {(i, j) for i, shell in enumerate(reference_neighbours(atoms, cutoff["Rc"])) for j, _ in shell}
    )
    assert fp.pairs.dtype == np.int64
    assert [tuple(p) for p in fp.pairs.tolist()] == expected
    assert fp.derivatives.shape == (len(expected), 3, fp.values.shape[1])


def test_hand_computed_dimer(compiled) -> None:
    """Two atoms 2 A apart, Rc 4: G2 = exp(-eta 4 / 16) * 0.5 (cos(pi / 2) + 1); no angular pairs."""
    atoms = Atoms("Cu2", positions=[(0, 0, 0), (0, 0, 2.0)])
    gs = {
        "Cu": [
            {"type": "G2", "element": "Cu", "eta": 2.0},
            {"type": "G4", "elements": ["Cu", "Cu"], "eta": 1.0, "zeta": 1.0, "gamma": 1.0},
        ]
    }
    fp = compiled({"name": "Cosine", "Rc": 4.0}, gs).compute(atoms, derivatives=True)
    g2 = np.exp(-2.0 * 4 / 16) * 0.5
    np.testing.assert_allclose(fp.values, [[g2, 0.0], [g2, 0.0]], rtol=1e-14)
    # d G2(atom 0) / d z(atom 1) = exp(..) (dfc/dr - 2 eta r / Rc^2 fc)
    slope = np.exp(-0.5) * (-0.5 * np.pi / 4.0 * 1.0 - 2 * 2.0 * 2.0 / 16 * 0.5)
    np.testing.assert_allclose(fp.dense_derivatives()[0, 1, :, 0], [0, 0, slope], rtol=1e-13, atol=1e-15)


def test_amp_default_set_matches_reference_on_bulk(compiled) -> None:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.symbols[::3] = "Pt"
    atoms.rattle(0.05, seed=5)
    gs, cutoff = make_default_symmetry_functions(["Cu", "Pt"]), {"name": "Cosine", "Rc": 6.5}
    fp = compiled(cutoff, gs).compute(atoms)
    np.testing.assert_allclose(fp.values, padded(reference_values(atoms, cutoff, gs), 20), rtol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_matches_numpy_gaussian_descriptor(compiled, name: str) -> None:
    """The compiled kernel and the pure-numpy 'gaussian' descriptor agree to 1e-10."""
    atoms, cutoff, gs = case(name)
    numpy_descriptor = create_descriptor("gaussian", cutoff=cutoff, Gs=gs)
    expected = numpy_descriptor.compute(atoms, derivatives=True)
    fp = compiled(cutoff, gs).compute(atoms, derivatives=True)
    for i in range(len(atoms)):
        np.testing.assert_allclose(fp[i], expected[i], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(fp.pairs, expected.pairs)
    width = min(fp.values.shape[1], expected.values.shape[1])
    np.testing.assert_allclose(
        fp.derivatives[:, :, :width], expected.derivatives[:, :, :width], rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("width", ["narrow", "wide"])
@pytest.mark.parametrize("name", CASES)
def test_one_pass_contraction_matches_numpy_blocks(compiled, name: str, width: str) -> None:
    """amp_gaussian_contract (bounds-checked): values, forces and virial for a fixed dE/dG against numpy,
    with narrow groups (values-only and derivative calls take the per-feature routine) and wide ones
    (every routine takes the folded routine's values)."""
    atoms, cutoff, gs = case(name)
    if width == "wide":
        gs = wide_gs(sorted(gs))
    numpy_descriptor = create_descriptor("gaussian", cutoff=cutoff, Gs=gs)
    expected = numpy_descriptor.compute(atoms, derivatives=True)
    weights = np.random.default_rng(3).normal(size=expected.values.shape)
    asked = []

    def gradient(rows, values):
        asked.extend(rows.tolist())
        return np.pad(weights[rows], ((0, 0), (0, values.shape[1] - weights.shape[1])))

    periodic = bool(np.all(atoms.pbc))
    descriptor = compiled(cutoff, gs)
    result = descriptor.contract(atoms, gradient, virial=periodic)
    assert sorted(asked) == list(range(len(atoms)))
    # wide groups: one set of values, whichever routine computes them; narrow: the same to round-off
    exact = 0.0 if width == "wide" else 1e-14
    values = descriptor.compute(atoms).values
    np.testing.assert_allclose(result.values, values, rtol=exact, atol=exact * np.abs(values).max())
    np.testing.assert_array_equal(values, descriptor.compute(atoms, derivatives=True).values)
    width = expected.values.shape[1]
    np.testing.assert_allclose(result.values[:, :width], expected.values, rtol=1e-10, atol=1e-12)
    forces = -np.einsum("imlf,if->ml", expected.dense_derivatives(), weights)
    np.testing.assert_allclose(result.forces, forces, rtol=1e-10, atol=1e-10 * np.abs(forces).max())
    if periodic:
        reference = numpy_descriptor.contract(atoms, lambda rows, values: weights[rows, : values.shape[1]],
                                              virial=True)
        np.testing.assert_allclose(result.virial, reference.virial, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernel", ["compiled", "numpy"])
@pytest.mark.parametrize("name", CASES)
def test_several_sets_of_de_dg_in_one_pass_equal_one_pass_each(compiled, name: str, kernel: str) -> None:
    """contract(sets=3) (an ensemble's members): each set's forces and virial are bit for bit those of
    its own pass; the values are computed once; a wrong shape from the callback is an error."""
    atoms, cutoff, gs = case(name)
    descriptor = compiled(cutoff, gs) if kernel == "compiled" else create_descriptor("gaussian", cutoff=cutoff, Gs=gs)
    width = descriptor.compute(atoms).values.shape[1]
    weights = np.random.default_rng(7).normal(size=(3, len(atoms), width))
    periodic = bool(np.all(atoms.pbc))
    calls = []

    def stacked(rows, values):
        calls.append(len(rows))
        return weights[:, rows, : values.shape[1]]

    together = descriptor.contract(atoms, stacked, virial=periodic, sets=3)
    assert sum(calls) == len(atoms) and together.forces.shape == (3, len(atoms), 3)
    for k in range(3):
        alone = descriptor.contract(atoms, lambda rows, values, k=k: weights[k, rows, : values.shape[1]],
                                    virial=periodic)
        np.testing.assert_array_equal(together.forces[k], alone.forces)
        np.testing.assert_array_equal(together.values, alone.values)
        if periodic:
            np.testing.assert_array_equal(together.virial[k], alone.virial)
    with pytest.raises(ValueError, match="shape"):
        descriptor.contract(atoms, lambda rows, values: weights[:2, rows, : values.shape[1]], sets=3)
    with pytest.raises(ValueError, match="positive integer"):
        descriptor.contract(atoms, stacked, sets=0)


def test_several_sets_across_batches_of_centres(compiled) -> None:
    """More atoms than one batch of centres (64), the last batch partial: each set still gets its own dE/dG."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    atoms.symbols[::7] = "Pt"
    atoms.rattle(0.05, seed=2)
    descriptor = compiled({"name": "Cosine", "Rc": 4.0}, make_default_symmetry_functions(["Cu", "Pt"]))
    weights = np.random.default_rng(9).normal(size=(2, len(atoms), 20))
    together = descriptor.contract(atoms, lambda rows, values: weights[:, rows], virial=True, sets=2)
    for k in range(2):
        alone = descriptor.contract(atoms, lambda rows, values, k=k: weights[k, rows], virial=True)
        np.testing.assert_array_equal(together.forces[k], alone.forces)
        np.testing.assert_array_equal(together.virial[k], alone.virial)


def zeta_gs(elements: list[str], zetas: tuple[float, ...]) -> dict:
    """G4 and G5 for each zeta and both gamma signs, two etas per group (shared exponentials)."""
    gs = [{"type": "G2", "element": e, "eta": 0.5} for e in elements]
    for a, b in itertools.combinations_with_replacement(sorted(elements), 2):
        for kind, zeta, gamma, eta in itertools.product(("G4", "G5"), zetas, (1.0, -1.0), (0.2, 0.01)):
            gs.append({"type": kind, "elements": [a, b], "eta": eta, "zeta": zeta, "gamma": gamma})
    return {e: gs for e in elements}


@pytest.mark.parametrize(
    "cutoff", [{"name": "Cosine", "Rc": 4.0}, {"name": "Polynomial", "Rc": 4.0, "gamma": 5.0}]
)
def test_integer_zeta_paths_match_reference(compiled, cutoff: dict) -> None:
    """zeta 1, 2, 3, 4 and 6 take multiplication paths in the kernel, 2.5 the general power."""
    atoms, _, _ = case("bulk")
    gs = zeta_gs(["Cu", "Pt"], (1.0, 2.0, 3.0, 4.0, 6.0, 2.5))
    descriptor = compiled(cutoff, gs)
    fp = descriptor.compute(atoms, derivatives=True)
    width = fp.values.shape[1]
    np.testing.assert_allclose(
        fp.values, padded(reference_values(atoms, cutoff, gs), width), rtol=1e-12, atol=1e-14
    )
    expected = finite_differences(lambda a: padded(reference_values(a, cutoff, gs), width), atoms)
    np.testing.assert_allclose(fp.dense_derivatives(), expected, rtol=1e-6, atol=1e-8)


def test_zeta_below_one_on_a_perfect_crystal(compiled) -> None:
    """Opposite neighbours give 1 + gamma cos = 0: zeta 0.5 values are still Amp's finite ones
    (also for the masked pairs of a batch, which must add exact zeros), but the derivatives
    are infinite there, so asking for them is refused naming the three atoms."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    cutoff = {"name": "Cosine", "Rc": 4.0}
    gs = zeta_gs(["Cu"], (0.5, 1.0))
    descriptor = compiled(cutoff, gs)
    fp = descriptor.compute(atoms)
    np.testing.assert_allclose(
        fp.values, padded(reference_values(atoms, cutoff, gs), 17), rtol=1e-12, atol=1e-14
    )
    with pytest.raises(DataError, match=r"atoms \d+( \(its periodic image shifted by .*\))? and \d+.* lie on one line"):
        descriptor.compute(atoms, derivatives=True)


@pytest.fixture(params=["numpy", "fortran"])
def either(request: pytest.FixtureRequest, compiled):
    """Return ``make(cutoff, Gs)`` of the numpy descriptor, then of its compiled twin."""
    if request.param == "fortran":
        return compiled
    return lambda cutoff, Gs: Gaussian(GaussianParams(cutoff=cutoff, Gs=Gs))


def test_unknown_element_is_the_same_data_error_on_both_kernels(either) -> None:
    atoms = molecule("CH3CH2OH")
    with pytest.raises(DataError, match=r"contains H, O, .*\(Gs covers: C\)"):
        either({"name": "Cosine", "Rc": 3.0}, {"C": mixed_gs(["C"])["C"]}).compute(atoms)


def test_zero_periodic_cell_vector_is_the_same_data_error_on_both_kernels(either) -> None:
    atoms = Atoms("Cu2", positions=[(0, 0, 0), (0, 0, 2.0)], pbc=True)
    with pytest.raises(DataError, match="zero cell vector"):
        either({"name": "Cosine", "Rc": 3.0}, mixed_gs(["Cu"])).compute(atoms)


def test_overlapping_atoms_are_the_same_data_error_on_both_kernels(either) -> None:
    atoms = Atoms("Cu2", positions=[(0, 0, 0), (0, 0, 0)])
    with pytest.raises(DataError, match="atoms 0 and 1 overlap"):
        either({"name": "Cosine", "Rc": 3.0}, mixed_gs(["Cu"])).compute(atoms, derivatives=True)


def _call_kernel(table, codes, first, neighbour, vectors):
    """Call the kernel directly on a hand-made neighbour list (values only); return (status, bad index)."""
    import ctypes

    from amp_plugins.descriptors.gaussian._fortran import _kernel

    ints = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731
    bad = ctypes.c_int64(-1)
    n = len(codes)
    values = np.empty((n, table.n_features))
    status = _kernel()(
        *(n, len(table.counts), ints(*codes), len(neighbour), ints(*first), ints(*neighbour), vectors),
        *(*table.cutoff, table.n_features, table.counts, table.types, table.el1, table.el2),
        *(table.eta, table.zeta, table.gamma, table.offset),
        *(0, 0, ints(*[0] * len(neighbour)), ints(*[0] * n), values),
        *(np.empty((0, 3, table.n_features)), ctypes.byref(bad)),
    )
    return status, bad.value


def test_kernel_reports_overlapping_atoms_it_is_given(compiled) -> None:
    """The kernel's own check, behind the neighbour list's: a neighbour at zero distance."""
    table = compiled({"name": "Cosine", "Rc": 3.0}, mixed_gs(["Cu"])).plan.table
    assert _call_kernel(table, (0, 0), (0, 1, 2), (1, 0), np.zeros((2, 3))) == (8, 0)


def test_kernel_rejects_out_of_range_indices(compiled) -> None:
    """Call the kernel directly with a neighbour index past the atom count."""
    table = compiled({"name": "Cosine", "Rc": 3.0}, mixed_gs(["Cu"])).plan.table
    assert _call_kernel(table, (0, 0), (0, 1, 2), (1, 5), np.ones((2, 3))) == (4, 1)


@pytest.mark.parametrize(
    ("cutoff", "gs", "message"),
    [
        ({"name": "Gaussian", "Rc": 3.0}, mixed_gs(["Cu"]), "unknown cutoff 'Gaussian'"),
        ({"name": "Cosine", "Rc": 3.0}, {"Cu": [{"type": "G3", "element": "Cu", "eta": 1.0}]}, "type 'G3'"),
    ],
)
def test_bad_parameters_fail_at_construction_before_any_kernel(cutoff, gs, message) -> None:
    """One validation for both kernels: ValueError from the parameters, ConfigError through the core."""
    with pytest.raises(ValueError, match=message):
        GaussianParams(cutoff=cutoff, Gs=gs)
    with pytest.raises(ConfigError, match=message):
        create_descriptor("gaussian", cutoff=cutoff, Gs=gs)


def test_pickle_round_trip_keeps_the_kernel_choice(compiled) -> None:
    atoms, cutoff, gs = case("bulk")
    descriptor = compiled(cutoff, gs)
    state = pickle.dumps(descriptor)
    assert b"CDLL" not in state and len(state) < 20_000
    clone = pickle.loads(state)
    assert (clone.name, clone.kernel, clone.params) == ("gaussian", "fortran", descriptor.params)
    np.testing.assert_array_equal(clone.compute(atoms).values, descriptor.compute(atoms).values)


def test_one_pass_contraction_in_chunks(compiled) -> None:
    """A cell with hundreds of neighbour pairs per centre and element pair (the kernel compacts at most
    256 per chunk): forces and virial still those of numpy, bounds-checked."""
    atoms = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    atoms.symbols[1] = "Pt"
    atoms.rattle(0.05, seed=4)
    cutoff, gs = {"name": "Cosine", "Rc": 6.0}, wide_gs(["Cu", "Pt"])
    numpy_descriptor = create_descriptor("gaussian", cutoff=cutoff, Gs=gs)
    counts = np.bincount(numpy_descriptor.neighbours(atoms, 0.0).centre)
    assert counts.min() ** 2 // 8 > 256  # a centre has ~(n / 2)^2 / 2 pairs per element pair: several chunks
    weights = np.random.default_rng(5).normal(size=(len(atoms), 94))
    result = compiled(cutoff, gs).contract(atoms, lambda rows, values: weights[rows, : values.shape[1]], virial=True)
    reference = numpy_descriptor.contract(atoms, lambda rows, values: weights[rows, : values.shape[1]], virial=True)
    np.testing.assert_allclose(result.values, reference.values, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.forces, reference.forces, rtol=1e-10, atol=1e-10 * np.abs(reference.forces).max())
    np.testing.assert_allclose(result.virial, reference.virial, rtol=1e-10, atol=1e-10 * np.abs(reference.virial).max())
