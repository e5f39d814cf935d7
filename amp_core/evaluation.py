"""Error statistics of a potential on labelled data, per file (``amp evaluate``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from amp_core.images import load_dataset


@dataclass(frozen=True)
class FileErrors:
    """Errors of a potential on one data file.

    Energies are compared per atom (eV/atom); forces per Cartesian component (eV/A). The
    force RMSE is Amp's: the root of the mean over images of each image's mean squared
    component error, as in the training log.
    """

    name: str
    images: int
    atoms: int
    energy_mae: float
    energy_rmse: float
    energy_max: float
    force_mae: float | None = None
    force_rmse: float | None = None
    force_max: float | None = None


def file_errors(potential: Any, source: str, forces: bool) -> FileErrors:
    """Predict every image of ``source`` (a file, ``file@slice`` allowed) with ``potential``; return the errors."""
    data = load_dataset(source, forces=forces)
    energy, force_sq, force_abs, force_max, components = [], [], 0.0, 0.0, 0
    for atoms, (reference, reference_forces) in zip(data.images, data.targets):
        atoms = atoms.copy()
        atoms.calc = potential
        energy.append((atoms.get_potential_energy() - reference) / len(atoms))
        if forces and reference_forces is not None:
            error = atoms.get_forces() - reference_forces
            force_sq.append(float(np.mean(error**2)))
            force_abs += float(np.abs(error).sum())
            force_max = max(force_max, float(np.abs(error).max()))
            components += error.size
    e = np.abs(np.array(energy))
    values: dict[str, Any] = {"energy_mae": float(e.mean()), "energy_rmse": float(np.sqrt(np.mean(e**2))),
                              "energy_max": float(e.max())}
    if forces:
        values.update(force_mae=force_abs / max(components, 1), force_rmse=float(np.sqrt(np.mean(force_sq))),
                      force_max=force_max)
    return FileErrors(source, len(data), sum(len(a) for a in data.images), **values)


def table(rows: list[FileErrors]) -> list[str]:
    """Lines of a table of ``rows`` (energies in meV/atom, forces in eV/A)."""
    forces = any(r.force_rmse is not None for r in rows)
    header = f"{'file':<32} {'images':>6} {'atoms':>7} {'E MAE':>8} {'E RMSE':>8} {'E max':>8}"
    header += f" {'F MAE':>7} {'F RMSE':>7} {'F max':>7}" if forces else ""
    lines = [header + "   (E: meV/atom, F: eV/A)"]
    for r in rows:
        name = r.name if len(r.name) <= 32 else "..." + r.name[-29:]
        line = (f"{name:<32} {r.images:>6} {r.atoms:>7} {1e3 * r.energy_mae:8.3f} {1e3 * r.energy_rmse:8.3f} "
                f"{1e3 * r.energy_max:8.3f}")
        if forces and r.force_rmse is not None:
            line += f" {r.force_mae:7.4f} {r.force_rmse:7.4f} {r.force_max:7.4f}"
        lines.append(line)
    return lines
