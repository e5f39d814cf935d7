"""``Potential``: a descriptor and a model as one ASE calculator; saving and loading."""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes, equal

from amp_core.ensemble import Ensemble, members_of
from amp_core.errors import AmpError, ExtrapolationWarning, ModelFileError, PropertyNotImplementedError
from amp_core.extrapolation import ContactList, TrainingRange
from amp_core.images import check_elements, check_structure
from amp_core.manager import PluginManager, resolve
from amp_core.protocols import (
    ATOMIC_GRADIENT,
    COMPILED,
    CONTRACT,
    FINGERPRINT_DERIVATIVES,
    FORCES,
    NEIGHBOUR_LIST,
    STRAIN_DERIVATIVES,
    Contraction,
    takes_sets,
)
from amp_core.store import write_json

FORMAT = "amp-core-potential"
FORMAT_VERSION = 1


class _Frame:
    """The structure the kept lists were built for (positions, cell, pbc, numbers), and those lists.

    The lists stay valid while no atom moved more than ``skin / 2`` from ``positions`` and
    cell, pbc, numbers and the skin they were built with are the same (:meth:`holds`).

    Attributes:
        neighbours: (descriptor, its list from ``descriptor.neighbours``) or ``None`` until built.
        contacts: the :class:`~amp_core.extrapolation.ContactList` of the extrapolation check, or ``None``.
    """

    def __init__(self, atoms: Atoms, skin: float) -> None:
        self.skin = skin
        self.positions = np.array(atoms.positions, dtype=np.float64)
        self.cell = np.array(atoms.cell.array, dtype=np.float64)
        self.pbc = np.array(atoms.pbc, dtype=bool)
        self.numbers = np.array(atoms.numbers)
        self.neighbours: tuple[Any, Any] | None = None
        self.contacts: ContactList | None = None

    def holds(self, atoms: Atoms, skin: float) -> bool:
        """Whether the lists built for this frame are valid for ``atoms`` (``skin`` in Angstrom)."""
        positions = atoms.positions
        if (skin != self.skin or positions.shape != self.positions.shape or not (self.cell == atoms.cell.array).all()
                or not (self.pbc == atoms.pbc).all() or not (self.numbers == atoms.numbers).all()):
            return False
        if not len(positions):
            return True
        moved = positions - self.positions
        return bool(np.einsum("ij,ij->i", moved, moved).max() < (0.5 * skin) ** 2)


class Potential(Calculator):
    """A trained (or trainable) potential: ``descriptor`` + ``model``, usable as an ASE calculator.

    Args:
        descriptor: a descriptor object (``create_descriptor(...)``).
        model: a model object (``create_model(...)``).
        config: the resolved config it was trained with (saved with it).
        manager: the :class:`~amp_core.PluginManager` that provided the plugins (for the
            providers and versions saved with the potential); ``None``: the installed plugins.
        compiled: compute force calls with the descriptor's compiled kernels (its
            ``compiled()`` twin; same numbers to ~1e-15 relative, several times faster).
            ``None`` (default): when they are built here; ``False``: always numpy; ``True``:
            required (``PropertyNotImplementedError`` when not built).

        skin: with a descriptor that has ``NEIGHBOUR_LIST``, keep its neighbour list (built
            with cutoff + ``skin``, Angstrom) between calls while no atom moved more than
            ``skin / 2`` and cell, pbc and numbers are unchanged; the extrapolation check keeps
            its list of close pairs (within the training minimum + ``skin``) the same way.
            ``0`` or ``None``: search anew every call.
        one_pass: with a descriptor that has ``CONTRACT`` and a model that has
            ``ATOMIC_GRADIENT``, compute forces (and the stress) in one pass that contracts
            dE/dG with the fingerprint derivatives as they are produced (default ``True``);
            ``False``: the derivative blocks of the whole structure, then ``model.predict``
            (the training path; same numbers to round-off); the stress always comes from
            the one-pass contraction.

        warn_interval: seconds between two :class:`~amp_core.ExtrapolationWarning` (the first
            extrapolating call always warns; later ones at most once per interval, counting
            the calls in between).

    Ensembles (a model trained with ``[training] ensemble = N``, :mod:`amp_core.ensemble`):
    energy, forces and stress are the members' means, and ``results["energy_std"]`` (eV) and
    ``results["forces_std"]`` ((n_atoms,) eV/A) their spread; a force call costs one pass per
    member.

    Extrapolation: with a :attr:`training_range` (recorded by :func:`amp_core.train` and
    saved with the potential), every call flags the atoms whose fingerprint leaves the
    training range or whose nearest neighbour is closer than any in the training data:
    ``results["extrapolating_atoms"]`` (int64 indices, empty when none) and a warning
    naming atoms and features. A file without the record loads and runs unchecked (said
    once, in the ``amp_core`` log).

    ``implemented_properties`` lists forces only when the model predicts them and,
    for fingerprint models, the descriptor provides derivatives; ``stress`` (eV/A^3, ASE's
    Voigt order and sign, periodic cells) when the one-pass contraction is available and
    the descriptor has ``STRAIN_DERIVATIVES``.

    Attributes:
        descriptor, model, config: as given.
        training: after :func:`amp_core.train`: ``{"converged": bool, "iterations": int,
            "outcome": str}`` (``outcome`` is the run's final log line); ``None`` otherwise.
        loaded_from: the file :func:`load` read it from, or ``None``.
    """

    def __init__(self, descriptor: Any, model: Any, config: dict[str, Any] | None = None, *,
                 manager: PluginManager | None = None, compiled: bool | None = None, skin: float | None = 0.5,
                 one_pass: bool = True, warn_interval: float = 10.0, **kwargs: Any) -> None:
        self.training_range: TrainingRange | None = None
        self.warn_interval = warn_interval
        self._warned: tuple[float, int] | None = None  # (time of the last warning, calls flagged since)
        self._said_unchecked = False
        self.descriptor = descriptor
        self.compiled = compiled
        self.skin = skin
        self.one_pass = one_pass
        self._frame: _Frame | None = None  # the kept neighbour and contact lists
        self._frame_checked: Atoms | None = None  # the structure of this call, once _frame was checked for it
        self._checked_numbers: Any = None  # (descriptor, model, numbers) whose elements passed the last check
        self.neighbour_builds = 0
        self._fast: tuple[Any, Any] | None = None  # (descriptor, its twin used for force calls)
        self.manager = manager
        self.model = model
        self.config = config
        self.training: dict[str, Any] | None = None
        self.loaded_from: Path | None = None
        props = ["energy"]
        derivatives = model.inputs == "structures" or FINGERPRINT_DERIVATIVES in descriptor.implemented
        if FORCES in model.implemented and derivatives:
            props.append("forces")
        if self._contracting() and STRAIN_DERIVATIVES in descriptor.implemented:
            props.append("stress")
        self.implemented_properties = props
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]

    def calculate(self, atoms: Atoms | None = None, properties: Any = ("energy",),
                  system_changes: Any = all_changes) -> None:
        """Compute energy (eV) and, when asked, forces (eV/A) of ``atoms``."""
        super().calculate(atoms, properties, system_changes)  # type: ignore[no-untyped-call]
        try:
            self._calculate(properties)
        finally:
            self._frame_checked = None

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """Return what changed since the last calculation (ASE's :func:`~ase.calculators.calculator.compare_atoms`).

        The same changes as ASE's (each group sorted by name; ASE's order is a set's), several
        times faster for the three calls an MD step makes: an exactly equal property is
        unchanged without ASE's ``np.allclose``.
        """
        old = self.atoms
        if old is None:
            return list(all_changes)
        checked = set(all_changes).difference(self.ignored_changes)
        changes: list[str] = []
        if "cell" in checked and not _same(old.cell.array, atoms.cell.array, tol):
            changes.append("cell")
        if "pbc" in checked and not _same(old.pbc, atoms.pbc, tol):
            changes.append("pbc")
        ours, theirs = old.arrays, atoms.arrays
        for name in sorted(checked.intersection(ours).symmetric_difference(checked.intersection(theirs))):
            changes.append(name)
        for name in sorted(checked.intersection(ours).intersection(theirs)):
            if not _same(ours[name], theirs[name], tol):
                changes.append(name)
        return changes

    def _calculate(self, properties: Any) -> None:
        atoms = self.atoms
        assert atoms is not None
        origin = "structure given to the calculator"
        check_structure(atoms, origin)
        forces = "forces" in properties and "forces" in self.implemented_properties
        uses_fingerprints = self.model.inputs == "fingerprints"
        checked = self._checked_numbers
        if (checked is None or checked[0] is not self.descriptor or checked[1] is not self.model
                or not np.array_equal(checked[2], atoms.numbers)):
            self._check_elements(atoms, origin)
        stress = "stress" in properties and "stress" in self.implemented_properties
        if stress and not np.all(atoms.pbc):
            raise PropertyNotImplementedError(
                f"stress needs a cell periodic in all three directions; this structure has pbc {atoms.pbc.tolist()}")
        if uses_fingerprints and (stress or forces and self.one_pass) and self._contracting():  # stress: one pass
            self._contract(atoms, stress)
            return
        if uses_fingerprints:
            descriptor = self._descriptor()
            fingerprints = descriptor.compute(atoms, derivatives=forces, **self._reuse(descriptor, atoms))
        else:
            fingerprints = None
        members = members_of(self.model)
        if members is None:
            energy, force_values = self.model.predict(atoms, fingerprints, forces)
        else:
            energies, member_forces = self.model.predict_members(atoms, fingerprints, forces)
            energy, force_values = self._spread(energies, member_forces)
        self._check_range(atoms, None if fingerprints is None else fingerprints.values)
        self.results["energy"] = float(energy)
        self.results["free_energy"] = float(energy)
        if forces and force_values is not None:
            self.results["forces"] = np.asarray(force_values, dtype=np.float64)

    def _check_elements(self, atoms: Atoms, origin: str) -> None:
        """Refuse elements the descriptor or model does not know; remember the numbers that passed."""
        self._checked_numbers = None
        trained = self.trained
        if self.model.inputs == "fingerprints":
            check_elements([atoms], [origin], self.descriptor.elements, f"descriptor {self.descriptor.name!r}",
                           trained=trained)
        check_elements([atoms], [origin], self.model.elements, f"model {self.model.name!r}", trained=trained)
        if trained:  # its elements are fixed: the same numbers pass again
            self._checked_numbers = (self.descriptor, self.model, np.array(atoms.numbers))

    def _spread(self, energies: Any, forces: Any) -> tuple[float, Any]:
        """An ensemble's members' mean energy and forces; their spread into ``results``: ``energy_std``
        (eV) and ``forces_std`` ((n_atoms,) eV/A, sqrt of the mean over members of |F_k - F_mean|^2)."""
        energies = np.asarray(energies, dtype=np.float64)
        self.results["energy_std"] = float(np.std(energies))
        if forces is None:
            return float(np.mean(energies)), None
        forces = np.asarray(forces, dtype=np.float64)
        mean = forces.mean(axis=0)
        self.results["forces_std"] = np.sqrt(np.mean(np.sum((forces - mean) ** 2, axis=2), axis=0))
        return float(np.mean(energies)), mean

    def _contracting(self) -> bool:
        """Whether descriptor and model offer the one-pass force contraction."""
        return (self.model.inputs == "fingerprints" and CONTRACT in self.descriptor.implemented
                and ATOMIC_GRADIENT in self.model.implemented and FORCES in self.model.implemented)

    def _contract(self, atoms: Atoms, stress: bool) -> None:
        """Energy, forces and (when asked) stress in one pass: the model answers dE/dG batch by batch
        (an ensemble: every member's dE/dG in the same pass when the descriptor takes ``sets``,
        else one pass per member)."""
        descriptor = self._descriptor()
        numbers = np.asarray(atoms.numbers)
        members = members_of(self.model)
        models = members if members is not None else [self.model]
        if members is not None and takes_sets(descriptor):
            answers = self._sets_pass(descriptor, models, atoms, numbers, stress)
        else:
            answers = [self._one_pass(descriptor, model, atoms, numbers, stress) for model in models]
        if members is None:
            energy, forces, virial = answers[0][0], answers[0][1].forces, answers[0][1].virial
        else:
            energy, forces = self._spread([a[0] for a in answers], [a[1].forces for a in answers])
            virial = None if not stress else np.mean([a[1].virial for a in answers], axis=0)
        self._check_range(atoms, answers[0][1].values)
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["forces"] = np.asarray(forces, dtype=np.float64)
        if stress:
            virial = np.asarray(virial, dtype=np.float64)
            sigma = 0.5 * (virial + virial.T) / atoms.get_volume()
            self.results["stress"] = sigma[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]

    def _one_pass(self, descriptor: Any, model: Any, atoms: Atoms, numbers: Any, stress: bool) -> tuple[float, Any]:
        """One model's energy and :class:`~amp_core.protocols.Contraction` of ``atoms``."""
        energies = np.zeros(len(atoms))

        def gradient(rows: Any, values: Any) -> Any:
            atomic, de_dg = model.atomic_gradient(numbers[rows], values)
            energies[rows] = atomic
            return de_dg

        result = descriptor.contract(atoms, gradient, virial=stress, **self._reuse(descriptor, atoms))
        return float(energies.sum()), result

    def _sets_pass(self, descriptor: Any, models: list[Any], atoms: Atoms, numbers: Any,
                   stress: bool) -> list[tuple[float, Any]]:
        """Every model's energy and contraction from one pass (``sets``): the fingerprints and the
        descriptor's shared factors are computed once for all of them."""
        energies = np.zeros((len(models), len(atoms)))

        def gradient(rows: Any, values: Any) -> Any:
            out = []
            for k, model in enumerate(models):
                atomic, de_dg = model.atomic_gradient(numbers[rows], values)
                energies[k, rows] = atomic
                out.append(de_dg)
            return np.stack(out)

        result = descriptor.contract(atoms, gradient, virial=stress, sets=len(models),
                                     **self._reuse(descriptor, atoms))
        return [(float(energies[k].sum()),
                 Contraction(result.values, result.forces[k], None if result.virial is None else result.virial[k]))
                for k in range(len(models))]

    def _check_range(self, atoms: Atoms, values: Any) -> None:
        """Flag extrapolating atoms in ``results`` and warn (rate-limited); say once when there is no record."""
        if self.training_range is None:
            if self.loaded_from is not None and not self._said_unchecked:
                self._said_unchecked = True
                logging.getLogger("amp_core").warning(
                    "%s has no training range (an Amp file, or written before amp-core recorded one): "
                    "extrapolation is not checked; retrain with amp-core to record it", self.loaded_from)
            return
        found = self.training_range.check(atoms, values, self._contacts(atoms, self.training_range.contact_radius))
        self.results["extrapolating_atoms"] = found.atoms
        if len(found.atoms) == 0:
            return
        now = time.monotonic()
        last, skipped = self._warned if self._warned is not None else (-np.inf, 0)
        if now - last < self.warn_interval:
            self._warned = (last, skipped + 1)
            return
        since = f" ({skipped} more extrapolating call(s) since the last warning)" if skipped else ""
        warnings.warn(ExtrapolationWarning(
            f"the potential extrapolates at {len(found.atoms)} of {len(atoms)} atoms{since}: "
            f"{found.describe(atoms.get_chemical_symbols())}. Its numbers there are not backed by training "
            f"data; add such structures to the training set"), stacklevel=4)
        self._warned = (now, 0)

    def _reuse(self, descriptor: Any, atoms: Atoms) -> dict[str, Any]:
        """``{"neighbours": list}`` for the descriptor: the kept list while valid, else a new one; or ``{}``."""
        if not self.skin or NEIGHBOUR_LIST not in descriptor.implemented:
            return {}
        frame = self._kept(atoms)
        assert frame is not None
        if frame.neighbours is None or frame.neighbours[0] is not descriptor:
            if frame.neighbours is not None or frame.contacts is not None:  # build all at these positions
                frame = self._frame = _Frame(atoms, frame.skin)
            frame.neighbours = (descriptor, descriptor.neighbours(atoms, frame.skin))
            self.neighbour_builds += 1
        return {"neighbours": frame.neighbours[1]}

    def _contacts(self, atoms: Atoms, radius: float) -> ContactList | None:
        """The kept pair list within ``radius`` (Angstrom) for the extrapolation check, or ``None`` (search anew)."""
        frame = self._kept(atoms)
        if frame is None or radius <= 0:
            return None
        if frame.contacts is None or frame.contacts.radius < radius:  # built at the frame's positions: valid as long
            frame.contacts = ContactList(frame.positions, frame.cell, frame.pbc, radius, frame.skin)
        return frame.contacts

    def _kept(self, atoms: Atoms) -> _Frame | None:
        """The frame of the kept lists, new when ``atoms`` moved beyond it (checked once per call); ``None``
        without a skin."""
        if not self.skin:
            return None
        skin = float(self.skin)
        if self._frame is None or not (atoms is self._frame_checked or self._frame.holds(atoms, skin)):
            self._frame = _Frame(atoms, skin)
        self._frame_checked = atoms  # this call's own copy (ASE's Calculator.calculate makes one per call)
        return self._frame

    def _descriptor(self) -> Any:
        """The descriptor the force calls use: its compiled twin when asked for or available."""
        if self._fast is not None and self._fast[0] is self.descriptor:
            return self._fast[1]
        chosen = self.descriptor
        if self.compiled and COMPILED not in self.descriptor.implemented:
            raise PropertyNotImplementedError(
                f"compiled=True, but descriptor {self.descriptor.name!r} has no compiled kernels "
                f"(implemented: {', '.join(sorted(self.descriptor.implemented)) or 'nothing'})")
        if self.compiled is not False and COMPILED in self.descriptor.implemented:
            try:
                chosen = self.descriptor.compiled()
            except PropertyNotImplementedError as exc:
                if self.compiled:
                    raise
                _slow_kernel(self.descriptor.name, exc)
        self._fast = (self.descriptor, chosen)
        return chosen

    @property
    def kernel(self) -> str:
        """``"compiled"`` when force calls run the descriptor's compiled kernels, else ``"numpy"``."""
        return "compiled" if self._descriptor() is not self.descriptor else "numpy"

    @property
    def trained(self) -> bool:
        """Whether this potential came out of training or from a file (its elements are then fixed)."""
        return self.training is not None or self.loaded_from is not None

    def todict_document(self) -> dict[str, Any]:
        """Return the JSON document of this potential (descriptor, model, config, versions)."""
        from amp_core import __version__

        manager = resolve(self.manager)
        d_dist, d_version = manager.provider("descriptor", self.descriptor.name)
        m_dist, m_version = manager.provider("model", self.model.name)
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "amp_core_version": __version__,
            "descriptor": {"name": self.descriptor.name, "params": self.descriptor.todict(),
                           "provider": d_dist, "version": d_version},
            "model": {"name": self.model.name, "document": self.model.todict(),
                      "provider": m_dist, "version": m_version,
                      **({} if members_of(self.model) is None else {"members": self.model.member_documents()})},
            "config": self.config,
            "training": self.training,
            "training_range": None if self.training_range is None else self.training_range.todict(),
        }

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, manager: PluginManager | None = None) -> Potential:
        """Load a saved potential (or an Amp ``.amp`` file); the same as :func:`amp_core.load`."""
        return load(path, manager=manager)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the potential as one JSON file (atomically); return its path."""
        return write_json(self.todict_document(), path)

    def save_amp(self, path: str | os.PathLike[str]) -> Path:
        """Write the potential as an Amp ``.amp`` file (atomically); return its path.

        The original Amp 1.0.1 opens it with ``Amp.load`` and predicts the same energies
        and forces; :func:`load` reads it back too. Needs plugins with an Amp counterpart
        (``amp_parameters()``, see :mod:`amp_core.ampfile`), e.g. ``gaussian`` + ``neuralnetwork``.

        Raises:
            PropertyNotImplementedError: the descriptor or model has no Amp counterpart.
        """
        from amp_core.ampfile import save_amp

        members = members_of(self.model)
        if members is not None:
            raise PropertyNotImplementedError(
                f"an ensemble of {len(members)} members has no Amp counterpart: save one member, e.g. "
                "Potential(potential.descriptor, potential.model.members[0]).save_amp(path)")
        return save_amp(self.descriptor, self.model, path)


def _same(a: Any, b: Any, tol: float) -> bool:
    """ASE's ``equal(a, b, atol=tol)`` (``np.allclose`` with ``rtol=0``) of two arrays, with cheaper tests first."""
    if a.shape != b.shape:
        return False
    if (a == b).all():
        return True
    if a.dtype.kind == "f" and b.dtype.kind == "f" and np.isfinite(a).all() and np.isfinite(b).all():
        return bool((np.abs(a - b) <= tol).all())  # allclose's test for finite numbers
    return bool(equal(a, b, atol=tol))


def load(path: str | os.PathLike[str], *, manager: PluginManager | None = None) -> Potential:
    """Load a potential saved by :meth:`Potential.save`, or a file a plugin reads (Amp's ``.amp``).

    Args:
        path: the potential file.
        manager: the :class:`~amp_core.PluginManager` to build the plugins with (``None``:
            the installed plugins).

    Raises:
        ModelFileError: the file is missing, of another format or version, or damaged.
    """
    manager = resolve(manager)
    path = Path(path)
    text = _read_text(path)
    try:
        document = json.loads(text)
    except RecursionError as exc:
        raise ModelFileError(f"{path}: the JSON is nested too deeply to be a potential file") from exc
    except ValueError as exc:  # JSONDecodeError, or an integer with too many digits
        if isinstance(exc, json.JSONDecodeError):
            return _load_foreign(path, text, manager, exc)
        raise ModelFileError(f"{path}: not a valid potential file: {exc}") from exc
    _check_document(document, path)
    try:
        descriptor = manager.create("descriptor", document["descriptor"]["name"], document["descriptor"]["params"],
                                    where=f"{path}, descriptor")
        entry = manager.lookup("model", document["model"]["name"], where=f"{path}, model")
        members = document["model"].get("members")
        if members is None:
            model = entry.entry.loader(document["model"]["document"])
        elif isinstance(members, list) and members and all(isinstance(m, dict) for m in members):
            model = Ensemble([entry.entry.loader(m) for m in members])
        else:
            raise ModelFileError(f"{path}: field 'model.members' must be a non-empty list of model documents")
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        if isinstance(exc, AmpError):
            raise
        raise ModelFileError(f"{path} is damaged: missing or malformed {type(exc).__name__}: {exc}") from exc
    _check_trained(model, path)
    potential = Potential(descriptor, model, config=document.get("config"), manager=manager)
    potential.loaded_from = path
    training = document.get("training")
    potential.training = training if isinstance(training, dict) else None
    record = document.get("training_range")
    if record is not None:
        if not isinstance(record, dict):
            raise ModelFileError(f"{path}: field 'training_range' must be an object or null")
        try:
            potential.training_range = TrainingRange.fromdict(record)
        except ValueError as exc:
            raise ModelFileError(f"{path}: {exc}; remove the field to load the potential without it") from exc
    return potential


MAX_FILE_BYTES = 1 << 30
"""Largest potential file read (1 GiB); a trained network's JSON is far smaller."""


def _read_text(path: Path) -> str:
    """Return the text of a potential file, refusing what cannot be one (missing, not a file, huge, not UTF-8)."""
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if not path.is_file():
        raise ModelFileError(f"model file {path} is not a regular file (a directory, device or pipe?)")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ModelFileError(f"model file {path} is {size / 2**30:.1f} GiB, larger than any potential file "
                             f"({MAX_FILE_BYTES / 2**30:.0f} GiB at most); is it the right file?")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{path}: not a text file (byte {exc.start} is not UTF-8); the file is damaged "
                             "or not a potential file") from exc
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file: {exc}") from exc


def _check_document(document: Any, path: Path) -> None:
    """Check the shape of an amp-core potential document, naming the first bad field."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an amp-core potential file (no \"format\": \"{FORMAT}\")")
    version = document.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ModelFileError(f"{path} has format version {version!r}; this amp-core reads version "
                             f"{FORMAT_VERSION}; use the amp-core release that wrote it")
    fields = {("descriptor", "name"): str, ("descriptor", "params"): dict, ("model", "name"): str,
              ("model", "document"): dict}
    for (section, key), kind in fields.items():
        value = document.get(section)
        if not isinstance(value, dict):
            raise ModelFileError(f"{path}: field '{section}' must be an object, got {type(value).__name__}")
        if not isinstance(value.get(key), kind):
            raise ModelFileError(f"{path}: field '{section}.{key}' must be a{'n object' if kind is dict else ' string'}"
                                 f", got {type(value.get(key)).__name__}")
    if document.get("config") is not None and not isinstance(document["config"], dict):
        raise ModelFileError(f"{path}: field 'config' must be an object or null")


def _check_trained(model: Any, path: Path) -> None:
    """Refuse a model without trained parameters (e.g. ``"weights": null``): it would predict at random."""
    try:
        vector = model.vector()
    except AmpError as exc:
        raise ModelFileError(f"{path}: the model holds no trained parameters ({exc}); "
                             "load a potential saved after training") from exc
    if not np.all(np.isfinite(vector)):
        raise ModelFileError(f"{path}: the model's parameters include NaN or infinite values")


def _load_foreign(path: Path, text: str, manager: PluginManager, error: Exception) -> Potential:
    """Build a potential from a file that is not amp-core JSON, with the model plugin whose reader accepts it."""
    formats = []
    for name, registered in manager.registered("model").items():
        for reader in getattr(registered.entry, "readers", ()):
            formats.append(reader.format)
            if reader.accepts(text):
                d_name, d_params, m_params = reader.read(text, str(path))
                descriptor = manager.create("descriptor", d_name, d_params, where=f"{path}, descriptor")
                model = manager.create("model", name, m_params, where=f"{path}, model")
                potential = Potential(descriptor, model, manager=manager)
                potential.loaded_from = path
                return potential
    raise ModelFileError(
        f"{path} is not an amp-core potential file (not valid JSON: {error}) and no installed model plugin "
        f"reads its format (readers: {', '.join(formats) or 'none'})"
    )


_WARNED_SLOW: set[str] = set()
"""Descriptors whose missing compiled kernels were already reported in this process."""


def _slow_kernel(name: str, reason: Exception) -> None:
    """Say once per process and descriptor (logger ``amp_core``, WARNING: on stderr unless logging is
    configured otherwise) that force calls run numpy because the compiled kernels are missing. A log
    record, not a Python warning, so code that turns warnings into errors around MD still runs."""
    if name in _WARNED_SLOW:
        return
    _WARNED_SLOW.add(name)
    logging.getLogger("amp_core").warning(
        "descriptor %r: force calls run the numpy kernels, several times slower than the compiled ones, "
        "which are not available here (%s); Potential(..., compiled=False) chooses numpy without this "
        "message", name, reason)
