"""``loss_function`` and ``evaluate_loss``: set up the pipeline once, evaluate every step."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from amp_core import memory
from amp_core.chunks import ChunkHandle, make_chunks
from amp_core.compiled import loaded_libraries
from amp_core.data import LossParts, LossResult, LossSettings
from amp_core.ensemble import check_shared, members_of
from amp_core.errors import ConfigError, PropertyNotImplementedError, UsageError
from amp_core.extrapolation import TrainingRange
from amp_core.images import ImageSource, check_elements, duplicate_warning, load_dataset
from amp_core.manager import PluginManager, resolve
from amp_core.pipeline import (
    Log,
    _quiet,
    build_chunks,
    compute_fingerprints,
    image_costs,
    image_failed,
    use_compiled,
)
from amp_core.progress import Progress
from amp_core.protocols import FINGERPRINT_DERIVATIVES, FINGERPRINTS, FORCES, RESIDUAL_JACOBIAN
from amp_core.residuals import ResidualRequest, Residuals
from amp_core.store import FingerprintStore, descriptor_key


def check_compatible(descriptor: Any, model: Any, forces: bool) -> bool:
    """Check that the descriptor provides what the model consumes; return whether to fingerprint."""
    if model.inputs == "structures":
        return False
    if model.inputs != "fingerprints":
        raise ConfigError(f"model {model.name!r} declares inputs {model.inputs!r}; expected "
                          "'fingerprints' or 'structures'")
    if FINGERPRINTS not in descriptor.implemented:
        raise ConfigError(f"model {model.name!r} needs fingerprints, but descriptor {descriptor.name!r} "
                          "computes none; choose a fingerprinting descriptor such as 'gaussian'")
    if forces and FINGERPRINT_DERIVATIVES not in descriptor.implemented:
        raise PropertyNotImplementedError(
            f"force training needs fingerprint derivatives, which descriptor {descriptor.name!r} does not "
            f"implement (implemented: {', '.join(sorted(descriptor.implemented)) or 'nothing'}); "
            "train energies only or choose another descriptor")
    return True


def can_train_forces(descriptor: Any, model: Any) -> bool:
    """Whether the model predicts forces and gets what it needs for them (fingerprint derivatives)."""
    if FORCES not in getattr(model, "implemented", frozenset({FORCES})):
        return False
    return model.inputs == "structures" or FINGERPRINT_DERIVATIVES in descriptor.implemented


EVALUATOR_FACTOR = 2.5
"""Memory allowed for the workers' loss evaluators per byte of fingerprint data: the mapped
arrays plus the prepared copies the numpy kernels make (an allowance, not a measurement)."""


class LossFunction:
    """The loss over a data set, callable by an optimiser: ``f(vector) -> (loss, gradient)``.

    Set-up (fingerprints, store, reshape, workers) happens once, in the constructor.
    Use :meth:`close` (or ``with``) to release the workers.

    Under MPI (a backend whose ``drives`` is ``False`` on ranks other than 0) the
    constructor is collective: on rank 0 it returns the loss function; on the other
    ranks it serves rank 0's evaluations and returns, closed, when rank 0 closes it.
    """

    def __init__(self, images: ImageSource, potential: Any, backend: Any = "serial",
                 energy_coefficient: float = 1.0, force_coefficient: float | None = None,
                 overfit: float = 0.0, *, forces: bool | None = None, run_dir: str | Path | None = None,
                 log: Log = _quiet, progress: bool | None = None, manager: PluginManager | None = None) -> None:
        try:
            self.settings = LossSettings(energy_coefficient, force_coefficient, overfit, forces)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"loss settings: {exc}") from exc
        self.potential = potential
        self.manager = resolve(manager if manager is not None else getattr(potential, "manager", None))
        self._own_backend = isinstance(backend, str)
        self.backend = self.manager.create("backend", backend, {}) if isinstance(backend, str) else backend
        self.drives = bool(getattr(self.backend, "drives", True))  # False on MPI ranks other than 0
        self._tmp: str | None = None
        if run_dir is None:  # one temporary folder for every rank: the driving rank's
            self._tmp = share(self.backend, tempfile.mkdtemp(prefix="amp-run-") if self.drives else None)
        self.run_dir = Path(run_dir if run_dir is not None else self._tmp)  # type: ignore[arg-type]
        self.session: Any = None
        self.training_range: TrainingRange | None = None
        self.chunks: list[ChunkHandle] = []
        self.last: LossResult | None = None
        self._last_vector: NDArray[np.float64] | None = None
        try:
            self.dataset = load_dataset(images, forces=self.settings.forces)
            self.session = self._setup(log, progress)
        except BaseException:
            self.close()
            raise
        if not self.drives:  # an MPI rank other than 0 served rank 0's evaluations until rank 0 closed
            self.close()

    def _setup(self, log: Log, progress: bool | None) -> Any:
        descriptor, model, forces = self.potential.descriptor, self.potential.model, self.settings.forces
        data = self.dataset
        log(f"data: {len(data)} images, {sum(len(a) for a in data.images)} atoms; "
            f"forces {'trained' if forces else 'not trained'}")
        repeated = duplicate_warning(data.hashes, data.origins)
        if repeated:
            log(repeated)
        fingerprinting = check_compatible(descriptor, model, forces)
        trained = bool(getattr(self.potential, "trained", False))  # loaded or trained: elements are fixed
        if fingerprinting:
            check_elements(data.images, data.origins, descriptor.elements, f"descriptor {descriptor.name!r}",
                           trained=trained)
        check_elements(data.images, data.origins, model.elements, f"model {model.name!r}", trained=trained)
        store, worker_descriptor = None, None
        costs = (image_costs(data, descriptor, self.backend) if fingerprinting
                 else [float(len(a)) for a in data.images])
        chunks = make_chunks(costs, [len(a) for a in data.images])
        if fingerprinting:
            version = self.manager.provider("descriptor", descriptor.name)[1]
            store = FingerprintStore(self.run_dir / "fingerprints",
                                     descriptor_key(descriptor.name, version, descriptor.todict()))
            worker_descriptor = use_compiled(descriptor, self.backend, log)
            self._check_memory(worker_descriptor, costs, chunks, forces, log)
            done = compute_fingerprints(data, worker_descriptor, self.backend, store, forces, chunks,
                                        Progress("fingerprinting", len(data), enabled=progress))
            log(f"fingerprints: {done} computed, {len(data) - done} reused from {store.folder}")
        self.chunks = build_chunks(data, chunks, costs, self.run_dir / "arrays", store, forces, self.backend,
                                   Progress("reshaping", len(chunks), "chunks", enabled=progress),
                                   descriptor=worker_descriptor if fingerprinting else None, log=log)
        log(f"chunks: {len(self.chunks)} (about {sum(c.n_atoms for c in self.chunks) // len(self.chunks)} atoms "
            f"each; the sum over them is in chunk order, the same for any number of workers)")
        if self.drives:  # under MPI only rank 0 reads every chunk: start hands its model to the other ranks
            arrays = [chunk.load() for chunk in self.chunks]
            model.initialize(arrays)
            if members_of(model) is not None:  # one evaluator per chunk serves every member: check it can
                check_shared(model, arrays[0], self.settings)
            if fingerprinting:  # the data's range, stored with a trained potential (extrapolation warnings)
                self.training_range = TrainingRange.from_arrays(arrays)
        worker_model = use_compiled(model, self.backend, log)
        if getattr(self.backend, "compiled", False) and loaded_libraries():
            log("compiled kernels loaded in this process: " + ", ".join(map(str, loaded_libraries())))
        return self.backend.start(worker_model, self.chunks, self.settings)

    def _check_memory(self, descriptor: Any, costs: list[float], chunks: list[list[int]], forces: bool,
                      log: Log) -> None:
        """Estimate the fingerprint data from one image (of median cost) and check each node's share of it
        (the chunks whose evaluators it will hold: all of them on one machine, unless the backend's
        ``memory_nodes`` spreads them over several) against that node's budget."""
        data = self.dataset
        sample = sorted(range(len(costs)), key=lambda k: (costs[k], k))[len(costs) // 2]
        try:
            fingerprints = descriptor.compute(data.images[sample], derivatives=forces)
        except Exception as exc:  # name the image, as the fingerprint stage does
            failure = image_failed(data.origins[sample], exc, "fingerprinting")
            if failure is exc:
                raise
            raise failure from exc
        size = sum(a.nbytes for a in (fingerprints.values, fingerprints.pairs, fingerprints.derivatives)
                   if a is not None)
        total = size * sum(costs) / max(costs[sample], 1e-300)
        log(f"fingerprint data (estimated from {data.origins[sample]}): {memory.human(total)} in all, "
            f"{memory.human(total / len(data))} per image on average")
        what = f"{'force' if forces else 'energy'} training on {len(data)} images"
        chunk_costs = [float(sum(costs[i] for i in chunk)) for chunk in chunks]  # as ChunkHandle.cost
        nodes = memory.nodes(self.backend, chunk_costs)
        for name, held, limit in nodes:
            share = total * sum(chunk_costs[k] for k in held) / max(sum(chunk_costs), 1e-300)
            if name is not None and len(nodes) > 1:
                log(f"fingerprint data on {name}: {memory.human(share)} ({len(held)} of {len(chunks)} chunks)")
            memory.check(EVALUATOR_FACTOR * share, what if name is None else f"{what} ({len(held)} of "
                         f"{len(chunks)} chunks)", limit, name)

    def evaluate(self, vector: NDArray[np.float64] | None = None) -> LossResult:
        """Return the loss, its parts and gradient at ``vector`` (default: the model's)."""
        if self.session is None:
            raise UsageError("this loss function is closed; set up a new one with loss_function(...)")
        model = self.potential.model
        vector = model.vector() if vector is None else np.asarray(vector, dtype=np.float64)
        if self.last is not None and self._last_vector is not None and np.array_equal(vector, self._last_vector):
            return self.last
        self.last = self._result(LossParts.combine(self.session.evaluate(vector)), vector)
        self._last_vector = vector.copy()
        return self.last

    def __call__(self, vector: NDArray[np.float64], chunks: Sequence[int] | None = None
                 ) -> tuple[float, NDArray[np.float64]]:
        """Return (loss, gradient) at ``vector``: what optimisers call.

        Args:
            vector: the parameters.
            chunks: evaluate only these chunks (indices below :attr:`n_chunks`): the loss
                and gradient summed over their images, plus the regularisation scaled by
                their share of the images (for minibatch optimisers). ``None``: all.
        """
        if chunks is None:
            result = self.evaluate(vector)
            return result.loss, result.gradient
        return self._subset(np.asarray(vector, dtype=np.float64), chunks)

    @property
    def n_chunks(self) -> int:
        """Number of chunks the data is cut into (what ``chunks`` indices count)."""
        return len(self.chunks)

    def _subset(self, vector: NDArray[np.float64], chunks: Sequence[int]) -> tuple[float, NDArray[np.float64]]:
        if self.session is None:
            raise UsageError("this loss function is closed; set up a new one with loss_function(...)")
        result = self.subset(vector, self.chunk_indices(chunks))
        return result.loss, result.gradient

    def chunk_indices(self, chunks: Sequence[int]) -> list[int]:
        """Return ``chunks`` sorted without repeats, refusing indices that are not those of this loss's chunks."""
        wanted = sorted({int(k) for k in chunks})
        if not wanted or wanted[0] < 0 or wanted[-1] >= len(self.chunks):
            raise UsageError(f"chunks must be indices from 0 to {len(self.chunks) - 1}, got {list(chunks)!r}")
        return wanted

    def subset(self, vector: NDArray[np.float64], wanted: list[int]) -> LossResult:
        """The :class:`LossResult` over chunks ``wanted`` (sorted, valid indices), the regularisation
        scaled by their share of the images."""
        if getattr(self.session, "subsets", False):
            parts = LossParts.combine(self.session.evaluate(vector, wanted))
        else:  # a backend without subsets: evaluate all, keep the ones asked for
            every = self.session.evaluate(vector)
            parts = LossParts.combine([every[k] for k in wanted])
        share = sum(self.chunks[k].n_images for k in wanted) / sum(c.n_images for c in self.chunks)
        return self._result(parts, vector, share)

    def _result(self, parts: LossParts, vector: NDArray[np.float64], share: float = 1.0) -> LossResult:
        """The result of combined ``parts`` at ``vector``: the regularisation (times ``share``) added;
        for an ensemble, each member's result (as it would be alone) in ``members``."""
        model = self.potential.model
        members = members_of(model)
        if members is None or not parts.members:
            return _single(parts, model, vector, self.settings.overfit, share)
        each = tuple(_single(p, m, v, self.settings.overfit, share)
                     for p, m, v in zip(parts.members, members, model.split(vector)))
        n = parts.n_images
        return LossResult(
            loss=sum(r.loss for r in each), energy_loss=parts.energy_loss, force_loss=parts.force_loss,
            energy_rmse=math.sqrt(parts.energy_loss / (n * len(each))),
            force_rmse=math.sqrt(parts.force_loss / (n * len(each))),
            energy_maxresid=parts.energy_maxresid, force_maxresid=parts.force_maxresid,
            gradient=np.concatenate([r.gradient for r in each]), members=each)

    @property
    def residual_sizes(self) -> list[tuple[int, int]]:
        """Per chunk: (energy residuals, force residuals) it has (:mod:`amp_core.residuals`)."""
        return [(c.n_images, 3 * c.n_atoms if self.settings.forces else 0) for c in self.chunks]

    def residuals(self, vector: NDArray[np.float64], requests: Mapping[int, ResidualRequest]) -> list[Residuals]:
        """Return the residuals and Jacobian rows ``requests`` names (chunk index -> request), in chunk order.

        What second-order and Kalman-filter optimisers call; :meth:`check_residuals` says
        beforehand whether this backend and model can answer.
        """
        self.check_residuals("residuals")
        wanted = sorted(int(k) for k in requests)
        if wanted and (wanted[0] < 0 or wanted[-1] >= len(self.chunks)):
            raise UsageError(f"chunks must be indices from 0 to {len(self.chunks) - 1}, got {wanted!r}")
        return list(self.session.residuals(np.asarray(vector, dtype=np.float64), {k: requests[k] for k in wanted}))

    def check_residuals(self, who: str) -> None:
        """Raise :class:`ConfigError` naming ``who`` when the backend or model cannot give Jacobian rows."""
        if self.session is None:
            raise UsageError("this loss function is closed; set up a new one with loss_function(...)")
        model = self.potential.model
        if RESIDUAL_JACOBIAN not in getattr(model, "implemented", frozenset()):
            raise ConfigError(f"{who} needs the Jacobian rows of the residuals, which model {model.name!r} does not "
                              f"give (it implements {', '.join(sorted(model.implemented))}); use the "
                              "'neuralnetwork' model or a gradient optimiser such as 'lbfgs'")
        if not callable(getattr(self.session, "residuals", None)):
            raise ConfigError(f"{who} needs the Jacobian rows of the residuals, which backend "
                              f"{getattr(self.backend, 'name', type(self.backend).__name__)!r} cannot serve; use "
                              "backend 'serial', 'multiprocessing' or 'fortran', or a gradient optimiser such as "
                              "'lbfgs'")

    def close(self) -> None:
        """Stop the workers and remove a temporary run folder (idempotent)."""
        if self.session is not None:
            self.session.close()
            self.session = None
        if self._own_backend:
            self.backend.close()
            self._own_backend = False
        if self._tmp is not None and self.drives:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> LossFunction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _single(parts: LossParts, model: Any, vector: NDArray[np.float64], overfit: float, share: float) -> LossResult:
    """One model's result: its combined parts plus ``share`` of its regularisation at ``vector``."""
    loss, gradient = parts.loss, parts.gradient
    if overfit:  # the penalty is overfit * (something): nothing to add when it is off
        penalty, penalty_gradient = model.regularization(vector, overfit)
        if share == 1.0:
            loss += penalty
            gradient = gradient + penalty_gradient
        else:
            loss += share * penalty
            gradient = gradient + share * penalty_gradient
    n = parts.n_images
    return LossResult(
        loss=float(loss), energy_loss=parts.energy_loss, force_loss=parts.force_loss,
        energy_rmse=math.sqrt(parts.energy_loss / n), force_rmse=math.sqrt(parts.force_loss / n),
        energy_maxresid=parts.energy_maxresid, force_maxresid=parts.force_maxresid,
        gradient=gradient,
    )


def loss_function(images: ImageSource, potential: Any, backend: Any = "serial",
                  energy_coefficient: float = 1.0, force_coefficient: float | None = None,
                  overfit: float = 0.0, *, forces: bool | None = None, manager: PluginManager | None = None,
                  **options: Any) -> LossFunction:
    """Set up the pipeline once and return ``f(vector) -> (loss, gradient)`` (see :class:`LossFunction`).

    Args:
        images: labelled structures: ``Atoms`` with calculators, or file path(s).
        potential: an :class:`amp_core.Potential`; an uninitialised model takes its
            scalings/ranges/weights from these images first.
        backend: a backend name or an object from ``create_backend``.
        energy_coefficient, force_coefficient, overfit: loss weights (Amp's);
            ``force_coefficient=None`` means the default c_F (0.04) when forces are trained.
        forces: train (and report) forces; ``None``: when a ``force_coefficient`` is given.
        manager: the :class:`~amp_core.PluginManager` to look names up in (``None``: the
            potential's, else the installed plugins).
        **options: ``run_dir`` (folder for the store; default a temporary one),
            ``log`` (callable for notices), ``progress`` (force progress lines on/off).
    """
    return LossFunction(images, potential, backend, energy_coefficient, force_coefficient, overfit,
                        forces=forces, manager=manager, **options)


def evaluate_loss(images: ImageSource, potential: Any, backend: Any = "serial",
                  energy_coefficient: float = 1.0, force_coefficient: float | None = None,
                  overfit: float = 0.0, *, forces: bool | None = None, manager: PluginManager | None = None,
                  **options: Any) -> LossResult:
    """Return the loss, errors and gradient of ``potential`` on ``images`` (one call of :func:`loss_function`)."""
    with loss_function(images, potential, backend, energy_coefficient, force_coefficient, overfit,
                       forces=forces, manager=manager, **options) as f:
        result = f.evaluate() if f.drives else None
        # The backend's share must come after close: under MPI the serving ranks are in their serve loop
        # until rank 0 closes the session, and a backend made from a name is closed with it.
        backend_used = f.backend
    return share(backend_used, result)  # type: ignore[no-any-return]


def share(backend: Any, value: Any) -> Any:
    """Return the driving rank's ``value`` on every rank: ``backend.share(value)``, or ``value`` when the
    backend has no ``share`` (every backend but MPI's)."""
    method = getattr(backend, "share", None)
    return value if method is None else method(value)
