"""Content-addressed fingerprint store in a run directory, and atomic JSON files.

Layout: ``<root>/<descriptor key>/<image hash>.npz`` (values and derivatives) or
``<image hash>.v.npz`` (values only). The descriptor key hashes the descriptor's
name, provider version and parameters, so a changed parameter never reuses stale
entries. Entries are written to ``tmp/`` and renamed into place (atomic). An entry is an
uncompressed ``.npz`` zip, whose members each carry a CRC-32 of their bytes (the ``.npy``
header with name, dtype and shape, and the data) that :func:`read_entry` checks as it
reads them, so a corrupt or partial entry is detected, removed and recomputed, never
used. (Entries written before this carried a second CRC of their own, a ``checksum``
member; it is still checked when present.) No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from amp_core.data import ImageFingerprints

STALE_PARTIAL = 3600.0
"""Age (s) after which :meth:`FingerprintStore.merge` removes a partial entry: a younger one may
belong to a writer still at work (several processes share a store under MPI)."""

_FIELDS = ("numbers", "values", "lengths", "pairs", "derivatives")


def write_json(document: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``document`` as JSON to ``path`` atomically (unique temporary name, then rename).

    numpy arrays and scalars are written as lists and numbers. Potential files and
    checkpoints are written with it.
    """
    target = Path(path)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        partial.write_text(json.dumps(document, indent=1, default=_jsonable))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def descriptor_key(name: str, version: str, params: dict[str, Any]) -> str:
    """Return the store key of a descriptor (hex, 20 characters)."""
    text = json.dumps({"name": name, "version": version, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    """CRC-32 over names, dtypes, shapes and bytes of the arrays (the ``checksum`` member of older entries)."""
    crc = 0
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        crc = zlib.crc32(f"{key}:{value.dtype}:{value.shape}".encode(), crc)
        crc = zlib.crc32(value.view(np.uint8).reshape(-1).data, crc)
    return f"crc32:{crc:08x}"


def write_entry(fingerprints: ImageFingerprints, path: Path) -> None:
    """Write ``fingerprints`` to ``path`` atomically (temporary name, then rename)."""
    arrays = {k: getattr(fingerprints, k) for k in _FIELDS if getattr(fingerprints, k) is not None}
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    with open(partial, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, value in arrays.items():  # np.savez's layout, without its copy of each array
            value = np.ascontiguousarray(value)
            with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                npy_format.write_array_header_1_0(member, npy_format.header_data_from_array_1_0(value))
                member.write(value.reshape(-1).view(np.uint8).data)
    os.replace(partial, path)


def read_entry(path: Path) -> ImageFingerprints:
    """Read an entry; raise ``ValueError`` when it is corrupt or incomplete.

    Every member is read whole, so the zip's CRC-32 of each is checked (``BadZipFile`` on a
    mismatch); an older entry's ``checksum`` member is checked too.
    """
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k != "checksum"}
            stored = str(data["checksum"]) if "checksum" in data.files else None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"unreadable store entry {path}: {exc}") from exc
    if stored is not None and stored != _checksum(arrays):
        raise ValueError(f"store entry {path} fails its checksum")
    if set(arrays) - set(_FIELDS) or not {"numbers", "values", "lengths"} <= set(arrays):
        raise ValueError(f"store entry {path} holds {sorted(arrays)}, not a fingerprint entry's arrays")
    fields: dict[str, Any] = {k: arrays.get(k) for k in _FIELDS}
    return ImageFingerprints(**fields)


def entry_name(image_hash: str, derivatives: bool) -> str:
    """File name of a store entry: ``<hash>.npz`` (values and derivatives) or ``<hash>.v.npz`` (values only)."""
    return f"{image_hash}.npz" if derivatives else f"{image_hash}.v.npz"


class FingerprintStore:
    """Fingerprints of one descriptor configuration, keyed by image hash."""

    def __init__(self, root: str | os.PathLike[str], key: str) -> None:
        self.folder = Path(root) / key
        self.tmp = self.folder / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, image_hash: str, derivatives: bool) -> Path:
        """Where the entry for ``image_hash`` lives."""
        return self.folder / entry_name(image_hash, derivatives)

    def has(self, image_hash: str, derivatives: bool) -> bool:
        """Whether a (possibly corrupt: see :meth:`get`) entry exists."""
        if self.path(image_hash, True).exists():
            return True
        return not derivatives and self.path(image_hash, False).exists()

    def read(self, image_hash: str, derivatives: bool) -> tuple[ImageFingerprints | None, str]:
        """Return ``(fingerprints, "")``, or ``(None, why)``: ``"missing"``, or what is wrong with a damaged
        entry, which is removed so that it is recomputed. An entry with derivatives also serves values."""
        why = "missing"
        for path in [self.path(image_hash, True)] + ([] if derivatives else [self.path(image_hash, False)]):
            if path.exists():
                try:
                    return read_entry(path), ""
                except ValueError as exc:
                    why = str(exc)
                    path.unlink(missing_ok=True)
        return None, why

    def get(self, image_hash: str, derivatives: bool) -> ImageFingerprints | None:
        """Return the stored fingerprints, or ``None`` (missing; a damaged entry is removed, with a warning)."""
        fingerprints, why = self.read(image_hash, derivatives)
        if fingerprints is None and why != "missing":
            warnings.warn(f"{why}; removing it, it will be recomputed", RuntimeWarning, stacklevel=2)
        return fingerprints

    def merge(self) -> int:
        """Move finished temporary entries (``tmp/<hash>[.v].npz``) into the store; return how many."""
        moved = 0
        for path in sorted(self.tmp.glob("*.npz")):
            if path.name.startswith("."):
                continue
            try:
                os.replace(path, self.folder / path.name)
            except FileNotFoundError:  # another process (an MPI rank) merging the same folder moved it
                continue
            moved += 1
        for stale in self.tmp.glob(".*.partial"):
            try:
                if time.time() - stale.stat().st_mtime > STALE_PARTIAL:  # another writer may be busy with it
                    stale.unlink(missing_ok=True)
            except FileNotFoundError:
                continue
        return moved
