"""``check_model``: a model must keep the model contract (DESIGN.md section 2).

Kept apart from :mod:`amp_core.testing` for size; import it from there. This module
sets the check up and holds the structural checks (protocol, parameter vector,
pickling, saving); :mod:`amp_core._check_loss` holds the numeric ones.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from amp_core import _check_loss as numeric
from amp_core._check_backend import labelled_structures
from amp_core._check_loss import Array, Case, Prediction, Steps, close, same_vector, scalar
from amp_core.data import FORCE_COEFFICIENT, ImageFingerprints, LossSettings
from amp_core.manager import PluginManager, resolve
from amp_core.protocols import (
    COMPILED,
    ENERGY,
    FINGERPRINT_DERIVATIVES,
    FINGERPRINTS,
    FORCES,
    MODEL_CAPABILITIES,
)
from amp_core.reshape import build_arrays

if TYPE_CHECKING:
    from ase import Atoms

INPUTS = ("fingerprints", "structures")
PERTURBATION = 0.02
"""The loss checks run at ``x0 + PERTURBATION * (1 + |x0|) * noise``, away from the initial fit."""
_ATTRIBUTES = ("name", "params", "implemented", "inputs", "elements")
_METHODS = ("initialize", "vector", "set_vector", "loss_evaluator", "regularization", "predict", "todict")
_NAME = re.compile(r"[a-z][a-z0-9_-]*\Z")


def check_model(
    model: Any,
    *,
    descriptor: Any = None,
    images: Sequence[Atoms] | None = None,
    forces: bool | None = None,
    energy_coefficient: float = 0.5,
    force_coefficient: float = FORCE_COEFFICIENT,
    fd_step: float = 1e-5,
    fd_rtol: float = 1e-4,
    fd_parameters: int = 200,
    rtol: float = 1e-8,
    manager: PluginManager | None = None,
) -> None:
    """Check that ``model`` keeps the model contract on small labelled structures.

    Checked, in order:

    1. the :class:`~amp_core.protocols.Model` attributes and methods: ``name``,
       ``implemented`` a frozenset within ``MODEL_CAPABILITIES`` holding ``ENERGY``
       (and a ``compiled()`` method with ``COMPILED``), ``inputs`` ``"fingerprints"`` or
       ``"structures"``, hashable ``params``;
    2. ``initialize`` on one-image shards from :func:`~amp_core.reshape.build_arrays`,
       after which ``elements`` covers the images' elements;
    3. ``vector()`` / ``set_vector()`` give the same vector back, and both copy;
    4. energy-only and (when forces are checked) with forces, at a perturbed vector:
       ``LossParts`` types, ``loss == settings.objective(energy_loss, force_loss)``,
       no force terms when forces are off, a repeated evaluation agreeing, one-image
       records adding up to the all-image record, and the gradient against central
       finite differences of ``loss``;
    5. ``regularization``: zero at overfit 0, its gradient against finite differences;
    6. the raw sums and maxima of each one-image record against Amp's definitions
       applied to ``predict(atoms, fingerprints, forces)`` (the evaluators were built
       before the vector changed, so they must read only the vector they are given),
       and ``predict``'s energy the same with and without forces;
    7. forces from ``predict`` against minus finite differences of the predicted
       energy (fingerprints recomputed) on the smallest image;
    8. a pickled copy (what workers receive) has the same vector and loss;
    9. ``todict()`` is strict JSON, and the registered ``loader(document)`` rebuilds a
       model of the same name with the same vector and predictions.

    The model is initialised and its parameters changed in place: pass a fresh one.

    Tolerances: what must agree to round-off (3, 4 except gradients, 6, 8, 9) within
    ``rtol`` of the larger magnitude (arrays: of their largest entry; the vector round
    trips and the pickled vector exactly). Finite differences use the step ``fd_step *
    max(1, |x_i|)`` per parameter and ``fd_step`` Angstrom per position and pass when
    ``|analytic - numeric| <= fd_rtol * max(|numeric|, 1e-3 * largest |numeric|)``;
    the built-ins agree to about 1e-7 relative.

    Args:
        model: the model to check, as its factory built it.
        descriptor: fingerprints for a model whose ``inputs`` are ``"fingerprints"``;
            default ``gaussian`` over the images' elements. Unused for ``"structures"``.
        images: labelled structures (energy, and forces when checked); default
            :func:`~amp_core.testing.labelled_structures`. Keep them small.
        forces: check force training and predicted forces; default: when ``FORCES`` is
            in ``model.implemented``.
        energy_coefficient: c_E of the checks (not 1, so a model that ignores it fails).
        force_coefficient: c_F of the checks.
        fd_step: relative finite-difference step for parameters; Angstrom for positions.
        fd_rtol: relative tolerance of the finite-difference checks.
        fd_parameters: at most this many parameters are differentiated one by one
            (spread evenly over the vector; all when there are fewer); one random
            direction through every parameter is checked as well.
        rtol: relative tolerance of the round-off-level agreements.
        manager: the :class:`~amp_core.PluginManager` whose registered ``loader`` for
            ``model.name`` rebuilds the model, and which builds the default descriptor
            (``None``: the installed plugins).

    Raises:
        AssertionError: the model breaks the contract; the message names the check,
            the place (parameter, image, atom) and the numbers.
        ValueError: the arguments cannot check it (unlabelled images, or a descriptor
            without the fingerprints or derivatives the check needs).
    """
    label = f"model {getattr(model, 'name', type(model).__name__)!r}"
    _attributes(model, label)
    manager = resolve(manager)
    structures = list(images) if images is not None else labelled_structures()
    if not structures:
        raise ValueError("check_model needs at least one labelled structure")
    forces = FORCES in model.implemented if forces is None else forces
    if forces and FORCES not in model.implemented:
        raise AssertionError(f"{label}: forces=True asked, but {FORCES!r} is not in implemented "
                             f"{sorted(model.implemented)}")
    descriptor = _descriptor(model, descriptor, structures, forces, manager)
    fingerprints = (None if descriptor is None
                    else [descriptor.compute(a.copy(), derivatives=forces) for a in structures])  # fmt: skip
    cases = _cases(structures, fingerprints, forces, energy_coefficient, force_coefficient)
    model.initialize(cases[0].single)
    _initialised(model, structures, label)
    x0 = _vector_roundtrip(model, label)
    x1 = x0 + PERTURBATION * (1.0 + np.abs(x0)) * np.random.default_rng(0).standard_normal(x0.shape)
    fd = Steps(fd_step, fd_rtol, fd_parameters)
    singles = numeric.check_losses(model, cases, x1, fd, rtol, label)
    numeric.regularization(model, x1, fd, label)
    model.set_vector(x1)
    predicted = numeric.predictions(model, structures, fingerprints, forces, rtol, label)
    for case, records in zip(cases, singles):
        numeric.agrees_with_predict(case, records, structures, predicted, rtol, label)
    if forces:
        numeric.forces_by_differences(model, descriptor, structures, predicted, fd, label)
    _pickles(model, cases[-1], x1, rtol, label)
    _saves(model, structures, fingerprints, predicted, forces, manager, rtol, label)


# ------------------------------------------------------------------------------ set-up


def _attributes(model: Any, label: str) -> None:
    missing = [n for n in (*_ATTRIBUTES, *_METHODS) if not hasattr(model, n)]
    if missing:
        raise AssertionError(f"{label}: does not satisfy the Model protocol (amp_core.protocols.Model); "
                             f"missing {missing}")
    not_callable = [n for n in _METHODS if not callable(getattr(model, n))]
    if not_callable:
        raise AssertionError(f"{label}: {not_callable} must be methods")
    if not isinstance(model.name, str) or not _NAME.match(model.name):
        raise AssertionError(f"{label}: name must be a plugin name matching [a-z][a-z0-9_-]*, "
                             f"got {model.name!r}")
    implemented = model.implemented
    if not isinstance(implemented, frozenset):
        raise AssertionError(f"{label}: implemented must be a frozenset, got {type(implemented).__name__}")
    unknown = sorted(map(str, implemented - MODEL_CAPABILITIES))
    if unknown:
        raise AssertionError(f"{label}: implemented has unknown capabilities {unknown}; a model's are "
                             f"{sorted(MODEL_CAPABILITIES)} (amp_core.protocols)")
    if ENERGY not in implemented:
        raise AssertionError(f"{label}: implemented {sorted(implemented)} lacks {ENERGY!r}; every model "
                             "predicts energies")
    if COMPILED in implemented and not callable(getattr(model, "compiled", None)):
        raise AssertionError(f"{label}: implements {COMPILED!r} but has no compiled() method (Compilable)")
    if model.inputs not in INPUTS:
        raise AssertionError(f"{label}: inputs must be one of {list(INPUTS)}, got {model.inputs!r}")
    try:
        hash(model.params)
    except TypeError as exc:
        raise AssertionError(f"{label}: params must be hashable (a frozen dataclass of tuples): "
                             f"{exc}") from None


def _descriptor(model: Any, descriptor: Any, images: list[Atoms], forces: bool,
                manager: PluginManager) -> Any:
    if model.inputs == "structures":
        return None
    if descriptor is None:
        from ase.data import atomic_numbers

        found = {s for a in images for s in a.get_chemical_symbols()}
        symbols = sorted(found, key=atomic_numbers.__getitem__)
        descriptor = manager.create("descriptor", "gaussian", {"elements": symbols})
    name = getattr(descriptor, "name", type(descriptor).__name__)
    if FINGERPRINTS not in descriptor.implemented:
        raise ValueError(f"check_model: model {model.name!r} consumes fingerprints, but descriptor {name!r} "
                         "computes none; pass a fingerprinting descriptor")
    if forces and FINGERPRINT_DERIVATIVES not in descriptor.implemented:
        raise ValueError(f"check_model: checking forces needs fingerprint derivatives, which descriptor "
                         f"{name!r} lacks; pass forces=False or another descriptor")
    return descriptor


def _cases(images: list[Atoms], fingerprints: list[ImageFingerprints] | None, forces: bool,
           c_e: float, c_f: float) -> list[Case]:
    """Return the energy-only case (arrays without derivatives or forces), then the force case."""
    try:
        energies = [float(a.get_potential_energy()) for a in images]
        reference = [np.asarray(a.get_forces(), dtype=np.float64) for a in images] if forces else None
    except Exception as exc:  # noqa: BLE001 - any missing label is the caller's to fix
        raise ValueError(f"check_model needs labelled images (energy{' and forces' if forces else ''}): "
                         f"{type(exc).__name__}: {exc}") from None
    values = None if fingerprints is None else [replace(f, pairs=None, derivatives=None)
                                                for f in fingerprints]  # fmt: skip
    energy_only: list[tuple[float, Array | None]] = [(e, None) for e in energies]
    cases = [_case("energy only", LossSettings(c_e, c_f, forces=False), images, energy_only, values)]
    if reference is not None:
        targets: list[tuple[float, Array | None]] = list(zip(energies, reference))
        cases.append(_case("with forces", LossSettings(c_e, c_f, forces=True), images, targets, fingerprints))
    return cases


def _case(title: str, settings: LossSettings, images: list[Atoms], targets: list[tuple[float, Array | None]],
          fingerprints: list[ImageFingerprints] | None) -> Case:
    single = [build_arrays([a], [t], None if fingerprints is None else [fingerprints[k]])
              for k, (a, t) in enumerate(zip(images, targets))]  # fmt: skip
    return Case(title, settings, build_arrays(images, targets, fingerprints), single)


def _initialised(model: Any, images: list[Atoms], label: str) -> None:
    elements = model.elements
    if not (isinstance(elements, tuple) and all(isinstance(s, str) for s in elements)):
        raise AssertionError(f"{label}: after initialize(), elements must be a tuple of symbols, "
                             f"got {elements!r}")
    lacking = sorted({s for a in images for s in a.get_chemical_symbols()} - set(elements))
    if lacking:
        raise AssertionError(f"{label}: after initialize() on images holding {lacking}, elements {elements} "
                             "lack them")


def _vector_roundtrip(model: Any, label: str) -> Array:
    x = model.vector()
    if not (isinstance(x, np.ndarray) and x.ndim == 1 and x.dtype == np.float64 and x.size):
        raise AssertionError(f"{label}: vector() must return a non-empty 1-D float64 array, got "
                             f"{type(x).__name__} {getattr(x, 'shape', '')} {getattr(x, 'dtype', '')}")
    if not np.isfinite(x).all():
        raise AssertionError(f"{label}: vector() holds NaN or infinity at entries "
                             f"{np.flatnonzero(~np.isfinite(x))[:10].tolist()}")
    x0 = x.copy()
    x += 1.0
    if not np.array_equal(model.vector(), x0):
        raise AssertionError(f"{label}: changing the array vector() returned changed the model; "
                             "return a copy")
    target = x0 + 0.01 * np.linspace(1.0, 2.0, x0.size)
    given = target.copy()
    model.set_vector(given)
    same_vector(model.vector(), target, f"{label}: vector() after set_vector(v)")
    given[:] = 0.0
    if not np.array_equal(model.vector(), target):
        raise AssertionError(f"{label}: changing the array passed to set_vector() changed the model; copy it")
    model.set_vector(x0.copy())
    same_vector(model.vector(), x0, f"{label}: vector() after set_vector back to the initial vector")
    return x0


# ------------------------------------------------------------------------------ copies


def _pickles(model: Any, case: Case, x: Array, rtol: float, label: str) -> None:
    try:
        copied = pickle.loads(pickle.dumps(model))
    except Exception as exc:  # noqa: BLE001 - any pickling failure is the finding
        raise AssertionError(f"{label}: does not pickle ({type(exc).__name__}: {exc}); workers receive it "
                             "pickled") from None
    same_vector(copied.vector(), x, f"{label}: vector() of a pickled copy")
    expected = model.loss_evaluator(case.whole, case.settings)(x.copy())
    got = copied.loss_evaluator(case.whole, case.settings)(x.copy())
    scalar(got.loss, expected.loss, rtol, f"{label}: loss of a pickled copy ({case.title})")
    close(got.gradient, expected.gradient, rtol, 1.0, f"{label}: gradient of a pickled copy ({case.title})",
          "parameter")


def _saves(model: Any, images: list[Atoms], fingerprints: list[ImageFingerprints] | None,
           predicted: list[Prediction], forces: bool, manager: PluginManager, rtol: float,
           label: str) -> None:
    from amp_core.errors import UnknownPluginError

    document = model.todict()
    if not isinstance(document, dict):
        raise AssertionError(f"{label}: todict() must return a dict, got {type(document).__name__}")
    try:
        text = json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{label}: todict() is not strict JSON (json.dumps): {exc}") from None
    try:
        loader = manager.lookup("model", model.name).entry.loader
    except UnknownPluginError as exc:
        raise AssertionError(f"{label}: not registered in the plugin manager, so it cannot be loaded "
                             f"back; register it (entry point and amp_models()) or pass manager=...: "
                             f"{exc}") from None
    try:
        rebuilt = loader(json.loads(text))
    except Exception as exc:  # noqa: BLE001 - any loader failure is the finding
        raise AssertionError(f"{label}: the registered loader(document) failed on todict()'s document: "
                             f"{type(exc).__name__}: {exc}") from None
    what = f"{label}: the model the registered loader rebuilt from todict()"
    if getattr(rebuilt, "name", None) != model.name:
        raise AssertionError(f"{what} is named {getattr(rebuilt, 'name', None)!r}")
    close(rebuilt.vector(), model.vector(), rtol, 1.0, f"{what}: vector()", "parameter")
    for k, (atoms, (energy, f)) in enumerate(zip(images, predicted)):
        fp = None if fingerprints is None else fingerprints[k]
        got, got_f = rebuilt.predict(atoms.copy(), fp, forces=forces)
        scalar(got, energy, rtol, f"{what}: predicted energy of image {k} ({atoms.get_chemical_formula()})")
        if f is not None:
            close(np.asarray(got_f), f, rtol, 1.0, f"{what}: predicted forces of image {k}", "atom")
