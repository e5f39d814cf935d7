"""Amp's Python API on amp-core: an Amp script runs after changing ``from amp`` to ``from amp_core.amp``.

Coming from Amp (``amp-atomistics`` 1.0.1)::

    from amp_core.amp import Amp
    from amp_core.amp.descriptor.gaussian import Gaussian
    from amp_core.amp.model.neuralnetwork import NeuralNetwork

    calc = Amp(descriptor=Gaussian(), model=NeuralNetwork(hiddenlayers=(10, 10, 10)), label="calc")
    calc.train(images="my-images.traj")     # writes calc.amp, calc-log.txt, calc-checkpoint.amp
    calc = Amp.load("calc.amp")             # also Amp's own .amp files; calc.amp loads in Amp too
    atoms.calc = calc
    atoms.get_potential_energy(), atoms.get_forces()

Mirrored: :class:`Amp` (``train``, ``load``, ``save``, an ASE calculator),
:mod:`~amp_core.amp.descriptor.gaussian` (``Gaussian``, ``make_symmetry_functions``,
``make_default_symmetry_functions``), :mod:`~amp_core.amp.descriptor.zernike`,
:mod:`~amp_core.amp.descriptor.bispectrum`, :mod:`~amp_core.amp.descriptor.cutoffs`
(``Cosine``, ``Polynomial``), :mod:`~amp_core.amp.model` (``LossFunction``),
:mod:`~amp_core.amp.model.neuralnetwork` (``NeuralNetwork``),
:mod:`~amp_core.amp.regression` (``Regressor``) and
:mod:`~amp_core.amp.utilities` (``TrainingConvergenceError``). Each object is built as
the amp-core plugin of the same name through the installed plugin manager, and
training runs :func:`amp_core.train`; Amp's numbers (fingerprints, network, loss) are
kept. What differs from Amp is said where it applies: ``cores`` chooses a backend, the
fingerprints live in the run folder ``<label>-amp-core/`` (not ``*.ampdb``), and arguments
that only steer Amp's internals (``dblabel``, ``fortran``, ``envcommand``) are accepted
without effect.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from amp_core.amp.descriptor import AmpDescriptor, from_plugin
from amp_core.amp.model import LossFunction
from amp_core.amp.model.neuralnetwork import NeuralNetwork
from amp_core.amp.utilities import TrainingConvergenceError
from amp_core.errors import ConfigError, DataError, UsageError
from amp_core.manager import PluginManager

__all__ = ["Amp", "LossFunction", "NeuralNetwork", "TrainingConvergenceError"]


def backend_table(cores: Any, backend: Any = None) -> dict[str, Any]:
    """Return amp-core's ``[backend]`` table for Amp's ``cores`` (and the amp-core ``backend`` override).

    ``cores=None`` or ``1``: ``serial``, in this process, so that an Amp script without
    ``if __name__ == "__main__":`` runs as written (Amp's default is all cores; the
    ``multiprocessing`` workers start with ``spawn``, which re-runs an unguarded script);
    ``cores=N`` (N >= 2): ``multiprocessing`` with N workers (the script then needs the
    guard). Every choice gives the same numbers bit for bit. Amp's host dictionary
    (``{'node1': 8, ...}``) is refused, pointing to the ``mpi`` backend.
    """
    if isinstance(cores, dict):
        raise ConfigError(
            f"Amp(cores={cores!r}): Amp's host dictionary starts its own SSH workers; amp-core runs on "
            "several hosts with its 'mpi' backend instead: give Amp(..., backend='mpi') and launch the "
            "script on every rank (mpiexec -n N python script.py, or srun inside a SLURM job); see the README, "
            "'Running on a cluster (MPI)'"
        )
    if backend is not None:
        table = dict(backend) if isinstance(backend, dict) else {"name": backend}
        if cores is not None and "cores" not in table and table.get("name") != "serial":
            table["cores"] = cores
        return table
    if cores is None:
        return {"name": "serial"}
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise ConfigError(f"Amp(cores={cores!r}): cores must be a whole number >= 1, or None")
    return {"name": "serial"} if cores == 1 else {"name": "multiprocessing", "cores": cores}


class Amp(Calculator):
    """Amp's calculator: a descriptor and a model, trained with :meth:`train`, used as an ASE calculator.

    Args:
        descriptor: a mirror descriptor (``Gaussian(...)``, ``Zernike(...)``, ``Bispectrum(...)``).
        model: a mirror model (``NeuralNetwork(...)``).
        label: prefix of the files written: ``<label>.amp`` (the trained potential, which the
            original Amp loads too), ``<label>-log.txt``, ``<label>-checkpoint.amp`` and
            amp-core's run folder ``<label>-amp-core/`` (fingerprints, ``train-log.txt``,
            ``checkpoint.json``, ``potential.json``). A path prefix (``"runs/calc"``) works.
        dblabel: accepted for Amp scripts; fingerprints are kept in the run folder.
        cores: Amp's ``cores``: ``None`` or 1 trains in this process (``serial``); N >= 2 uses
            N ``multiprocessing`` workers (put the script under ``if __name__ == "__main__":``).
            Amp's host dictionary is refused with a pointer to the ``mpi`` backend (see
            :func:`backend_table`).
        envcommand: accepted for Amp scripts, no effect.
        logging: write ``<label>-log.txt`` (as Amp).
        atoms: an optional structure to attach to (ASE's calculator argument).
        backend: (amp-core addition) a backend name or ``[backend]`` table, e.g. ``"mpi"``
            or ``{"name": "fortran", "cores": 2}``; overrides the choice from ``cores``.
        manager: (amp-core addition) the plugin manager (``None``: the installed plugins).
    """

    implemented_properties = ["energy", "forces"]

    def __init__(self, descriptor: AmpDescriptor, model: NeuralNetwork, label: str = "amp",
                 dblabel: str | None = None, cores: Any = None, envcommand: str | None = None,
                 logging: bool = True, atoms: Atoms | None = None, *, backend: Any = None,
                 manager: PluginManager | None = None) -> None:
        if not isinstance(descriptor, AmpDescriptor):
            raise ConfigError(f"Amp(descriptor=...) takes a descriptor from amp_core.amp.descriptor "
                              f"(Gaussian, Zernike, Bispectrum), got {type(descriptor).__name__}")
        if not isinstance(model, NeuralNetwork):
            raise ConfigError(f"Amp(model=...) takes amp_core.amp.model.neuralnetwork.NeuralNetwork, "
                              f"got {type(model).__name__}")
        self.backend = backend_table(cores, backend)
        self.descriptor, self.model = descriptor, model
        self.cores, self.dblabel, self.envcommand, self.logging = cores, dblabel, envcommand, logging
        self.manager = manager
        self.potential: Any = None  # the amp-core Potential, after training or loading
        super().__init__(label=label, atoms=atoms)  # type: ignore[no-untyped-call]

    # -- as an ASE calculator -----------------------------------------------------------

    def calculate(self, atoms: Atoms | None = None, properties: Any = ("energy",),
                  system_changes: Any = all_changes) -> None:
        """Compute energy (eV) and forces (eV/A) with the trained potential."""
        super().calculate(atoms, properties, system_changes)  # type: ignore[no-untyped-call]
        if self.potential is None:
            raise UsageError("this Amp calculator is not trained: call calc.train(images=...) or use "
                             "Amp.load('file.amp')")
        self.potential.reset()  # its results may hold another structure's forces
        self.potential.calculate(self.atoms, properties, system_changes)
        self.results = dict(self.potential.results)

    # -- files ----------------------------------------------------------------------------

    def _file(self, suffix: str) -> Path:
        return Path(f"{self.label}{suffix}")

    def save(self, filename: str | os.PathLike[str], overwrite: bool = False) -> str:
        """Write the trained potential as an Amp ``.amp`` file; return the file name used.

        As Amp: when ``filename`` exists and ``overwrite`` is False, the file goes to a new
        temporary ``.amp`` file instead (the log says which).
        """
        if self.potential is None:
            raise UsageError("nothing to save: this Amp calculator is not trained")
        target = Path(filename)
        if target.exists() and not overwrite:
            with tempfile.NamedTemporaryFile(suffix=".amp", delete=False) as handle:
                new = Path(handle.name)
            self._log(f'File "{target}" exists. Instead saving to "{new}".')
            target = new
        self.potential.save_amp(target)
        return str(target)

    @classmethod
    def load(cls, file: str | os.PathLike[str], Descriptor: Any = None, Model: Any = None,  # noqa: N803
             **kwargs: Any) -> Amp:
        """Load an ``.amp`` file (Amp's or amp-core's) or an amp-core ``potential.json``.

        ``kwargs`` go to :class:`Amp` (``label``, ``cores``, ``manager``, ...). Amp's
        ``Descriptor``/``Model`` classes for home-made modules are not supported: such
        code becomes an amp-core plugin, which loads by name.
        """
        from amp_core import load

        if Descriptor is not None or Model is not None:
            raise ConfigError("Amp.load(Descriptor=..., Model=...): home-made Amp classes are not supported; "
                              "write them as amp-core plugins (docs/plugins.md), which load by name")
        potential = load(file, manager=kwargs.get("manager"))
        amp_parameters = getattr(potential.model, "amp_parameters", None)
        if potential.model.name != "neuralnetwork" or amp_parameters is None:
            raise ConfigError(f"{file}: Amp.load mirrors Amp's NeuralNetwork; this potential's model is "
                              f"{potential.model.name!r}: load it with amp_core.load instead")
        parameters = amp_parameters()
        model = NeuralNetwork(**{k: parameters[k] for k in ("hiddenlayers", "activation", "weights",
                                                            "scalings", "fprange")})
        calc = cls(descriptor=from_plugin(potential.descriptor, kwargs.get("manager")), model=model, **kwargs)
        calc.potential = potential
        return calc

    def _log(self, line: str) -> None:
        if self.logging:
            path = self._file("-log.txt")
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as log:
                log.write(line.rstrip("\n") + "\n")

    # -- training ---------------------------------------------------------------------------

    def train(self, images: Any, overwrite: bool = False) -> None:
        """Train on ``images`` (a list of labelled structures, or an ASE-readable file) as Amp does.

        Writes ``<label>.amp`` when training converges (or reaches ``LossFunction(maxiter)``,
        which Amp 1.0.1 counts as finished), otherwise ``<label>-untrained-parameters.amp``
        and raises :class:`TrainingConvergenceError`; also ``<label>-log.txt`` (the run's
        log) and, when ``model.checkpoints`` is set, ``<label>-checkpoint.amp`` (the last
        iterate; ``<label>-checkpoints/<step>.amp`` for negative ``checkpoints``).

        Raises:
            TrainingConvergenceError: the optimiser stopped before the criteria were met.
            DataError: an image without energy (or forces, when they are trained).
            ConfigError: bad settings, before any work.
        """
        from amp_core import train

        lossfunction = self.model.lossfunction or LossFunction()
        run_dir = self._file("-amp-core").resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        structures = labelled_images(images, lossfunction.forces, lossfunction.parameters["weight_duplicates"])
        data = run_dir / "training-images.traj"
        partial = run_dir / f".training-images.{os.getpid()}.traj"  # every MPI rank writes the same file
        from ase.io import write

        write(partial, structures)
        os.replace(partial, data)
        elements = sorted({s for atoms in structures for s in atoms.get_chemical_symbols()})
        table = lossfunction.training_table()
        checkpoints = self.model.checkpoints
        table.update(optimizer=self.model.regressor.name, checkpoint_interval=abs(checkpoints or 0),
                     directory=str(run_dir))
        config = {
            "descriptor": {"name": self.descriptor.plugin, **self.descriptor.plugin_params(elements)},
            "model": {"name": self.model.plugin, **self.model.plugin_params()},
            "backend": self.backend,
            "data": {"train": str(data)},
            "training": table,
        }
        self._log(f"amp-core training through amp_core.amp (label {self.label!r}); run folder {run_dir}")
        potential = train(config, echo=None, manager=self.manager)
        self.potential = potential
        self.descriptor.built = potential.descriptor
        self.model.update(potential.model.amp_parameters())
        if not _writes_files(self.backend):
            return  # an MPI rank other than 0: rank 0 writes the files and raises
        self._log((run_dir / "train-log.txt").read_text(encoding="utf-8"))
        if checkpoints:
            self._write_checkpoint(run_dir, checkpoints)
        record = potential.training or {}
        finished = bool(record.get("converged")) or record.get("iterations", 0) >= table["maxiter"]
        name = self._file(".amp" if finished else "-untrained-parameters.amp")
        saved = self.save(name, overwrite)
        self._log(f'Parameters saved in file "{saved}".')
        if not finished:
            raise TrainingConvergenceError(f"Amp did not converge upon training ({record.get('outcome', '')}). "
                                           f"See log file {self._file('-log.txt')} for more information.")

    def _write_checkpoint(self, run_dir: Path, checkpoints: int) -> None:
        """Write the run's last checkpoint as Amp's ``<label>-checkpoint.amp`` (or per step, when negative)."""
        import json

        from amp_core import load

        checkpoint = run_dir / "checkpoint.json"
        if not checkpoint.exists():
            return
        step = json.loads(checkpoint.read_text(encoding="utf-8")).get("iteration", 0)
        target = self._file("-checkpoint.amp")
        if checkpoints < 0:
            folder = self._file("-checkpoints")
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{step}.amp"
        load(checkpoint, manager=self.manager).save_amp(target)


def _writes_files(backend: dict[str, Any]) -> bool:
    """Whether this process writes the label files: always, except on MPI ranks other than 0."""
    if backend.get("name") != "mpi":
        return True
    try:
        from mpi4py import MPI
    except ImportError:  # the backend then runs as one rank
        return True
    return bool(MPI.COMM_WORLD.Get_rank() == 0)


def labelled_images(images: Any, forces: bool, weight_duplicates: bool) -> list[Atoms]:
    """Return the training structures with their energies (and forces) as single-point results.

    ``images``: a list of structures with results or calculators, one structure, or an
    ASE-readable file name (``file@slice`` works). Without ``weight_duplicates``,
    identical structures count once, as in Amp. Forces are read as Amp reads them,
    without the structure's constraints (fixed atoms keep their reference forces).

    Raises:
        DataError: no images, or an image without energy (or forces), naming it.
    """
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read

    if isinstance(images, (str, os.PathLike)):
        name, _, selection = str(images).partition("@")
        structures = read(name, index=selection or ":")
        structures = [structures] if isinstance(structures, Atoms) else list(structures)
        origin = str(images)
    else:
        structures = [images] if isinstance(images, Atoms) else list(images)
        origin = "the images given"
    if not structures:
        raise DataError(f"{origin}: no images to train on")
    out, seen = [], set()
    for k, atoms in enumerate(structures):
        if not isinstance(atoms, Atoms):
            raise DataError(f"{origin}, image {k}: not an ASE Atoms object ({type(atoms).__name__})")
        try:
            energy = atoms.get_potential_energy()
            force_values = atoms.get_forces(apply_constraint=False) if forces else None  # as Amp reads them
        except Exception as exc:  # noqa: BLE001 - any calculator failure: say which image
            want = "energy and forces" if forces else "an energy"
            raise DataError(f"{origin}, image {k}: needs {want} (a calculator or stored results): "
                            f"{type(exc).__name__}: {exc}") from exc
        key = _image_key(atoms)
        if not weight_duplicates and key in seen:
            continue
        seen.add(key)
        copy = atoms.copy()
        copy.set_constraint()  # the stored forces are the unconstrained ones, which amp-core then reads
        copy.calc = SinglePointCalculator(copy, energy=energy, **({} if force_values is None else {"forces": force_values}))
        out.append(copy)
    return out


def _image_key(atoms: Atoms) -> str:
    """A hash of numbers, positions, cell and periodicity: identical structures share it (as Amp's hash)."""
    digest = hashlib.md5(usedforsecurity=False)
    for array in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc):
        digest.update(array.tobytes())
    return digest.hexdigest()
