"""Load, hash and validate structures (pipeline stage 1)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from numpy.typing import NDArray

from amp_core.data import Dataset
from amp_core.errors import ConfigError, DataError

ImageSource = Atoms | str | os.PathLike[str] | Iterable[Any]


def image_hash(atoms: Atoms) -> str:
    """Return a hex digest of what a descriptor sees: numbers, positions, cell, pbc."""
    digest = hashlib.sha1()
    for array in (atoms.numbers.astype(np.int64), atoms.positions.astype(np.float64),
                  atoms.cell.array.astype(np.float64), np.asarray(atoms.pbc, dtype=bool)):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def read_images(source: ImageSource, where: str = "") -> tuple[list[Atoms], list[str]]:
    """Read structures from a file path, a list of paths, or take a list of ``Atoms``.

    Raises:
        ConfigError: a file is missing or unreadable, or there are no structures.
    """
    import ase.io

    items: list[Any] = [source] if isinstance(source, (str, os.PathLike, Atoms)) else list(source)
    images: list[Atoms] = []
    origins: list[str] = []
    for item in items:
        if isinstance(item, Atoms):
            origins.append(f"image {len(images)}")
            images.append(item)
            continue
        path = Path(item)
        label = f"{path}" + (f" ({where})" if where else "")
        if not path.is_file():
            raise ConfigError(f"data file {label} does not exist; check the path (relative paths "
                              "in a config are relative to the config file)")
        if path.stat().st_size == 0:
            raise DataError(f"data file {label} is empty; give a file with at least one labelled structure")
        try:
            read = ase.io.read(path, index=":")
        except Exception as exc:  # noqa: BLE001 - ASE raises many types for bad files
            raise ConfigError(f"cannot read data file {label}: {type(exc).__name__}: {exc}") from exc
        read = read if isinstance(read, list) else [read]
        origins.extend(f"{path}, image {k}" for k in range(len(read)))
        images.extend(read)
    if not images:
        raise DataError(f"no structures in {', '.join(map(str, items)) or 'the data given'}"
                        + (f" ({where})" if where else "") + "; give at least one image")
    return images, origins


def check_structure(atoms: Atoms, origin: str) -> None:
    """Raise :class:`DataError` when positions or cell are not finite or there are no atoms."""
    if len(atoms) == 0:
        raise DataError(f"{origin}: the structure has no atoms")
    if not np.all(np.isfinite(atoms.positions)):
        bad = int(np.flatnonzero(~np.isfinite(atoms.positions).all(axis=1))[0])
        raise DataError(f"{origin}: position of atom {bad} is not finite ({atoms.positions[bad]}); fix or drop it")
    if not np.all(np.isfinite(atoms.cell.array)):
        raise DataError(f"{origin}: the cell is not finite")
    check_extent(atoms, origin)


MAX_EXTENT = 2000.0
"""Largest extent (Angstrom) of a structure along a non-periodic direction, and of a cell vector.

Larger extents mean an atom has flown away or the positions are in another unit; the
neighbour search's work (and memory) grows with the extent, and at ~1e6 Angstrom it fails."""


def check_extent(atoms: Atoms, origin: str) -> None:
    """Raise :class:`DataError` naming the atom when a structure is implausibly large (see :data:`MAX_EXTENT`)."""
    lengths = atoms.cell.lengths()
    if np.any(lengths > MAX_EXTENT):
        raise DataError(f"{origin}: a cell vector is {lengths.max():.4g} Angstrom long (at most {MAX_EXTENT:g}); "
                        "are the cell and positions in Angstrom?")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.all() or len(atoms) < 2:
        return
    cell = atoms.cell.complete() if pbc.any() else np.eye(3)
    try:
        along = np.linalg.solve(np.asarray(cell).T, atoms.positions.T).T * np.linalg.norm(cell, axis=1)
    except np.linalg.LinAlgError:  # a degenerate cell; the descriptor reports it
        return
    for axis in np.flatnonzero(~pbc):
        values = along[:, axis]
        extent = float(values.max() - values.min())
        if extent > MAX_EXTENT:
            far = int(np.argmax(np.abs(values - np.median(values))))
            raise DataError(
                f"{origin}: atom {far} lies {abs(values[far] - np.median(values)):.4g} Angstrom from the others "
                f"along non-periodic direction {int(axis)} (the structure spans {extent:.4g} Angstrom; at most "
                f"{MAX_EXTENT:g}): an atom has flown away, or positions are not in Angstrom; fix or drop this image"
            )


def read_targets(
    atoms: Atoms, origin: str, forces: bool
) -> tuple[float, NDArray[np.float64] | None]:
    """Return (energy eV, forces eV/A or ``None``) of a labelled structure.

    Raises:
        DataError: the energy (or forces, when asked) is missing or not finite.
    """
    if atoms.calc is None:
        raise DataError(f"{origin}: no reference energy (the structure has no calculator or stored "
                        "results); label it, e.g. write it with its energy to an .xyz/.traj file")
    try:
        energy = float(atoms.get_potential_energy())
    except Exception as exc:  # noqa: BLE001 - calculators raise many types
        raise DataError(f"{origin}: no reference energy ({type(exc).__name__}: {exc})") from exc
    if not np.isfinite(energy):
        raise DataError(f"{origin}: reference energy is {energy}; fix or drop this image")
    if not forces:
        return energy, None
    try:
        values = np.array(atoms.get_forces(), dtype=np.float64)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{origin}: no reference forces, needed because forces are trained "
                        f"({type(exc).__name__}: {exc}); label them or train energies only") from exc
    if values.shape != (len(atoms), 3):
        raise DataError(f"{origin}: reference forces have shape {values.shape}, expected {(len(atoms), 3)}")
    if not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        raise DataError(f"{origin}: reference force on atom {bad} is not finite; fix or drop this image")
    return energy, values


def check_elements(images: Sequence[Atoms], origins: Sequence[str], known: Sequence[str] | None,
                   who: str) -> None:
    """Raise :class:`DataError` for the first element that ``who`` does not know."""
    if known is None:
        return
    allowed = {chemical_symbols.index(s) for s in known}
    for atoms, origin in zip(images, origins):
        unknown = set(np.unique(atoms.numbers).tolist()) - allowed
        if unknown:
            names = ", ".join(sorted(chemical_symbols[z] for z in unknown))
            raise DataError(f"{origin}: element(s) {names} unknown to {who}, which knows "
                            f"{', '.join(known)}; add them to its parameters or drop such images")


def load_dataset(source: ImageSource, *, forces: bool, where: str = "", targets: bool = True) -> Dataset:
    """Read, validate and hash structures (and their targets when ``targets``)."""
    images, origins = read_images(source, where)
    for atoms, origin in zip(images, origins):
        check_structure(atoms, origin)
    labels = [read_targets(a, o, forces) if targets else (0.0, None) for a, o in zip(images, origins)]
    return Dataset(images, origins, [image_hash(a) for a in images], labels)
