"""Structural contracts for the three plugin kinds.

Plugins need not subclass anything: an object with these attributes and methods
is a descriptor, model or backend. Capabilities are declared in ``implemented``
(as ASE's ``implemented_properties``); the core checks them before dispatch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from ase import Atoms

    from amp_core.chunks import ChunkHandle
    from amp_core.data import ImageFingerprints, LossParts, LossSettings

T = TypeVar("T")
R = TypeVar("R")

# Capability names, the items of a plugin's ``implemented`` (never write the strings).
FINGERPRINTS = "fingerprints"
"""Descriptor: computes per-atom fingerprints (without it, models receive raw structures)."""
FINGERPRINT_DERIVATIVES = "fingerprint_derivatives"
"""Descriptor: computes the sparse derivative blocks d fingerprint / d position."""
ENERGY = "energy"
"""Model: predicts energies."""
FORCES = "forces"
"""Model: predicts forces (and trains on them)."""
COMPILED = "compiled"
"""Descriptor or model: has compiled kernels, returned by its :meth:`Compilable.compiled`."""
CONTRACT = "contract"
"""Descriptor: :meth:`Contracting.contract` computes forces in one pass, contracting per-atom
dE/dG (asked of the model batch by batch) with the derivatives as they are produced."""
STRAIN_DERIVATIVES = "strain_derivatives"
"""Descriptor: :meth:`Contracting.contract` with ``virial=True`` also contracts dE/dG with the
derivatives of the fingerprints under a homogeneous strain of the cell (gives the stress)."""
NEIGHBOUR_LIST = "neighbour_list"
"""Descriptor: :meth:`Contracting.neighbours` builds a list (cutoff + skin) that ``compute`` and
``contract`` accept as ``neighbours=`` while no atom moved more than half the skin."""
ATOMIC_GRADIENT = "atomic_gradient"
"""Model: the energy is a sum of atomic energies, each a function of its own atom's fingerprint;
:meth:`AtomicModel.atomic_gradient` returns them and dE/dG per atom."""
RESIDUAL_JACOBIAN = "residual_jacobian"
"""Model: its loss evaluators also have ``residuals(vector, request) -> Residuals``: the weighted energy and
force residuals of a chunk that a :class:`~amp_core.residuals.ResidualRequest` names, with their Jacobian
rows (:mod:`amp_core.residuals`), which second-order and Kalman-filter optimisers ask for."""
DESCRIPTOR_CAPABILITIES = frozenset({FINGERPRINTS, FINGERPRINT_DERIVATIVES, COMPILED, CONTRACT,
                                     STRAIN_DERIVATIVES, NEIGHBOUR_LIST})
MODEL_CAPABILITIES = frozenset({ENERGY, FORCES, COMPILED, ATOMIC_GRADIENT, RESIDUAL_JACOBIAN})

GradientCallback = Callable[[NDArray[np.int64], NDArray[np.float64]], NDArray[np.float64]]
"""``gradient(rows, values) -> dE/dG``: rows (B,) int64 atom indices, values (B, F) float64
their fingerprints; returns (B, F) float64 dE/dG (eV per fingerprint unit)."""

LossEvaluator = Callable[[NDArray[np.float64]], "LossParts"]
"""``evaluator(vector) -> LossParts`` for one chunk, built once by the worker that owns it."""


@runtime_checkable
class Descriptor(Protocol):
    """Turns a structure into per-atom fingerprints.

    A descriptor is a pure function of (structure, params): no caching, no I/O,
    no parallelism inside it. It must pickle (workers receive it built).

    Attributes:
        name: the registered name.
        params: the frozen parameter dataclass it was built from.
        implemented: capabilities, a subset of :data:`DESCRIPTOR_CAPABILITIES`
            (``"fingerprints"``, ``"fingerprint_derivatives"``, ``"compiled"``, and for MD
            ``"contract"``, ``"strain_derivatives"``, ``"neighbour_list"``: see
            :class:`Contracting`). Without ``"fingerprints"`` (the ``none`` descriptor) the
            pipeline skips fingerprinting and models receive raw structures.
        elements: chemical symbols it can fingerprint, or ``None`` for any.
    """

    name: str
    params: Any
    implemented: frozenset[str]
    elements: tuple[str, ...] | None

    def compute(self, atoms: Atoms, derivatives: bool = False) -> ImageFingerprints:
        """Fingerprint one structure (positions in Angstrom); with ``"neighbour_list"`` it also takes
        ``neighbours=`` (a list from :meth:`Contracting.neighbours`)."""
        ...

    def cost(self, atoms: Atoms) -> float:
        """Estimate the relative work of :meth:`compute` (for chunk boundaries and balancing)."""
        ...

    def todict(self) -> dict[str, Any]:
        """Return JSON-serialisable keyword arguments that rebuild this descriptor."""
        ...


@runtime_checkable
class Model(Protocol):
    """Turns fingerprints (or raw structures) into energies and forces.

    Attributes:
        name: the registered name.
        params: the frozen hyper-parameter dataclass it was built from.
        implemented: subset of ``{"energy", "forces", "compiled"}``.
        inputs: ``"fingerprints"`` or ``"structures"`` (what it consumes).
        elements: chemical symbols it has parameters for, or ``None`` before
            :meth:`initialize`.

    The model reads chunk arrays in the layout of :mod:`amp_core.reshape`.
    """

    name: str
    params: Any
    implemented: frozenset[str]
    inputs: str
    elements: tuple[str, ...] | None

    def initialize(self, arrays: Sequence[Mapping[str, NDArray[Any]]]) -> None:
        """Fill in whatever is not yet set (scalings, weights, ...) from training chunks."""
        ...

    def vector(self) -> NDArray[np.float64]:
        """Return the flat parameter vector (a copy)."""
        ...

    def set_vector(self, vector: NDArray[np.float64]) -> None:
        """Set the parameters from a flat vector."""
        ...

    def loss_evaluator(self, arrays: Mapping[str, NDArray[Any]], settings: LossSettings) -> LossEvaluator:
        """Prepare one chunk once; return ``evaluator(vector) -> LossParts``."""
        ...

    def regularization(self, vector: NDArray[np.float64], overfit: float) -> tuple[float, NDArray[np.float64]]:
        """Return the penalty and its gradient for ``overfit`` (added once, in the parent)."""
        ...

    def predict(
        self, atoms: Atoms, fingerprints: ImageFingerprints | None, forces: bool
    ) -> tuple[float, NDArray[np.float64] | None]:
        """Return energy (eV) and, when asked, forces (n_atoms, 3) eV/A of one structure."""
        ...

    def todict(self) -> dict[str, Any]:
        """Return a JSON document (hyper-parameters and trained parameters)."""
        ...


@dataclass(frozen=True)
class Contraction:
    """What :meth:`Contracting.contract` returns for one structure.

    Attributes:
        values: (n_atoms, n_features) float64 fingerprints (as ``compute`` gives them).
        forces: (n_atoms, 3) float64 -dE/dR, eV/Angstrom.
        virial: (3, 3) float64 dE/d(strain) = sum over neighbour images of
            (dE/d r_ij) outer r_ij, eV (``stress = virial / volume``, ASE's sign), or ``None``.
    """

    values: NDArray[np.float64]
    forces: NDArray[np.float64]
    virial: NDArray[np.float64] | None


@runtime_checkable
class Contracting(Protocol):
    """A descriptor with ``CONTRACT`` (and optionally ``STRAIN_DERIVATIVES``, ``NEIGHBOUR_LIST``)."""

    def contract(self, atoms: Atoms, gradient: GradientCallback, *, virial: bool = False,
                 neighbours: Any = None) -> Contraction:
        """Fingerprint ``atoms`` and contract dE/dG with the derivatives, centre batch by centre batch.

        ``gradient(rows, values)`` is called once for every atom (in batches, each atom in
        exactly one) as soon as its fingerprint is known; the derivatives of a batch are
        contracted with its answer and dropped. No derivative blocks of the whole
        structure are stored. An exception raised by ``gradient`` propagates.
        """
        ...

    def neighbours(self, atoms: Atoms, skin: float) -> Any:
        """Return a neighbour list of ``atoms`` with cutoff + ``skin`` (Angstrom), for ``neighbours=``.

        It stays valid for positions within ``skin / 2`` of those given, with the same
        cell, pbc and numbers (the caller checks; the descriptor gives the same numbers
        with it as with a fresh list, to round-off).
        """
        ...


def takes_sets(descriptor: Any) -> bool:
    """Whether ``descriptor.contract`` takes the optional keyword ``sets`` (several sets of dE/dG in one
    pass, an ensemble's members: ``gradient`` then answers (sets, B, F), forces and virial gain a
    leading sets axis)."""
    try:
        return "sets" in inspect.signature(descriptor.contract).parameters
    except (TypeError, ValueError):
        return False


@runtime_checkable
class AtomicModel(Protocol):
    """A model with ``ATOMIC_GRADIENT``: E = sum over atoms of E_i(G_i)."""

    def atomic_gradient(self, numbers: NDArray[np.int64],
                        values: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Return atomic energies (B,) eV and dE/dG (B, F) for atoms ``numbers`` (B,) with fingerprints (B, F)."""
        ...


@runtime_checkable
class Compilable(Protocol):
    """A descriptor or model with the ``COMPILED`` capability.

    The one mechanism for compiled kernels: a backend whose ``compiled`` setting is on
    asks each plugin for its twin through :func:`amp_core.pipeline.use_compiled`; the
    twin gives the same numbers (to 1e-10 relative) from compiled code.
    """

    def compiled(self) -> Any:
        """Return a twin of this plugin (same parameters) that runs its compiled kernels.

        Raises:
            PropertyNotImplementedError: the kernels were not built here, saying how to get them.
        """
        ...


class TrainingSession(Protocol):
    """Resident workers holding their chunks' arrays and evaluators, evaluated once per optimiser step."""

    def evaluate(self, vector: NDArray[np.float64]) -> list[LossParts]:
        """Return one :class:`LossParts` per chunk, in chunk order (whatever the placement).

        Optional: a session whose class sets ``subsets = True`` also takes ``chunks`` (a
        sequence of chunk indices) and then evaluates and returns only those, in chunk
        order (what minibatch optimisers ask for). Without it the core evaluates every
        chunk and keeps the ones asked for: the same numbers, without the saving.

        Optional too: ``residuals(vector, {chunk: ResidualRequest}) -> list[Residuals]``, in
        chunk order, each chunk's ``evaluator.residuals(vector, request)`` computed where the
        chunk is held (models with :data:`RESIDUAL_JACOBIAN`); a session without it makes
        ``LossFunction.check_residuals`` refuse optimisers that need it, naming the backend.
        """
        ...

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        ...


@runtime_checkable
class Backend(Protocol):
    """Runs pipeline stages over chunks (:mod:`amp_core.chunks`).

    Results are always returned in task or chunk order, never completion order, and
    chunk boundaries never depend on the worker count, so every backend and worker
    count gives bitwise the same numbers for the same kernels.

    Attributes:
        name: the registered name.
        params: its settings dataclass.
        cores: number of workers it runs.
        compiled: whether the plugins with the ``COMPILED`` capability run as their
            compiled twins (``plugin.compiled()``, asked by :func:`amp_core.pipeline.use_compiled`).
    """

    name: str
    params: Any
    cores: int
    compiled: bool

    def map(
        self,
        function: Callable[[T], R],
        tasks: Sequence[T],
        *,
        stage: str,
        progress: Callable[[int], None] | None = None,
    ) -> list[R]:
        """Run ``function`` on each task (both picklable); return results in task order.

        ``progress(k)`` is called in the parent after each finished task (k = tasks
        done so far). A task that raises, or a worker that dies or stops answering,
        raises :class:`~amp_core.errors.BackendError` naming ``stage`` and the task
        index, within seconds; it never hangs.
        """
        ...

    def start(self, model: Model, chunks: Sequence[ChunkHandle], settings: LossSettings) -> TrainingSession:
        """Build one loss evaluator per chunk (``model.loss_evaluator(chunk.load(), settings)``) in the
        worker that owns it, once; return the session that evaluates them every step."""
        ...

    def close(self) -> None:
        """Release every worker (idempotent)."""
        ...

    def __enter__(self) -> Any:
        """Return the backend itself (``with create_backend(...) as backend:``)."""
        ...

    def __exit__(self, *exc: object) -> None:
        """Call :meth:`close`."""
        ...


LossAndGradient = Callable[..., "tuple[float, NDArray[np.float64]]"]
"""``f(vector) -> (loss, gradient)``: the training loss over all chunks.

For minibatch optimisers it also has ``f.n_chunks`` (the number of chunks) and takes
``f(vector, chunks=[...])``: the loss and gradient summed over those chunks' images only
(the regularisation term scaled by their share of the images, so that the chunks of one
pass add up to the whole loss)."""


@runtime_checkable
class Optimizer(Protocol):
    """Minimises the training loss; the training loop logs, validates, checkpoints and stops it.

    Attributes:
        name: the registered name.
        params: its settings dataclass.
    """

    name: str
    params: Any

    def minimize(self, function: LossAndGradient, start: NDArray[np.float64], *, maxiter: int,
                 callback: Callable[[NDArray[np.float64]], None]) -> str:
        """Minimise ``function`` from ``start`` for at most ``maxiter`` iterations; return why it ended.

        ``callback(vector)`` must be called once per iteration with the new parameters; it
        raises to stop the run (convergence, limits, early stopping), which the optimiser
        lets propagate.
        """
        ...
