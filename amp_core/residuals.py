"""Per-residual Jacobian rows: what second-order and Kalman-filter optimisers ask a chunk for.

The training loss (without regularisation) is a sum of squared, weighted residuals::

    loss = sum over images n of r_n^2 + sum over force components (m, l) of r_ml^2,
    r_n  = sqrt(c_E) (E_pred - E_ref) / N_n                       (eV per atom),
    r_ml = sqrt(c_F / (3 N_n(m))) (F_pred[m, l] - F_ref[m, l])   (eV/Angstrom),

(``N_n``: atoms of image ``n``; ``n(m)``: the image of atom ``m``; the force residuals exist
only when forces are trained), so ``loss = sum(r^2)`` and ``gradient = 2 J^T r`` over all
residuals. A model with the :data:`~amp_core.protocols.RESIDUAL_JACOBIAN` capability gives,
for the residuals a :class:`ResidualRequest` names in one chunk, their values and their
rows of ``J = d r / d parameters`` (:class:`Residuals`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, eq=False)
class ResidualRequest:
    """Which residuals of one chunk to evaluate.

    Attributes:
        images: (a,) int64 chunk-local image indices (0 .. n_images - 1): their energy residuals.
        components: (b,) int64 chunk-local force components ``3 * atom + axis`` (atom 0 ..
            n_atoms - 1 in the chunk's atom order, axis 0..2): their force residuals (empty
            when forces are not trained).
    """

    images: NDArray[np.int64]
    components: NDArray[np.int64]

    @staticmethod
    def of(images: object = (), components: object = ()) -> ResidualRequest:
        """Return a request from any integer sequences."""
        return ResidualRequest(np.asarray(images, dtype=np.int64).reshape(-1),
                               np.asarray(components, dtype=np.int64).reshape(-1))

    def check(self, n_images: int, n_atoms: int, forces: bool, where: str) -> None:
        """Raise ``ValueError`` naming ``where`` when an index is out of range (or forces are asked untrained)."""
        if self.images.size and (self.images.min() < 0 or self.images.max() >= n_images):
            raise ValueError(f"{where}: image indices must be 0 .. {n_images - 1}, got {self.images.tolist()}")
        if self.components.size and not forces:
            raise ValueError(f"{where}: force residuals asked, but forces are not trained")
        if self.components.size and (self.components.min() < 0 or self.components.max() >= 3 * n_atoms):
            raise ValueError(f"{where}: force components must be 0 .. {3 * n_atoms - 1}")


@dataclass(frozen=True, eq=False)
class Residuals:
    """Residuals of one chunk and their Jacobian rows (energies first, then forces, in request order).

    Attributes:
        values: (a + b,) float64 weighted residuals (module docstring): the energy residuals
            of ``request.images``, then the force residuals of ``request.components``.
        jacobian: (a + b, n_parameters) float64 d values / d parameters.
    """

    values: NDArray[np.float64]
    jacobian: NDArray[np.float64]


def residual_sizes(function: object, optimizer: str) -> NDArray[np.int64]:
    """Check that ``function`` (an optimiser's loss) gives residual Jacobians; return its (chunks, 2) sizes.

    Each row is (energy residuals, force residuals) of one chunk.

    Raises:
        ConfigError: it cannot (a loss function without them, such as an ensemble member's, or a
            model or backend without them), naming ``optimizer`` and what to use instead.
    """
    from amp_core.errors import ConfigError

    check = getattr(function, "check_residuals", None)
    if check is None:
        raise ConfigError(f"optimizer {optimizer!r} needs a loss function that gives residual Jacobians, which "
                          f"{type(function).__name__} does not (an ensemble's members do not yet); use a "
                          "gradient optimiser such as 'lbfgs', or train without an ensemble")
    check(f"optimizer {optimizer!r}")
    return np.asarray(function.residual_sizes, dtype=np.int64).reshape(-1, 2)  # type: ignore[attr-defined]
