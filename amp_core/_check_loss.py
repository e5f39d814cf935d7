"""The numeric part of ``check_model``: loss parts, finite differences, agreement with ``predict``.

Every function raises :class:`AssertionError` naming the check, the place (parameter,
image, atom) and the numbers. Two comparison rules are used:

* round-off level (:func:`scalar`, :func:`close` with ``floor=1``): within ``rtol`` of
  the larger magnitude, for arrays of the largest entry;
* finite differences (:func:`close` with ``floor=FD_FLOOR``): within ``rtol`` of
  ``max(|numeric|, FD_FLOOR * largest |numeric|)``, so entries near zero are judged
  on the scale of the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from amp_core.data import ImageFingerprints, LossParts, LossSettings

if TYPE_CHECKING:
    from ase import Atoms

Array = NDArray[np.float64]
Prediction = tuple[float, "Array | None"]

FD_FLOOR = 1e-3
"""Finite-difference comparisons judge entries below this fraction of the largest on that scale."""
OVERFIT = 0.1
"""Regularisation weight at which ``Model.regularization`` is differentiated."""
_TINY = 1e-300
_FIELDS = ("loss", "energy_loss", "force_loss", "energy_maxresid", "force_maxresid")


@dataclass(frozen=True)
class Case:
    """One loss setting with the shard arrays the pipeline would build for it."""

    title: str
    settings: LossSettings
    whole: dict[str, NDArray[Any]]  # every image in one shard
    single: list[dict[str, NDArray[Any]]]  # one shard per image


@dataclass(frozen=True)
class Steps:
    """Finite differences: ``step`` (relative; Angstrom for positions), ``rtol``, ``most`` parameters."""

    step: float
    rtol: float
    most: int


def check_losses(model: Any, cases: list[Case], x: Array, fd: Steps, rtol: float,
                 label: str) -> list[list[LossParts]]:
    """Check each case's loss parts and gradient at ``x``; return its one-image records.

    The evaluators are built before the caller moves the model to ``x``, so they must
    read only the vector they are given.
    """
    out = []
    evaluators = [model.loss_evaluator(case.whole, case.settings) for case in cases]
    for case, evaluator in zip(cases, evaluators):
        c = case.settings
        where = f"{label} ({case.title}, c_E {c.energy_coefficient:g}, c_F {c.force_coefficient:g})"
        parts = loss_parts(evaluator, x, c, len(case.single), rtol, where)
        singles = [loss_parts(model.loss_evaluator(a, c), x, c, 1, rtol, where) for a in case.single]
        combined = LossParts.combine(singles)
        for field in _FIELDS:
            scalar(getattr(parts, field), getattr(combined, field), rtol, f"{where}: {field} of one "
                   "shard of all images versus the shards of one image each, combined")
        close(parts.gradient, combined.gradient, rtol, 1.0,
              f"{where}: gradient of one shard of all images versus one-image shards, combined", "parameter")
        gradient(_loss_of(evaluator), x, parts.gradient, fd, f"{where}: d loss / d parameter")
        out.append(singles)
    return out


def _loss_of(evaluator: Any) -> Callable[[Array], float]:
    return lambda vector: float(evaluator(vector).loss)


def loss_parts(evaluator: Any, x: Array, settings: LossSettings, n_images: int, rtol: float,
               where: str) -> LossParts:
    """Evaluate twice at ``x``; check types, ``loss == objective``, no force terms when off."""
    given = x.copy()
    parts = evaluator(given)
    if not np.array_equal(given, x):
        raise AssertionError(f"{where}: the loss evaluator changed the vector it was given")
    if not isinstance(parts, LossParts):
        raise AssertionError(f"{where}: the loss evaluator returned {type(parts).__name__}, "
                             "expected LossParts")
    g = parts.gradient
    if not (isinstance(g, np.ndarray) and g.shape == x.shape and g.dtype == np.float64):
        raise AssertionError(f"{where}: gradient must be a float64 array of shape {x.shape}, got "
                             f"{type(g).__name__} {getattr(g, 'shape', '')} {getattr(g, 'dtype', '')}")
    bad = [f for f in _FIELDS if not (isinstance(getattr(parts, f), (float, np.floating))
                                      and np.isfinite(getattr(parts, f)))]  # fmt: skip
    if bad or not np.isfinite(g).all():
        raise AssertionError(f"{where}: loss parts {bad or ['gradient']} must be finite floats: {parts!r}")
    if parts.n_images != n_images:
        raise AssertionError(f"{where}: n_images is {parts.n_images!r} for a shard of {n_images} image(s)")
    scalar(parts.loss, settings.objective(parts.energy_loss, parts.force_loss), rtol,
           f"{where}: LossParts.loss versus settings.objective(energy_loss, force_loss)")
    if not settings.forces and (parts.force_loss != 0.0 or parts.force_maxresid != 0.0):
        raise AssertionError(f"{where}: forces are not trained, but force_loss {parts.force_loss!r} and "
                             f"force_maxresid {parts.force_maxresid!r} are not 0")
    again = evaluator(x.copy())
    scalar(again.loss, parts.loss, rtol, f"{where}: loss of a second evaluation at the same vector")
    close(again.gradient, parts.gradient, rtol, 1.0,
          f"{where}: gradient of a second evaluation at the same vector", "parameter")
    return parts


def gradient(function: Callable[[Array], float], x: Array, analytic: Array, fd: Steps, what: str) -> None:
    """Compare ``analytic`` with central differences of ``function`` per parameter and along a direction."""
    n = x.size
    chosen = np.arange(n)
    if n > fd.most:
        chosen = np.unique(np.linspace(0, n - 1, fd.most).round().astype(np.int64))
    numeric = np.empty(len(chosen))
    for j, i in enumerate(chosen):
        h = fd.step * max(1.0, abs(float(x[i])))
        plus, minus = x.copy(), x.copy()
        plus[i] += h
        minus[i] -= h
        numeric[j] = (function(plus) - function(minus)) / (2.0 * h)
    close(analytic[chosen], numeric, fd.rtol, FD_FLOOR,
          f"{what} (analytic) versus central finite differences (step {fd.step:g} * max(1, |x_i|))",
          "parameter", chosen)
    direction = np.random.default_rng(1).standard_normal(n) * np.maximum(1.0, np.abs(x))
    along = (function(x + fd.step * direction) - function(x - fd.step * direction)) / (2.0 * fd.step)
    expected = float(analytic @ direction)
    bound = fd.rtol * max(abs(along), FD_FLOOR * float(np.abs(analytic * direction).sum()), _TINY)
    if not abs(expected - along) <= bound:
        raise AssertionError(f"{what} along a random direction through every parameter: analytic "
                             f"{expected!r} versus central finite difference {along!r} (|difference| "
                             f"{abs(expected - along):.3e} > {bound:.3e})")


def regularization(model: Any, x: Array, fd: Steps, label: str) -> None:
    """Check the penalty: zero at overfit 0, its gradient against finite differences at :data:`OVERFIT`."""
    what = f"{label}: regularization(vector, overfit)"
    zero = model.regularization(x.copy(), 0.0)
    if not (isinstance(zero, tuple) and len(zero) == 2):
        raise AssertionError(f"{what} must return (penalty, gradient), got {type(zero).__name__}")
    if float(zero[0]) != 0.0 or np.any(np.asarray(zero[1]) != 0.0):
        raise AssertionError(f"{what} at overfit 0 must be 0 with a zero gradient (the core skips it then), "
                             f"got penalty {zero[0]!r}")
    penalty, grad = model.regularization(x.copy(), OVERFIT)
    if not (isinstance(penalty, (float, np.floating)) and np.isfinite(penalty)):
        raise AssertionError(f"{what}: penalty must be a finite float, got {penalty!r}")
    if not (isinstance(grad, np.ndarray) and grad.shape == x.shape and np.isfinite(grad).all()):
        raise AssertionError(f"{what}: gradient must be a finite array of shape {x.shape}")
    gradient(lambda v: float(model.regularization(v, OVERFIT)[0]), x, grad, fd,
             f"{what} at overfit {OVERFIT:g}: d penalty / d parameter")


def predictions(model: Any, images: list[Atoms], fingerprints: list[ImageFingerprints] | None, forces: bool,
                rtol: float, label: str) -> list[Prediction]:
    """Return ``predict`` of every image (forces only when checked), checking types and both energies."""
    out: list[Prediction] = []
    for k, atoms in enumerate(images):
        where = f"{label}: predict() on image {k} ({atoms.get_chemical_formula()})"
        fp = None if fingerprints is None else fingerprints[k]
        values = None if fp is None else replace(fp, pairs=None, derivatives=None)
        energy, none = model.predict(atoms.copy(), values, forces=False)
        if none is not None:
            raise AssertionError(f"{where} with forces=False must return (energy, None), "
                                 f"got {type(none).__name__}")
        if not (isinstance(energy, (float, np.floating)) and np.isfinite(energy)):
            raise AssertionError(f"{where}: energy must be a finite float, got {energy!r}")
        if not forces:
            out.append((float(energy), None))
            continue
        energy_f, f = model.predict(atoms.copy(), fp, forces=True)
        scalar(energy_f, energy, rtol, f"{where}: energy with forces=True versus forces=False")
        if not (isinstance(f, np.ndarray) and f.shape == (len(atoms), 3) and f.dtype == np.float64):
            raise AssertionError(f"{where}: forces must be a float64 array of shape ({len(atoms)}, 3), got "
                                 f"{type(f).__name__} {getattr(f, 'shape', '')} {getattr(f, 'dtype', '')}")
        if not np.isfinite(f).all():
            raise AssertionError(f"{where}: forces contain NaN or infinity")
        out.append((float(energy), f))
    return out


def agrees_with_predict(case: Case, singles: list[LossParts], images: list[Atoms],
                        predicted: list[Prediction], rtol: float, label: str) -> None:
    """Compare each one-image record with Amp's definitions (``LossParts`` docstring) on ``predict``."""
    for k, (atoms, parts, (energy, forces)) in enumerate(zip(images, singles, predicted)):
        n = len(atoms)
        residual = (energy - float(atoms.get_potential_energy())) / n
        image = (f"{label} ({case.title}): image {k} ({atoms.get_chemical_formula()}, predicted energy "
                 f"{energy!r} eV)")
        scalar(parts.energy_loss, residual**2, rtol,
               f"{image}: energy_loss from the loss evaluator versus ((E_pred - E_ref) / N)^2 from predict()")
        scalar(parts.energy_maxresid, abs(residual), rtol,
               f"{image}: energy_maxresid from the loss evaluator versus |E_pred - E_ref| / N from predict()")
        if not case.settings.forces or forces is None:
            continue
        difference = forces - np.asarray(atoms.get_forces(), dtype=np.float64)
        scalar(parts.force_loss, float(np.sum(difference**2)) / (3 * n), rtol, f"{image}: force_loss from "
               "the loss evaluator versus sum((F_pred - F_ref)^2) / (3 N) from predict()")
        scalar(parts.force_maxresid, float(np.abs(difference).max()), rtol,
               f"{image}: force_maxresid from the loss evaluator versus max |F_pred - F_ref| from predict()")


def forces_by_differences(model: Any, descriptor: Any, images: list[Atoms], predicted: list[Prediction],
                          fd: Steps, label: str) -> None:
    """Compare predicted forces with minus central differences of the predicted energy (smallest image)."""
    k = int(np.argmin([len(a) for a in images]))
    atoms, forces = images[k], predicted[k][1]
    assert forces is not None

    def energy(moved: Atoms) -> float:
        fp = None if descriptor is None else descriptor.compute(moved, derivatives=False)
        return float(model.predict(moved, fp, forces=False)[0])

    numeric = np.empty((len(atoms), 3))
    for m in range(len(atoms)):
        for axis in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[m, axis] += fd.step
            minus.positions[m, axis] -= fd.step
            numeric[m, axis] = -(energy(plus) - energy(minus)) / (2.0 * fd.step)
    close(forces, numeric, fd.rtol, FD_FLOOR, f"{label}: forces from predict() on image {k} "
          f"({atoms.get_chemical_formula()}) versus minus central finite differences of its predicted energy "
          f"(step {fd.step:g} Angstrom)", "atom")


# ------------------------------------------------------------------------------ comparisons


def scalar(actual: Any, expected: Any, rtol: float, what: str) -> None:
    """Raise unless ``|actual - expected| <= rtol * max(|actual|, |expected|)``."""
    a, b = float(actual), float(expected)
    if not abs(a - b) <= rtol * max(abs(a), abs(b), _TINY):
        raise AssertionError(f"{what}: {a!r} versus {b!r} (|difference| {abs(a - b):.3e} > rtol {rtol:g} "
                             "* the larger magnitude)")


def close(actual: Array, expected: Array, rtol: float, floor: float, what: str, index: str,
          names: NDArray[np.int64] | None = None) -> None:
    """Raise unless ``|actual - expected| <= rtol * max(|expected|, floor * max |expected|)`` everywhere.

    Rows are named ``index`` k (``names[k]`` when given); a second axis of 3 is x, y, z.
    """
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape} differs from {expected.shape}")
    error = np.abs(actual - expected)
    scale = np.maximum(np.abs(expected), floor * float(np.max(np.abs(expected), initial=0.0)))
    bound = rtol * np.maximum(scale, _TINY)
    bad = ~(error <= bound)
    if not bad.any():
        return
    ratio = np.where(bad, np.nan_to_num(error / bound, nan=np.inf), -np.inf)
    worst = np.unravel_index(int(np.argmax(ratio)), error.shape)
    where = f"{index} {int(names[worst[0]]) if names is not None else int(worst[0])}"
    if len(worst) > 1:
        where += f" {'xyz'[int(worst[1])] if error.shape[1] == 3 else int(worst[1])}"
    raise AssertionError(f"{what} differ ({int(bad.sum())} of {error.size} entries); worst at {where}: "
                         f"{float(actual[worst])!r} versus {float(expected[worst])!r} (|difference| "
                         f"{float(error[worst]):.3e} > {float(bound[worst]):.3e})")


def same_vector(got: Any, expected: Array, what: str) -> None:
    """Raise unless ``got`` is an array equal to ``expected`` entry by entry."""
    if not (isinstance(got, np.ndarray) and got.shape == expected.shape):
        raise AssertionError(f"{what}: got {type(got).__name__} of shape {getattr(got, 'shape', None)}, "
                             f"expected {expected.shape}")
    differ = np.flatnonzero(got != expected)
    if differ.size:
        k = int(differ[0])
        raise AssertionError(f"{what}: {differ.size} of {expected.size} entries differ; parameter {k}: "
                             f"{float(got[k])!r} versus {float(expected[k])!r}")
