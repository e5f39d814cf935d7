"""Error statistics of a potential on labelled data, per file (``amp evaluate``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from amp_core.errors import ExtrapolationWarning
from amp_core.images import load_dataset
from amp_core.progress import Progress


@dataclass(frozen=True)
class FileErrors:
    """Errors of a potential on one data file.

    Energies are compared per atom (eV/atom); forces per Cartesian component (eV/A). The
    force RMSE is Amp's: the root of the mean over images of each image's mean squared
    component error, as in the training log. ``extrapolating`` is the fraction of atoms the
    potential flags as outside its training range (``None`` when it has no training range).

    For an ensemble (``results["energy_std"]``), ``energy_spearman`` is the Spearman rank
    correlation over images between the members' energy spread and the absolute energy
    error of their mean, and ``force_spearman`` the same over atoms between ``forces_std`` and
    the length of the force error: how well the spread ranks the real errors (1: perfectly;
    0: not at all). ``None`` for a single model, or with fewer than 3 images (atoms).
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
    extrapolating: float | None = None
    energy_spearman: float | None = None
    force_spearman: float | None = None


def file_errors(potential: Any, source: str, forces: bool, progress: bool | None = None) -> FileErrors:
    """Predict every image of ``source`` (a file, ``file@slice`` allowed) with ``potential``; return the errors.

    ``progress``: show a progress line on stderr (``None``: when stderr is a terminal).
    """
    data = load_dataset(source, forces=forces)
    shown = Progress(f"predicting {Path(source).name}", len(data), enabled=progress)
    energy, force_sq, force_abs, force_max, components = [], [], 0.0, 0.0, 0
    flagged: int | None = None
    spreads: dict[str, list[Any]] = {"energy": [], "energy_error": [], "forces": [], "force_error": []}
    for atoms, (reference, reference_forces) in zip(data.images, data.targets):
        with warnings.catch_warnings():  # the fraction is reported in the table instead
            warnings.simplefilter("ignore", ExtrapolationWarning)
            predicted, predicted_forces = predict(potential, atoms, forces and reference_forces is not None)
        energy.append((predicted - reference) / len(atoms))
        if "energy_std" in potential.results:
            spreads["energy"].append(potential.results["energy_std"])
            spreads["energy_error"].append(abs(energy[-1]))
        found = potential.results.get("extrapolating_atoms")
        if found is not None:
            flagged = (flagged or 0) + len(found)
        if forces and reference_forces is not None:
            error = predicted_forces - reference_forces
            force_sq.append(float(np.mean(error**2)))
            force_abs += float(np.abs(error).sum())
            force_max = max(force_max, float(np.abs(error).max()))
            components += error.size
            if "forces_std" in potential.results:
                spreads["forces"].append(potential.results["forces_std"])
                spreads["force_error"].append(np.linalg.norm(error, axis=1))
        shown(len(energy))
    e = np.abs(np.array(energy))
    values: dict[str, Any] = {"energy_mae": float(e.mean()), "energy_rmse": float(np.sqrt(np.mean(e**2))),
                              "energy_max": float(e.max())}
    if forces:
        values.update(force_mae=force_abs / max(components, 1), force_rmse=float(np.sqrt(np.mean(force_sq))),
                      force_max=force_max)
    n_atoms = sum(len(a) for a in data.images)
    values["extrapolating"] = None if flagged is None else flagged / max(n_atoms, 1)
    values["energy_spearman"] = spearman(spreads["energy"], spreads["energy_error"])
    if spreads["forces"]:
        values["force_spearman"] = spearman(np.concatenate(spreads["forces"]), np.concatenate(spreads["force_error"]))
    return FileErrors(source, len(data), n_atoms, **values)


def predict(potential: Any, atoms: Any, forces: bool) -> tuple[float, Any]:
    """The energy (eV) of ``atoms`` and, with ``forces``, its forces (eV/A; fixed atoms' too, as trained)
    by ``potential``, from one calculator pass (energy alone first would be a values-only pass, then
    a full one); ``None`` for forces without ``forces``. ``atoms`` is not changed."""
    atoms = atoms.copy()
    atoms.calc = potential
    predicted = atoms.get_forces(apply_constraint=False) if forces else None
    return float(atoms.get_potential_energy()), predicted


def summary(rows: list[FileErrors]) -> FileErrors:
    """The errors of ``rows`` (files) taken together: RMSEs over all their images (as the loss
    pipeline's: per image, the force term each image's mean squared component error), MAEs over
    all images (energies) and components (forces), the largest errors."""
    images = sum(r.images for r in rows)
    values: dict[str, Any] = {
        "energy_mae": sum(r.energy_mae * r.images for r in rows) / images,
        "energy_rmse": float(np.sqrt(sum(r.energy_rmse**2 * r.images for r in rows) / images)),
        "energy_max": max(r.energy_max for r in rows)}
    if all(r.force_rmse is not None for r in rows):
        components = [3 * r.atoms for r in rows]
        values.update(force_mae=sum(float(r.force_mae or 0) * n for r, n in zip(rows, components)) / sum(components),
                      force_rmse=float(np.sqrt(sum(float(r.force_rmse or 0)**2 * r.images for r in rows) / images)),
                      force_max=max(float(r.force_max or 0) for r in rows))
    return FileErrors("all", images, sum(r.atoms for r in rows), **values)


def spearman(spread: Any, error: Any) -> float | None:
    """Spearman rank correlation of ``spread`` and ``error`` (``None`` below 3 values or when either is constant)."""
    from scipy.stats import spearmanr

    spread, error = np.asarray(spread, dtype=np.float64), np.asarray(error, dtype=np.float64)
    if spread.size < 3 or np.ptp(spread) == 0 or np.ptp(error) == 0:
        return None
    return float(spearmanr(spread, error).statistic)


def table(rows: list[FileErrors]) -> list[str]:
    """Lines of a table of ``rows`` (energies in meV/atom, forces in eV/A)."""
    forces = any(r.force_rmse is not None for r in rows)
    header = f"{'file':<32} {'images':>6} {'atoms':>7} {'E MAE':>8} {'E RMSE':>8} {'E max':>8}"
    header += f" {'F MAE':>7} {'F RMSE':>7} {'F max':>7}" if forces else ""
    extrapolation = any(r.extrapolating is not None for r in rows)
    header += f" {'extrap.':>7}" if extrapolation else ""
    ensemble = any(r.energy_spearman is not None or r.force_spearman is not None for r in rows)
    header += f" {'E rho':>6} {'F rho':>6}" if ensemble else ""
    notes = ["E: meV/atom, F: eV/A"]
    if extrapolation:
        notes.append("extrap.: fraction of atoms outside the training range")
    if ensemble:
        notes.append("rho: Spearman correlation of the ensemble's spread with the error, per image (E), per atom (F)")
    lines = [header + "   (" + "; ".join(notes) + ")"]
    for r in rows:
        name = r.name if len(r.name) <= 32 else "..." + r.name[-29:]
        line = (f"{name:<32} {r.images:>6} {r.atoms:>7} {1e3 * r.energy_mae:8.3f} {1e3 * r.energy_rmse:8.3f} "
                f"{1e3 * r.energy_max:8.3f}")
        if forces and r.force_rmse is not None:
            line += f" {r.force_mae:7.4f} {r.force_rmse:7.4f} {r.force_max:7.4f}"
        if extrapolation:
            line += f" {r.extrapolating:7.4f}" if r.extrapolating is not None else f" {'-':>7}"
        if ensemble:
            line += "".join(f" {v:6.3f}" if v is not None else f" {'-':>6}" for v in (r.energy_spearman,
                                                                                    r.force_spearman))
        lines.append(line)
    return lines
