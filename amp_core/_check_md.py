"""Conformance checks of a descriptor's MD capabilities (``CONTRACT``, ``STRAIN_DERIVATIVES``, ``NEIGHBOUR_LIST``).

Called by :func:`amp_core.testing.check_descriptor`. The reference is a linear functional
L = sum over atoms i and features f of w[i, f] G_i[f] with fixed random weights ``w``: its
dE/dG is ``w``, so the contraction's forces must be -dL/dR (from the derivative blocks when
the descriptor has them, else finite differences) and its virial dL/d(strain) (finite
differences of a homogeneously strained cell).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from amp_core.protocols import (
    CONTRACT,
    FINGERPRINT_DERIVATIVES,
    NEIGHBOUR_LIST,
    STRAIN_DERIVATIVES,
    takes_sets,
)

if TYPE_CHECKING:
    from ase import Atoms


def check_md(descriptor: Any, atoms: Atoms, values: NDArray[np.float64], where: str, step: float,
             atol: float, rtol: float, close: Any) -> None:
    """Check the MD capabilities ``descriptor`` declares on ``atoms`` (fingerprints ``values``)."""
    if NEIGHBOUR_LIST in descriptor.implemented:
        _neighbours(descriptor, atoms, values, where, atol, rtol, close)
    if CONTRACT not in descriptor.implemented:
        if STRAIN_DERIVATIVES in descriptor.implemented:
            raise AssertionError(f"{where}: implements 'strain_derivatives' but not 'contract'")
        return
    weights = np.random.default_rng(11).normal(size=values.shape)
    virial = STRAIN_DERIVATIVES in descriptor.implemented and bool(np.all(atoms.pbc))
    result = _contract(descriptor, atoms, weights, virial, where)
    close(np.asarray(result.values), values, atol, rtol, f"{where}: contract() values")
    if FINGERPRINT_DERIVATIVES in descriptor.implemented:
        blocks = descriptor.compute(atoms.copy(), derivatives=True).dense_derivatives()
        expected = -np.einsum("imlf,if->ml", blocks, weights)
    else:
        expected = np.zeros((len(atoms), 3))
        for m in range(len(atoms)):
            for axis in range(3):
                moved = [atoms.copy(), atoms.copy()]
                moved[0].positions[m, axis] += step
                moved[1].positions[m, axis] -= step
                expected[m, axis] = -(_functional(descriptor, moved[0], weights)
                                      - _functional(descriptor, moved[1], weights)) / (2 * step)
    close(np.asarray(result.forces), expected, atol, rtol,
          f"{where}: contract() forces versus -sum_i w_i . dG_i/dR for a fixed dE/dG w")
    if virial:
        close(np.asarray(result.virial), _strain_derivative(descriptor, atoms, weights, step), atol, rtol,
              f"{where}: contract() virial versus central finite differences of a strained cell (step {step})")
    if takes_sets(descriptor):
        _sets(descriptor, atoms, weights, result, virial, where, atol, rtol, close)


def _sets(descriptor: Any, atoms: Atoms, weights: NDArray[np.float64], single: Any, virial: bool, where: str,
          atol: float, rtol: float, close: Any) -> None:
    """``contract(sets=2)`` (dE/dG w and -2 w): each set's forces and virial as one set's (linear in dE/dG)."""
    scale = np.array([1.0, -2.0])
    result = descriptor.contract(atoms.copy(), lambda rows, given: scale[:, None, None] * weights[rows, : given.shape[1]],
                                 virial=virial, sets=2)
    if np.shape(result.forces) != (2, len(atoms), 3) or (virial and np.shape(result.virial) != (2, 3, 3)):
        raise AssertionError(f"{where}: contract(sets=2) returned forces of shape {np.shape(result.forces)} and virial "
                             f"{None if result.virial is None else np.shape(result.virial)}; expected (2, "
                             f"{len(atoms)}, 3) and (2, 3, 3)")
    for k in range(2):
        close(np.asarray(result.forces[k]), scale[k] * np.asarray(single.forces), atol, rtol,
              f"{where}: contract(sets=2) forces of set {k} versus one set's")
        if virial:
            close(np.asarray(result.virial[k]), scale[k] * np.asarray(single.virial), atol, rtol,
                  f"{where}: contract(sets=2) virial of set {k} versus one set's")


def _contract(descriptor: Any, atoms: Atoms, weights: NDArray[np.float64], virial: bool, where: str) -> Any:
    """Run ``contract`` with dE/dG = ``weights``, checking every atom is asked for exactly once."""
    asked = np.zeros(len(atoms), dtype=np.int64)

    def gradient(rows: NDArray[np.int64], given: NDArray[np.float64]) -> NDArray[np.float64]:
        rows = np.asarray(rows)
        np.add.at(asked, rows, 1)
        return weights[rows, : given.shape[1]]

    result = descriptor.contract(atoms.copy(), gradient, virial=virial)
    if not (asked == 1).all():
        raise AssertionError(f"{where}: contract() asked dE/dG of atoms {np.flatnonzero(asked != 1).tolist()[:10]} "
                             f"{'never' if (asked == 0).any() else 'more than once'}; each atom exactly once")
    if virial and (result.virial is None or np.shape(result.virial) != (3, 3)):
        raise AssertionError(f"{where}: contract(virial=True) returned virial {result.virial!r}; expected (3, 3)")
    return result


def _functional(descriptor: Any, atoms: Atoms, weights: NDArray[np.float64]) -> float:
    return float(np.sum(descriptor.compute(atoms).values * weights))


def _strain_derivative(descriptor: Any, atoms: Atoms, weights: NDArray[np.float64], step: float) -> NDArray[np.float64]:
    """dL/d strain[a, b] by central differences: positions and cell mapped by r -> (1 + strain) r."""
    out = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            shifted = []
            for sign in (1.0, -1.0):
                strain = np.eye(3)
                strain[a, b] += sign * step
                strained = atoms.copy()
                strained.set_cell(atoms.cell.array @ strain.T, scale_atoms=True)
                shifted.append(_functional(descriptor, strained, weights))
            out[a, b] = (shifted[0] - shifted[1]) / (2 * step)
    return out


def _neighbours(descriptor: Any, atoms: Atoms, values: NDArray[np.float64], where: str, atol: float, rtol: float,
                close: Any) -> None:
    """A list built 0.2 Angstrom away (skin 1.0) must give the fresh-search fingerprints."""
    earlier = atoms.copy()
    earlier.positions += np.random.default_rng(5).uniform(-0.2, 0.2, size=earlier.positions.shape) / np.sqrt(3)
    kept = descriptor.neighbours(earlier, 1.0)
    close(descriptor.compute(atoms.copy(), neighbours=kept).values, values, atol, rtol,
          f"{where}: compute(neighbours=a list built with skin 1.0 A at positions 0.2 A away) values")
