"""Parity and convergence plots (PNG, matplotlib) for ``amp plot``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from amp_core.errors import AmpError, ConfigError

COLUMNS = ("iter", "time", "loss", "energy_rmse", "energy_maxresid", "force_rmse", "force_maxresid")


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise AmpError("plots need matplotlib: pip install matplotlib (or, in amp-core's source folder, "
                       "pip install '.[plot]')") from exc
    return plt


def read_log(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Return the iteration rows of a ``train-log.txt`` as columns (see ``COLUMNS``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"log file {path} does not exist")
    rows, validated = [], False
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields[:1] == ["iter"]:
            validated = "V_E_rmse" in fields  # a run with validation columns
        if len(fields) >= len(COLUMNS) and fields[0].isdigit():
            try:
                row = [float(x) for x in fields[: len(COLUMNS)]]
            except ValueError:
                continue
            extra = fields[len(COLUMNS): len(COLUMNS) + 2] if validated else []
            row += [float(x) if x != "-" else np.nan for x in extra] + [np.nan] * (2 - len(extra))
            rows.append(row)
    if not rows:
        members = path.parent / "members"
        if (members / "1" / "train-log.txt").is_file():  # an ensemble's: each member logs its own rows
            raise ConfigError(f"{path} is an ensemble's log: each member's rows are in {members}/K/train-log.txt "
                              f"(K = 1 to {len(list(members.glob('*/train-log.txt')))}); plot one of those")
        raise ConfigError(f"{path} holds no iteration rows; is it a train-log.txt of 'amp train'?")
    data = np.array(rows)
    names = (*COLUMNS, "validation_energy_rmse", "validation_force_rmse")
    return {name: data[:, k] for k, name in enumerate(names)}


def convergence_plot(log: str | os.PathLike[str], output: str | None = None) -> Path:
    """Plot loss and error measures against iteration; return the PNG path."""
    data = read_log(log)  # a bad log is reported before matplotlib is looked for
    plt = _pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(6, 6), sharex=True)
    axes[0].semilogy(data["iter"], data["loss"], label="loss")
    axes[0].set_ylabel("loss")
    for key in ("energy_rmse", "energy_maxresid", "force_rmse", "force_maxresid"):
        if np.any(data[key] > 0):
            axes[1].semilogy(data["iter"], data[key], label=key)
    for key in ("validation_energy_rmse", "validation_force_rmse"):
        seen = ~np.isnan(data[key])
        if np.any(data[key][seen] > 0):
            axes[1].semilogy(data["iter"][seen], data[key][seen], "o--", ms=3, label=key)
    axes[1].set_xlabel("iteration")
    axes[1].set_ylabel("error (eV/atom, eV/A)")
    axes[1].legend()
    target = Path(output or Path(log).with_name("convergence.png"))
    fig.tight_layout()
    fig.savefig(target, dpi=120)
    plt.close(fig)
    return target


def parity_plot(model: str | os.PathLike[str], data: Sequence[str], output: str | None = None) -> Path:
    """Plot predicted against reference energies per atom (and forces); return the PNG path."""
    from amp_core.calculator import load
    from amp_core.evaluation import predict
    from amp_core.images import load_dataset
    from amp_core.progress import Progress

    plt = _pyplot()
    potential = load(model)
    forces = "forces" in potential.implemented_properties
    dataset = load_dataset(list(data), forces=forces)
    shown = Progress("predicting", len(dataset))
    e_ref, e_pred, f_ref, f_pred = [], [], [], []
    for atoms, (energy, ref_forces) in zip(dataset.images, dataset.targets):
        predicted, predicted_forces = predict(potential, atoms, forces and ref_forces is not None)
        if predicted_forces is not None and ref_forces is not None:
            f_ref.append(ref_forces.ravel())
            f_pred.append(predicted_forces.ravel())
        e_ref.append(energy / len(atoms))
        e_pred.append(predicted / len(atoms))
        shown(len(e_pred))
    panels = [("energy (eV/atom)", np.array(e_ref), np.array(e_pred))]
    if f_ref:
        panels.append(("force (eV/A)", np.concatenate(f_ref), np.concatenate(f_pred)))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5), squeeze=False)
    for ax, (label, ref, pred) in zip(axes[0], panels):
        ax.plot(ref, pred, ".", ms=3)
        lo, hi = min(ref.min(), pred.min()), max(ref.max(), pred.max())
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.5)
        rmse = float(np.sqrt(np.mean((pred - ref) ** 2)))
        ax.set_title(f"{label}: RMSE {rmse:.3g}")
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"predicted {label}")
    target = Path(output or Path(model).with_name("parity.png"))
    fig.tight_layout()
    fig.savefig(target, dpi=120)
    plt.close(fig)
    return target
