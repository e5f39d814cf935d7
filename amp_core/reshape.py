"""Reshape one chunk's structures, targets and fingerprints into rectangular arrays.

The layout (all keys; ``Z`` is an atomic number, ``n`` the chunk's atom count over
all its images, ``I`` its image count):

* ``natoms`` (I,) int64: atoms per image.
* ``atom_image`` (n,) int64: image index (within the chunk) of each atom.
* ``numbers`` (n,) int64: atomic numbers.
* ``positions`` (n, 3) float64, Angstrom; ``cell`` (I, 3, 3) float64, Angstrom;
  ``pbc`` (I, 3) bool.
* ``energy`` (I,) float64, eV: reference energies.
* ``forces`` (n, 3) float64, eV/A: reference forces (zeros when not trained).
* ``elements`` (E,) int64: sorted atomic numbers present in the chunk.

With fingerprints, for every ``Z`` in ``elements``:

* ``fp_Z`` (n_Z, F_Z) float64: fingerprints of the atoms of element Z, in chunk order.
* ``atoms_Z`` (n_Z,) int64: chunk atom index of each row of ``fp_Z``.

With fingerprint derivatives, for every ``Z``:

* ``dcentre_Z`` (P_Z,) int64: row of ``fp_Z`` of the centre atom of each block.
* ``dneighbour_Z`` (P_Z,) int64: chunk atom index of the atom that moves.
* ``dfp_Z`` (P_Z, 3, F_Z) float64: d fp_Z[dcentre] / d positions[dneighbour].

The arrays of a chunk are written once as ``<key>.npy`` files in one folder and
memory-mapped by the worker that owns the chunk.
"""

from __future__ import annotations

import json
import os
import uuid
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from ase import Atoms

    from amp_core.data import ImageFingerprints


def build_arrays(
    images: Sequence[Atoms],
    targets: Sequence[tuple[float, NDArray[np.float64] | None]],
    fingerprints: Sequence[ImageFingerprints] | None,
) -> dict[str, NDArray[Any]]:
    """Return the rectangular arrays of one chunk (layout in the module docstring).

    Args:
        images: the chunk's structures.
        targets: (energy eV, forces (n_atoms, 3) eV/A or ``None``) per image.
        fingerprints: descriptor output per image, or ``None`` for raw structures.
    """
    natoms = np.array([len(a) for a in images], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(natoms)])
    arrays: dict[str, NDArray[Any]] = {
        "natoms": natoms,
        "atom_image": np.repeat(np.arange(len(images), dtype=np.int64), natoms),
        "numbers": _concat([a.numbers.astype(np.int64) for a in images], (0,), np.int64),
        "positions": _concat([a.positions for a in images], (0, 3), np.float64),
        "cell": np.array([a.cell.array for a in images], dtype=np.float64).reshape(-1, 3, 3),
        "pbc": np.array([a.pbc for a in images], dtype=bool).reshape(-1, 3),
        "energy": np.array([t[0] for t in targets], dtype=np.float64),
        "forces": _concat(
            [np.zeros((len(a), 3)) if t[1] is None else t[1] for a, t in zip(images, targets)],
            (0, 3),
            np.float64,
        ),
    }
    elements = np.unique(arrays["numbers"])
    arrays["elements"] = elements.astype(np.int64)
    if fingerprints is not None:
        for z in elements:
            arrays.update(_element_arrays(int(z), fingerprints, offsets))
    return arrays


def _element_arrays(
    z: int, fingerprints: Sequence[ImageFingerprints], offsets: NDArray[np.int64]
) -> dict[str, NDArray[Any]]:
    rows, atoms, centres, neighbours, blocks = [], [], [], [], []
    width = None
    row0 = 0
    for k, fp in enumerate(fingerprints):
        mine = np.flatnonzero(fp.numbers == z)
        if len(mine) == 0:
            continue
        length = int(fp.lengths[mine[0]])
        if width is None:
            width = length
        elif length != width:
            raise ValueError(f"element {z} has {length} features in one image and {width} in another")
        rows.append(fp.values[mine, :width])
        atoms.append(mine + offsets[k])
        if fp.pairs is not None and fp.derivatives is not None:
            row_of = np.full(len(fp.numbers), -1, dtype=np.int64)
            row_of[mine] = np.arange(len(mine)) + row0
            keep = fp.numbers[fp.pairs[:, 0]] == z
            centres.append(row_of[fp.pairs[keep, 0]])
            neighbours.append(fp.pairs[keep, 1] + offsets[k])
            blocks.append(fp.derivatives[keep, :, :width])
        row0 += len(mine)
    assert width is not None
    out: dict[str, NDArray[Any]] = {
        f"fp_{z}": np.concatenate(rows).astype(np.float64, copy=False),
        f"atoms_{z}": np.concatenate(atoms).astype(np.int64),
    }
    if blocks:
        out[f"dcentre_{z}"] = _concat(centres, (0,), np.int64)
        out[f"dneighbour_{z}"] = _concat(neighbours, (0,), np.int64)
        out[f"dfp_{z}"] = _concat(blocks, (0, 3, width), np.float64)
    return out


def _concat(parts: Sequence[NDArray[Any]], empty: tuple[int, ...], dtype: type) -> NDArray[Any]:
    if not parts:
        return np.zeros(empty, dtype=dtype)
    return np.concatenate(parts).astype(dtype, copy=False)


def save_arrays(arrays: Mapping[str, NDArray[Any]], folder: str | os.PathLike[str]) -> None:
    """Write each array as ``folder/<key>.npy``, then the ``ok`` marker (last, fsynced).

    The marker lists every key with a CRC-32 of its array, so :func:`verify_arrays` finds a
    damaged or truncated file; each file is written under a temporary name and renamed.
    """
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    (path / "ok").unlink(missing_ok=True)
    sums = {}
    for key, value in arrays.items():
        value = np.ascontiguousarray(value)
        partial = path / f".{key}.{uuid.uuid4().hex}.partial"
        try:
            with open(partial, "wb") as handle:
                np.save(handle, value, allow_pickle=False)
            os.replace(partial, path / f"{key}.npy")
        finally:
            partial.unlink(missing_ok=True)
        sums[key] = _crc(value)
    marker = path / f".ok.{uuid.uuid4().hex}.partial"
    with open(marker, "w") as handle:
        json.dump({"format": MARKER_FORMAT, "arrays": sums}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(marker, path / "ok")


MARKER_FORMAT = "amp-core-arrays-1"


def _crc(value: NDArray[Any]) -> str:
    """CRC-32 of an array's dtype, shape and bytes."""
    crc = zlib.crc32(f"{value.dtype}:{value.shape}".encode())
    return f"{zlib.crc32(np.ascontiguousarray(value).view(np.uint8).reshape(-1).data, crc):08x}"


def _keys(path: Path) -> dict[str, str]:
    marker = json.loads((path / "ok").read_text())
    if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT:
        raise ValueError(f"{path / 'ok'} is not an array-folder marker of this amp-core")
    return dict(marker["arrays"])


def verify_arrays(folder: str | os.PathLike[str]) -> str | None:
    """Return ``None`` when a :func:`save_arrays` folder is complete and intact, else what is wrong."""
    path = Path(folder)
    if not (path / "ok").exists():
        return "incomplete (no marker)"
    try:
        for key, expected in _keys(path).items():
            if _crc(np.load(path / f"{key}.npy", mmap_mode="r", allow_pickle=False)) != expected:
                return f"{key}.npy fails its checksum"
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    return None


def load_arrays(folder: str | os.PathLike[str], mmap: bool = True) -> dict[str, NDArray[Any]]:
    """Map (or read) every array a :func:`save_arrays` folder holds (checked by :func:`verify_arrays`)."""
    path = Path(folder)
    mode: Literal["r"] | None = "r" if mmap else None
    return {key: np.load(path / f"{key}.npy", mmap_mode=mode, allow_pickle=False) for key in _keys(path)}
