"""Load, hash and validate structures (pipeline stage 1)."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from numpy.typing import NDArray

from amp_core import memory
from amp_core.data import Dataset
from amp_core.errors import ConfigError, DataError

ImageSource = Atoms | str | os.PathLike[str] | Dataset | Iterable[Any]


def image_hash(atoms: Atoms) -> str:
    """Return a hex digest of what a descriptor sees: numbers, positions, cell, pbc."""
    digest = hashlib.sha1()
    for array in (atoms.numbers.astype(np.int64), atoms.positions.astype(np.float64),
                  atoms.cell.array.astype(np.float64), np.asarray(atoms.pbc, dtype=bool)):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def data_source(item: str | os.PathLike[str], folder: Path | None = None) -> tuple[Path, str | None]:
    """Split ASE's ``file@selection`` syntax into (path, selection).

    ``"md.traj@0:100"`` gives ``(md.traj, "0:100")``; a name without ``@``, a file that exists
    under the full name (names may contain ``@``) and an ``@`` followed by a path separator
    give ``(path, None)``: the whole file. Relative names are taken relative to ``folder``
    (default: the current directory).
    """
    text = os.fspath(item)
    base = Path(folder) if folder is not None else Path()
    if "@" in text and not (base / text).is_file():
        name, selection = text.rsplit("@", 1)
        if name and "/" not in selection and os.sep not in selection:
            return base / name, selection
    return base / text, None


def parse_selection(selection: str, label: str) -> int | slice:
    """Return the index or slice ``selection`` means (ASE's ``string2index``).

    Raises:
        ConfigError: ``selection`` is neither an index nor a slice; the message names ``label``.
    """
    from ase.io.formats import string2index  # type: ignore[attr-defined,unused-ignore]  # re-exported

    try:
        index = string2index(selection)
    except (ValueError, TypeError):
        index = None
    if isinstance(index, bool) or not isinstance(index, (int, slice)):
        raise ConfigError(f"{label}: bad selection {selection!r} after '@'; ASE's file@slice syntax takes "
                          "an image index or a slice, e.g. md.traj@0:100, data.db@-10: or md.traj@::2")
    return index


def _file_index(index: int | slice, k: int) -> int | None:
    """Return the position in the file of the ``k``-th selected image, when it is known without reading."""
    if isinstance(index, int):
        return index if index >= 0 else None
    start, step = index.start or 0, index.step or 1
    return start + k * step if start >= 0 and step > 0 else None


READ_FACTOR = 4
"""Memory allowed for reading a structure file, per byte of file (ASE's Atoms objects of the
shipped extxyz data take 3.2 bytes per byte of file, measured with tracemalloc)."""


def file_problem(path: Path) -> str | None:
    """Return why ``path`` cannot be a data file (missing, a folder, a device, a pipe, /proc), or ``None``."""
    try:
        if not path.exists():
            return ("does not exist; check the path (relative paths in a config are relative to the "
                    "config file)")
        if path.is_dir():
            return "is a directory; give a file of structures inside it"
        if not path.is_file():
            return "is not a regular file (a device, pipe or socket); give a file of structures"
        if path.resolve().parts[1:2] in (("proc",), ("sys",)):
            return "is a virtual file of the operating system (/proc, /sys), not a file of structures"
    except OSError as exc:
        return f"cannot be examined ({exc.strerror or exc})"
    return None


def checked_source(item: str | os.PathLike[str], folder: Path | None = None, *, resolve: bool = False,
                   prefix: str = "", suffix: str = "", label: str | None = None) -> tuple[Path, str | None, int | slice]:
    """Return (path, selection text or ``None``, index) of a data source, or say what is wrong with it.

    ``prefix`` and ``suffix`` frame the messages (where the name came from); ``label``
    names a bad selection (default ``path@selection`` and the suffix).

    Raises:
        ConfigError: an unusable name, a path that is not a data file (see :func:`file_problem`),
            or a malformed selection.
    """
    try:
        path, selection = data_source(item, folder)
        path = path.resolve() if resolve else path
        problem = file_problem(path)
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        raise ConfigError(f"{prefix}not a usable file name ({exc.__class__.__name__}: {str(exc)[:200]})") from None
    if problem is not None:
        chosen = f" (from {os.fspath(item)!r}, read as file@selection)" if selection is not None else ""
        raise ConfigError(f"{prefix}data file {path}{chosen}{suffix} {problem}")
    if selection is None:
        return path, None, slice(None)
    return path, selection, parse_selection(selection, label or f"{path}@{selection}{suffix}")


def read_images(source: ImageSource, where: str = "") -> tuple[list[Atoms], list[str]]:
    """Read structures from a file path, a list of paths, or take a list of ``Atoms``.

    A path may select images with ASE's ``file@slice`` syntax (``"md.traj@0:100"``,
    ``"data.db@-10:"``; see :func:`data_source`).

    Raises:
        ConfigError: a file is missing or unreadable, a selection is malformed, or there are
            no structures.
    """
    import ase.io

    if isinstance(source, Dataset):
        return list(source.images), list(source.origins)
    items: list[Any] = [source] if isinstance(source, (str, os.PathLike, Atoms)) else list(source)
    images: list[Atoms] = []
    origins: list[str] = []
    for item in items:
        if isinstance(item, Atoms):
            origins.append(f"image {len(images)}")
            images.append(item)
            continue
        suffix = f" ({where})" if where else ""
        path, selection, index = checked_source(item, suffix=suffix)
        label = f"{path}{suffix}"
        size = path.stat().st_size
        if size == 0:
            raise DataError(f"data file {label} is empty; give a file with at least one labelled structure")
        memory.check(READ_FACTOR * size, f"reading data file {label} ({memory.human(size)})")
        try:  # the selection is parsed here: ASE must not split the name at an '@' again. parallel=False:
            # under MPI, ASE would otherwise read on rank 0 and broadcast (a hidden collective call).
            read = ase.io.read(str(path), index=index, do_not_split_by_at_sign=True, parallel=False)
        except Exception as exc:  # noqa: BLE001 - ASE raises many types for bad files
            picked = f" (selection @{selection})" if selection is not None else ""
            raise ConfigError(f"cannot read data file {label}{picked}: {type(exc).__name__}: {exc}") from exc
        read = read if isinstance(read, list) else [read]
        if selection is not None and not read:
            raise DataError(f"{path}@{selection}{suffix}: the selection picks no images; check the slice")
        for k in range(len(read)):
            position = _file_index(index, k)
            origins.append(f"{path}, image {position}" if position is not None
                           else f"{path}@{selection}, image {k} of the selection")
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


def all_have_forces(source: ImageSource) -> bool:
    """Whether every structure of ``source`` carries reference forces (read, not checked further)."""
    if isinstance(source, Dataset):
        return all(f is not None for _, f in source.targets)
    images, _ = read_images(source)
    return all(a.calc is not None and "forces" in getattr(a.calc, "results", {}) for a in images)


def read_targets(
    atoms: Atoms, origin: str, forces: bool
) -> tuple[float, NDArray[np.float64] | None]:
    """Return (energy eV, forces eV/A or ``None``) of a labelled structure.

    The forces are the calculator's, without the structure's constraints applied (as Amp
    reads them): an atom held fixed (``FixAtoms``) still has its real force, which is what
    the model predicts and is trained on, not the zero a constrained ``get_forces()`` gives.

    Raises:
        DataError: the energy (or forces, when asked) is missing or not finite.
    """
    if atoms.calc is None:
        raise DataError(f"{origin}: no reference energy (the structure has no calculator or stored "
                        "results); label it, e.g. write it with its energy to an .xyz/.traj file",
                        origin=origin, missing="energy")
    try:
        energy = float(atoms.get_potential_energy())
    except Exception as exc:  # noqa: BLE001 - calculators raise many types
        raise DataError(f"{origin}: no reference energy ({type(exc).__name__}: {exc})",
                        origin=origin, missing="energy") from exc
    if not np.isfinite(energy):
        raise DataError(f"{origin}: reference energy is {energy}; fix or drop this image")
    if not forces:
        return energy, None
    try:
        values = np.array(atoms.get_forces(apply_constraint=False), dtype=np.float64)  # fixed atoms too
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{origin}: no reference forces, needed because forces are trained "
                        f"({type(exc).__name__}: {exc}); label them or train energies only",
                        origin=origin, missing="forces") from exc
    if values.shape != (len(atoms), 3):
        raise DataError(f"{origin}: reference forces have shape {values.shape}, expected {(len(atoms), 3)}")
    if not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        raise DataError(f"{origin}: reference force on atom {bad} is not finite; fix or drop this image")
    return energy, values


def check_elements(images: Sequence[Atoms], origins: Sequence[str], known: Sequence[str] | None,
                   who: str, *, trained: bool = False) -> None:
    """Raise :class:`DataError` for the first element that ``who`` does not know.

    Args:
        trained: ``who`` belongs to a potential whose model already has its parameters
            (trained or loaded): the advice is then to retrain with the element in the
            data, since adding it to a trained potential's parameters cannot work.
    """
    if known is None:
        return
    allowed = {chemical_symbols.index(s) for s in known}
    for atoms, origin in zip(images, origins):
        unknown = set(np.unique(atoms.numbers).tolist()) - allowed
        if unknown:
            names = ", ".join(sorted(chemical_symbols[z] for z in unknown))
            fix = ("the potential was trained without them and cannot predict them; retrain it with "
                   "such images in the training data" if trained else "add them to its parameters")
            raise DataError(f"{origin}: element(s) {names} unknown to {who}, which knows "
                            f"{', '.join(known)}; {fix}, or drop such images")


def duplicate_warning(hashes: Sequence[str], origins: Sequence[str]) -> str | None:
    """Return a warning line when images repeat (same content hash), else ``None``.

    The line gives how many images repeat an earlier one and the origins of one such pair.
    """
    first: dict[str, int] = {}
    pair: tuple[int, int] | None = None
    count = 0
    for k, digest in enumerate(hashes):
        if digest in first:
            count += 1
            pair = pair or (first[digest], k)
        else:
            first[digest] = k
    if pair is None:
        return None
    return (f"warning: {count} of {len(hashes)} images duplicate an earlier one (same atoms, positions, "
            f"cell and pbc), e.g. {origins[pair[0]]} and {origins[pair[1]]}; each copy counts again in the "
            "loss and weights that image more (Amp's weight_duplicates); drop the copies unless intended")


def split_dataset(data: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Split ``data`` by image into (training, validation) at random, reproducibly from ``seed``.

    The validation part has ``ceil(fraction * n)`` images (at least one; at least one is left
    for training); both keep the original image order.
    """
    n = len(data)
    if n < 2:
        raise DataError("validation_fraction needs at least two images (one to train on, one to validate)")
    count = min(n - 1, max(1, math.ceil(fraction * n)))
    chosen = set(np.random.default_rng(seed).permutation(n)[:count].tolist())
    parts = ([k for k in range(n) if k not in chosen], sorted(chosen))
    return tuple(Dataset([data.images[k] for k in ks], [data.origins[k] for k in ks],  # type: ignore[return-value]
                         [data.hashes[k] for k in ks], [data.targets[k] for k in ks]) for ks in parts)


def load_dataset(source: ImageSource, *, forces: bool, where: str = "", targets: bool = True) -> Dataset:
    """Read, validate and hash structures (and their targets when ``targets``); a :class:`Dataset` passes through."""
    if isinstance(source, Dataset):
        if forces and targets and any(f is None for _, f in source.targets):
            raise DataError("the data set given was read without forces, and forces are trained")
        return source
    images, origins = read_images(source, where)
    for atoms, origin in zip(images, origins):
        check_structure(atoms, origin)
    labels = [read_targets(a, o, forces) if targets else (0.0, None) for a, o in zip(images, origins)]
    return Dataset(images, origins, [image_hash(a) for a in images], labels)
