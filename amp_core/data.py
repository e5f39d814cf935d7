"""Data records that cross plugin boundaries: data sets, fingerprints, loss settings and loss parts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from ase import Atoms


@dataclass(frozen=True)
class Dataset:
    """Structures with their targets, hashes and where each came from.

    Attributes:
        images: the structures.
        origins: ``"file.traj, image 3"`` (or ``"image 3"``) per structure, for messages.
        hashes: content hash of (numbers, positions, cell, pbc) per structure.
        targets: (energy eV, forces (n_atoms, 3) eV/A or ``None``) per structure.
    """

    images: list[Atoms]
    origins: list[str]
    hashes: list[str]
    targets: list[tuple[float, NDArray[np.float64] | None]]

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True, eq=False)
class ImageFingerprints:
    """A descriptor's output for one structure.

    Attributes:
        numbers: (n_atoms,) int64 atomic numbers, in atom order.
        values: (n_atoms, n_features) float64; row ``i`` is atom ``i``'s fingerprint.
            Atoms of one element share one length; rows of elements with fewer
            features than ``n_features`` are zero past ``lengths[i]``.
        lengths: (n_atoms,) int64 number of features of each atom.
        pairs: (n_pairs, 2) int64 ``(i, m)``, or ``None`` without derivatives: every
            centre ``i`` and every atom ``m`` (``m == i`` included) whose position
            moves ``values[i]``, each pair once, sorted by ``i`` then ``m``.
        derivatives: (n_pairs, 3, n_features) float64, or ``None``:
            ``derivatives[p, l, f] = d values[i, f] / d positions[m, l]`` (1/Angstrom
            times the fingerprint unit) for ``(i, m) = pairs[p]``.
    """

    numbers: NDArray[np.int64]
    values: NDArray[np.float64]
    lengths: NDArray[np.int64]
    pairs: NDArray[np.int64] | None = None
    derivatives: NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, atom: int) -> NDArray[np.float64]:
        """Return atom ``atom``'s fingerprint, (lengths[atom],) float64."""
        return self.values[atom, : self.lengths[atom]]

    @property
    def has_derivatives(self) -> bool:
        """Whether derivative blocks were computed."""
        return self.derivatives is not None

    def dense_derivatives(self) -> NDArray[np.float64]:
        """Return the dense array (n_atoms, n_atoms, 3, n_features).

        ``out[i, m, l, f] = d values[i, f] / d positions[m, l]``; for tests and
        small systems only (memory grows as n_atoms squared).
        """
        if self.pairs is None or self.derivatives is None:
            raise ValueError("these fingerprints were computed without derivatives")
        n = len(self.numbers)
        out = np.zeros((n, n, 3, self.values.shape[1]))
        out[self.pairs[:, 0], self.pairs[:, 1]] = self.derivatives
        return out


FORCE_COEFFICIENT = 0.1
"""Default weight c_F of the force loss; the only place this number is written.

Amp's default is 0.04 (``AMP_FORCE_COEFFICIENT``); 0.1 was chosen by measurement on the mlearn
Mo and Ge sets (``benchmarks/bench_accuracy.py``): 0.04 leaves the forces under-fitted, 0.3
trades too much of the energy accuracy for them."""

AMP_FORCE_COEFFICIENT = 0.04
"""Amp's default c_F (``preset = "amp"`` comparisons, the ``amp_core.amp`` mirror)."""


@dataclass(frozen=True, init=False)
class LossSettings:
    """What the loss trains on (Amp's definitions).

    Args:
        energy_coefficient: weight c_E of the per-atom energy loss.
        force_coefficient: weight c_F of the force loss (used when ``forces``);
            ``None`` means :data:`FORCE_COEFFICIENT`.
        overfit: weight of the model's regularisation term.
        forces: whether force terms are part of the loss (computed and reported).
            ``None`` keeps the older shorthand: forces are trained when a
            ``force_coefficient`` is given.

    Raises:
        ValueError: a coefficient is negative or not finite.
    """

    energy_coefficient: float
    force_coefficient: float
    overfit: float
    forces: bool

    def __init__(self, energy_coefficient: float = 1.0, force_coefficient: float | None = None,
                 overfit: float = 0.0, forces: bool | None = None) -> None:
        values = {"energy_coefficient": energy_coefficient, "overfit": overfit,
                  "force_coefficient": FORCE_COEFFICIENT if force_coefficient is None else force_coefficient}
        for name, value in values.items():
            number = float(value)
            if not math.isfinite(number) or number < 0.0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, name, number)
        object.__setattr__(self, "forces", force_coefficient is not None if forces is None else bool(forces))

    def objective(self, energy_loss: float, force_loss: float) -> float:
        """Return the weighted loss ``c_E energy_loss (+ c_F force_loss when forces are trained)``.

        The one place the coefficients weight loss values; models call it for their
        :attr:`LossParts.loss` and weight their gradients with the same coefficients.
        """
        loss = self.energy_coefficient * energy_loss
        if self.forces:
            loss += self.force_coefficient * force_loss
        return loss


@dataclass
class LossParts:
    """One chunk's share of the loss, summed (or maxed) over its images.

    Convention (the model contract, ``docs/plugins.md``): a model returns the raw
    sums below *and* the weighted ``loss = settings.objective(energy_loss, force_loss)``
    with its gradient; the core adds chunk records and the regularisation, and weights
    nothing itself.

    Attributes:
        loss: ``settings.objective(energy_loss, force_loss)``.
        energy_loss: sum over images of ((E_pred - E_ref) / N_atoms)^2, eV^2.
        force_loss: sum over images of sum((F_pred - F_ref)^2) / (3 N_atoms), (eV/A)^2.
        energy_maxresid: max over images of |E_pred - E_ref| / N_atoms, eV.
        force_maxresid: max over force components of |F_pred - F_ref|, eV/A.
        n_images: number of images in the chunk.
        gradient: (n_parameters,) d loss / d parameters.
        members: for an ensemble (:mod:`amp_core.ensemble`), each member's own parts (the
            fields above are then their sums and maxima, the gradient their concatenation);
            empty otherwise.
    """

    loss: float
    energy_loss: float
    force_loss: float
    energy_maxresid: float
    force_maxresid: float
    n_images: int
    gradient: NDArray[np.float64]
    members: tuple[LossParts, ...] = ()

    @staticmethod
    def combine(parts: list[LossParts]) -> LossParts:
        """Add chunk parts in the order given (chunk order, for bitwise reproducibility)."""
        if not parts:
            raise ValueError("no loss parts to combine")
        members: tuple[LossParts, ...] = ()
        if parts[0].members:  # an ensemble's: each member's records combined alone, as without the others
            members = tuple(LossParts.combine([p.members[m] for p in parts]) for m in range(len(parts[0].members)))
        gradient = parts[0].gradient.copy()
        for part in parts[1:]:
            gradient += part.gradient
        loss = energy = force = 0.0
        for part in parts:  # one left-to-right sum each, in the given order
            loss += part.loss
            energy += part.energy_loss
            force += part.force_loss
        return LossParts(
            loss=loss,
            energy_loss=energy,
            force_loss=force,
            energy_maxresid=max(p.energy_maxresid for p in parts),
            force_maxresid=max(p.force_maxresid for p in parts),
            n_images=sum(p.n_images for p in parts),
            gradient=gradient,
            members=members,
        )

    @staticmethod
    def stack(members: list[LossParts]) -> LossParts:
        """Return the parts of an ensemble from its members' parts (same chunk), keeping each."""
        return LossParts(
            loss=sum(p.loss for p in members), energy_loss=sum(p.energy_loss for p in members),
            force_loss=sum(p.force_loss for p in members),
            energy_maxresid=max(p.energy_maxresid for p in members),
            force_maxresid=max(p.force_maxresid for p in members),
            n_images=members[0].n_images, gradient=np.concatenate([p.gradient for p in members]),
            members=tuple(members))


@dataclass(frozen=True)
class LossResult:
    """The loss over a data set, its parts, error measures and gradient.

    Attributes:
        loss: c_E energy_loss + c_F force_loss + overfit penalty.
        energy_loss, force_loss: as in :class:`LossParts`, summed over all images.
        energy_rmse: sqrt(energy_loss / n_images), eV/atom.
        force_rmse: sqrt(force_loss / n_images), eV/A (0 when forces are not trained).
        energy_maxresid, force_maxresid: as in :class:`LossParts`, over all images.
        gradient: (n_parameters,) d loss / d parameters, in the model's vector order.
        members: for an ensemble, each member's result (the fields above then describe all
            members together: summed losses, worst residuals, concatenated gradient); empty
            otherwise.
    """

    loss: float
    energy_loss: float
    force_loss: float
    energy_rmse: float
    force_rmse: float
    energy_maxresid: float
    force_maxresid: float
    gradient: NDArray[np.float64] = field(repr=False)
    members: tuple[LossResult, ...] = field(default=(), repr=False)
