"""Conformance checks for plugin authors (call them from your plugin's tests).

Each ``check_*`` function raises :class:`AssertionError` with a message naming the
plugin, the structure and the failed property; it returns ``None`` when all is well::

    from amp_core import create_descriptor
    from amp_core.testing import check_descriptor

    def test_my_descriptor_conforms():
        check_descriptor(create_descriptor("mydescriptor", cutoff=5.0))

:func:`check_model` and :func:`check_backend` do the same for models and backends.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from amp_core.data import ImageFingerprints
from amp_core.errors import PropertyNotImplementedError
from amp_core.protocols import DESCRIPTOR_CAPABILITIES, FINGERPRINT_DERIVATIVES, FINGERPRINTS, Descriptor

if TYPE_CHECKING:
    from ase import Atoms

from amp_core._check_backend import check_backend, labelled_structures
from amp_core._check_md import check_md
from amp_core._check_model import check_model

__all__ = ["check_backend", "check_descriptor", "check_model", "default_structures", "labelled_structures"]


# --------------------------------------------------------------------------- descriptors


def check_descriptor(
    descriptor: Any,
    atoms_list: Sequence[Atoms] | None = None,
    *,
    fd_step: float = 1e-5,
    atol: float = 1e-6,
    rtol: float = 1e-5,
) -> None:
    """Check that ``descriptor`` keeps the descriptor contract on small structures.

    Checked: the :class:`~amp_core.protocols.Descriptor` attributes; output types,
    shapes, dtypes and finiteness; atom order and per-element lengths; invariance
    under translation and atom permutation; pickling; the ``todict()`` round trip
    through the descriptor's class and parameter class; ``cost``; and, when
    ``"fingerprint_derivatives"`` is implemented, the sparse derivative layout and
    central finite differences of every position. With the MD capabilities:
    ``"contract"`` (values, each atom asked once, forces for a fixed dE/dG against the
    derivative blocks or finite differences), ``"strain_derivatives"`` (the virial of
    periodic cells against finite differences under strain) and ``"neighbour_list"`` (a
    list built 0.2 A away gives the fresh-search values).

    Args:
        descriptor: the built descriptor.
        atoms_list: structures to use; default :func:`default_structures` of the
            descriptor's elements (keep them small: the finite-difference check
            costs 6 computations per atom).
        fd_step: finite-difference step, Angstrom.
        atol: absolute tolerance (fingerprint units; per Angstrom for derivatives).
        rtol: relative tolerance.

    Raises:
        AssertionError: a property does not hold; the message says which and where.
    """
    label = f"descriptor {getattr(descriptor, 'name', type(descriptor).__name__)!r}"
    _descriptor_attributes(descriptor, label)
    _descriptor_roundtrips(descriptor, label)
    if FINGERPRINTS not in descriptor.implemented:
        _descriptor_refuses(descriptor, label, atoms_list)
        return
    structures = list(atoms_list) if atoms_list is not None else default_structures(descriptor.elements)
    if not structures:
        raise AssertionError(f"{label}: no structures to check")
    rebuilt = _descriptor_rebuilt(descriptor, label)
    copied = pickle.loads(pickle.dumps(descriptor))
    for k, atoms in enumerate(structures):
        where = f"{label}, structure {k} ({atoms.get_chemical_formula()}, pbc={atoms.pbc.tolist()})"
        fp = descriptor.compute(atoms.copy(), derivatives=False)
        _descriptor_layout(fp, atoms, where, derivatives=False)
        cost = descriptor.cost(atoms.copy())
        if not (isinstance(cost, (int, float)) and np.isfinite(cost) and cost >= 0):
            raise AssertionError(f"{where}: cost() returned {cost!r}; expected a finite number >= 0")
        _close(copied.compute(atoms.copy()).values, fp.values, atol, rtol, f"{where}: after pickling, values")
        _close(
            rebuilt.compute(atoms.copy()).values,
            fp.values,
            atol,
            rtol,
            f"{where}: after todict round trip, values",
        )
        _descriptor_invariances(descriptor, atoms, fp, where, atol, rtol, seed=k)
        if FINGERPRINT_DERIVATIVES in descriptor.implemented:
            _descriptor_derivatives(descriptor, atoms, fp, where, fd_step, atol, rtol)
        check_md(descriptor, atoms, fp.values, where, fd_step, atol, rtol, _close)


def default_structures(elements: Sequence[str] | None) -> list[Atoms]:
    """Return three small test structures made of ``elements`` (default H, C, O).

    A 5-atom cluster (no periodicity), a rattled 4-atom fcc cell (periodic) and a
    4-atom slab (periodic in x and y); elements are assigned in turn.
    """
    from ase import Atoms
    from ase.build import bulk

    symbols = list(elements) if elements else ["H", "C", "O"]
    rng = np.random.default_rng(7)
    cluster_positions = np.array(
        [[0.0, 0.0, 0.0], [1.4, 0.2, 0.1], [-0.3, 1.5, 0.2], [0.5, 0.6, 1.45], [1.6, 1.5, 1.2]]
    ) + rng.normal(scale=0.05, size=(5, 3))
    cluster = Atoms([symbols[k % len(symbols)] for k in range(5)], positions=cluster_positions)
    crystal = bulk("Cu", "fcc", a=3.7, cubic=True)
    crystal.set_chemical_symbols([symbols[k % len(symbols)] for k in range(len(crystal))])
    crystal.positions += rng.normal(scale=0.08, size=crystal.positions.shape)
    slab = crystal.copy()
    slab.positions += rng.normal(scale=0.05, size=slab.positions.shape)
    slab.cell[2] = [0.0, 0.0, 12.0]
    slab.pbc = (True, True, False)
    return [cluster, crystal, slab]


def _descriptor_attributes(descriptor: Any, label: str) -> None:
    if not isinstance(descriptor, Descriptor):
        missing = [n for n in ("name", "params", "implemented", "elements", "compute", "cost", "todict")
                   if not hasattr(descriptor, n)]  # fmt: skip
        raise AssertionError(f"{label}: does not satisfy the Descriptor protocol; missing {missing}")
    if not isinstance(descriptor.name, str) or not descriptor.name:
        raise AssertionError(f"{label}: name must be a non-empty str, got {descriptor.name!r}")
    if not isinstance(descriptor.implemented, frozenset):
        raise AssertionError(
            f"{label}: implemented must be a frozenset, got {type(descriptor.implemented).__name__}"
        )
    known = DESCRIPTOR_CAPABILITIES
    if not descriptor.implemented <= known:
        raise AssertionError(
            f"{label}: implemented has unknown items {sorted(descriptor.implemented - known)}"
        )
    if FINGERPRINT_DERIVATIVES in descriptor.implemented and FINGERPRINTS not in descriptor.implemented:
        raise AssertionError(f"{label}: implements 'fingerprint_derivatives' but not 'fingerprints'")
    elements = descriptor.elements
    if elements is not None and not (
        isinstance(elements, tuple) and all(isinstance(s, str) for s in elements)
    ):
        raise AssertionError(f"{label}: elements must be None or a tuple of symbols, got {elements!r}")
    try:
        hash(descriptor.params)
    except TypeError as exc:
        raise AssertionError(
            f"{label}: params must be hashable (a frozen dataclass of tuples): {exc}"
        ) from None


def _descriptor_roundtrips(descriptor: Any, label: str) -> None:
    try:
        copied = pickle.loads(pickle.dumps(descriptor))
    except Exception as exc:  # noqa: BLE001 - any pickling failure is the finding
        raise AssertionError(
            f"{label}: does not pickle ({type(exc).__name__}: {exc}); workers need it"
        ) from None
    if copied.params != descriptor.params:
        raise AssertionError(
            f"{label}: params differ after pickling: {copied.params!r} != {descriptor.params!r}"
        )
    document = descriptor.todict()
    if not isinstance(document, dict):
        raise AssertionError(f"{label}: todict() must return a dict, got {type(document).__name__}")
    try:
        json.dumps(document)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{label}: todict() is not JSON-serialisable: {exc}") from None


def _descriptor_rebuilt(descriptor: Any, label: str) -> Any:
    document = json.loads(json.dumps(descriptor.todict()))
    params_class = type(descriptor.params)
    try:
        params = params_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in document.items()})
        rebuilt = type(descriptor)(params)
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(
            f"{label}: {params_class.__name__}(**todict()) does not rebuild it: {type(exc).__name__}: {exc}"
        ) from None
    if rebuilt.params != descriptor.params:
        raise AssertionError(
            f"{label}: todict() round trip changed params: {rebuilt.params!r} != {descriptor.params!r}"
        )
    return rebuilt


def _descriptor_refuses(descriptor: Any, label: str, atoms_list: Sequence[Atoms] | None) -> None:
    atoms = list(atoms_list)[0] if atoms_list else default_structures(None)[0]
    try:
        descriptor.compute(atoms)
    except PropertyNotImplementedError:
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(
            f"{label}: implements no 'fingerprints', so compute() must raise PropertyNotImplementedError, "
            f"not {type(exc).__name__}"
        ) from None
    raise AssertionError(f"{label}: implements no 'fingerprints' but compute() returned a result")


def _descriptor_layout(fp: Any, atoms: Atoms, where: str, derivatives: bool) -> None:
    n = len(atoms)
    if not isinstance(fp, ImageFingerprints):
        raise AssertionError(f"{where}: compute() returned {type(fp).__name__}, expected ImageFingerprints")
    _array(fp.numbers, (n,), np.int64, f"{where}: numbers")
    if not np.array_equal(fp.numbers, atoms.numbers):
        raise AssertionError(
            f"{where}: numbers {fp.numbers.tolist()} are not the atoms' numbers in atom order"
        )
    if fp.values.ndim != 2 or fp.values.shape[0] != n:
        raise AssertionError(f"{where}: values have shape {fp.values.shape}, expected ({n}, n_features)")
    n_features = fp.values.shape[1]
    _array(fp.values, (n, n_features), np.float64, f"{where}: values")
    _array(fp.lengths, (n,), np.int64, f"{where}: lengths")
    if (fp.lengths < 0).any() or (fp.lengths > n_features).any():
        raise AssertionError(f"{where}: lengths {fp.lengths.tolist()} must lie in [0, {n_features}]")
    for number in np.unique(fp.numbers):
        if len(np.unique(fp.lengths[fp.numbers == number])) != 1:
            raise AssertionError(f"{where}: atoms of element Z={number} have different fingerprint lengths")
    padding = np.arange(n_features)[None, :] >= fp.lengths[:, None]
    if fp.values[padding].any():
        raise AssertionError(f"{where}: values past an atom's length must be zero")
    if not derivatives and (fp.pairs is not None or fp.derivatives is not None):
        raise AssertionError(f"{where}: derivatives=False must return pairs=None and derivatives=None")
    if derivatives:
        _descriptor_pair_layout(fp, n, n_features, padding, where)


def _descriptor_pair_layout(fp: Any, n: int, n_features: int, padding: NDArray[np.bool_], where: str) -> None:
    if fp.pairs is None or fp.derivatives is None:
        raise AssertionError(f"{where}: derivatives=True returned no pairs/derivatives")
    n_pairs = len(fp.pairs)
    _array(fp.pairs, (n_pairs, 2), np.int64, f"{where}: pairs")
    _array(fp.derivatives, (n_pairs, 3, n_features), np.float64, f"{where}: derivatives")
    if n_pairs and (fp.pairs.min() < 0 or fp.pairs.max() >= n):
        raise AssertionError(f"{where}: pairs hold atom indices outside [0, {n})")
    keys = fp.pairs[:, 0] * n + fp.pairs[:, 1]
    if n_pairs > 1 and not (np.diff(keys) > 0).all():
        raise AssertionError(f"{where}: pairs must be sorted by i then m, each (i, m) once")
    missing = sorted(set(range(n)) - {int(i) for i, m in fp.pairs if i == m})
    if missing:
        raise AssertionError(f"{where}: pairs lack the self pairs (i, i) of atoms {missing[:10]}")
    if fp.derivatives[np.broadcast_to(padding[fp.pairs[:, 0]][:, None, :], fp.derivatives.shape)].any():
        raise AssertionError(f"{where}: derivatives past the centre atom's length must be zero")


def _descriptor_invariances(
    descriptor: Any, atoms: Atoms, fp: ImageFingerprints, where: str, atol: float, rtol: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    moved = atoms.copy()
    moved.positions += rng.uniform(-2.0, 2.0, size=3)
    _close(
        descriptor.compute(moved).values, fp.values, atol, rtol, f"{where}: after a rigid translation, values"
    )
    order = rng.permutation(len(atoms))
    shuffled = atoms[order]
    _close(descriptor.compute(shuffled).values, fp.values[order], atol, rtol,
           f"{where}: after permuting the atoms (order {order.tolist()}), values")  # fmt: skip


def _descriptor_derivatives(
    descriptor: Any, atoms: Atoms, fp: ImageFingerprints, where: str, step: float, atol: float, rtol: float
) -> None:
    fpd = descriptor.compute(atoms.copy(), derivatives=True)
    _descriptor_layout(fpd, atoms, where, derivatives=True)
    _close(fpd.values, fp.values, atol, rtol, f"{where}: values with derivatives=True")
    dense = fpd.dense_derivatives()
    for m in range(len(atoms)):
        for axis in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[m, axis] += step
            minus.positions[m, axis] -= step
            numeric = (descriptor.compute(plus).values - descriptor.compute(minus).values) / (2.0 * step)
            _close(dense[:, m, axis], numeric, atol, rtol,
                   f"{where}: d values / d position[{m}, {'xyz'[axis]}] (analytic) versus central finite "
                   f"differences (step {step} Angstrom); a missing (i, m) pair also shows here")  # fmt: skip


def _array(array: Any, shape: tuple[int, ...], dtype: type, what: str) -> None:
    if not isinstance(array, np.ndarray):
        raise AssertionError(f"{what} must be a numpy array, got {type(array).__name__}")
    if array.shape != shape:
        raise AssertionError(f"{what} have shape {array.shape}, expected {shape}")
    if array.dtype != dtype:
        raise AssertionError(f"{what} have dtype {array.dtype}, expected {np.dtype(dtype)}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise AssertionError(f"{what} contain NaN or infinity")


def _close(actual: NDArray[Any], expected: NDArray[Any], atol: float, rtol: float, what: str) -> None:
    """Raise unless ``actual`` matches ``expected``; arrays are (atom, feature) indexed."""
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape} differs from {expected.shape}")
    error = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    if not (error <= bound).all():
        worst = np.unravel_index(int(np.argmax(error - bound)), error.shape)
        where = ", ".join(f"{name} {int(k)}" for name, k in zip(("atom", "feature"), worst))
        raise AssertionError(
            f"{what} differ ({int((error > bound).sum())} of {error.size} entries); worst at {where}: "
            f"{float(actual[worst])!r} versus {float(expected[worst])!r} (|difference| {float(error[worst]):.3e} > "
            f"atol {atol:g} + rtol {rtol:g} * |expected|)"
        )
