"""``check_backend``: a backend must give ``serial``'s fingerprints, loss and gradient."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from amp_core.images import image_hash
from amp_core.loss import share
from amp_core.manager import PluginManager, resolve
from amp_core.pipeline import FingerprintTask, run_task, use_compiled
from amp_core.protocols import FINGERPRINT_DERIVATIVES, FINGERPRINTS
from amp_core.store import read_entry

_UNSET: Any = object()


def labelled_structures() -> list[Any]:
    """Return small EMT-labelled Cu/Pt structures: periodic slabs and bulk, and a cluster, of uneven size."""
    from ase.build import bulk, fcc111
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.cluster import Octahedron

    rng = np.random.default_rng(7)
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=6.0)
    slab[-1].symbol = "Pt"
    crystal = bulk("Cu", "fcc", a=3.62, cubic=True).repeat((2, 1, 1))
    crystal[3].symbol = "Pt"
    cluster = Octahedron("Cu", 3)
    cluster.set_cell([0, 0, 0])
    cluster.pbc = False
    cluster[0].symbol = "Pt"
    images = []
    for k, base in enumerate([slab, crystal, cluster, slab, crystal]):
        atoms = base.copy()
        atoms.positions += rng.normal(0.0, 0.05 + 0.01 * k, atoms.positions.shape)
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
        images.append(atoms)
    return images


def _relative(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)) if a.size else 0.0


def check_backend(backend: Any, *, potential: Any = None, images: Sequence[Any] | None = None,
                  forces: bool | None = None, rtol: float = 1e-10, manager: PluginManager | None = None,
                  force_coefficient: Any = _UNSET) -> None:
    """Assert that ``backend`` reproduces ``serial`` on a small pipeline.

    Checks fingerprints and their derivatives (when the descriptor has them) and the
    loss and its gradient at two parameter vectors, to ``rtol`` relative.

    Args:
        backend: the backend object to check (left open; the caller closes it).
        potential: a :class:`~amp_core.Potential`; default Gaussian + a small network.
        images: labelled structures; default :func:`labelled_structures`.
        forces: check force training too (``False``: energies only; ``None``: forces,
            unless the older form ``force_coefficient=None`` asks for energies only).
        rtol: largest relative difference allowed (0 demands bitwise equality, which
            the same kernel family gives for any worker count).
        manager: the :class:`~amp_core.PluginManager` for the default potential and the
            reference ``serial`` backend (``None``: the installed plugins).
        force_coefficient: c_F (default: :data:`~amp_core.FORCE_COEFFICIENT`).
    """
    from amp_core import Potential, loss_function

    manager = resolve(manager)
    images = list(images) if images is not None else labelled_structures()
    if potential is None:
        potential = Potential(manager.create("descriptor", "gaussian", {"elements": ["Cu", "Pt"]}),
                              manager.create("model", "neuralnetwork", {"hiddenlayers": (4, 3), "seed": 3}),
                              manager=manager)
    label = f"backend {backend.name!r}"
    descriptor = potential.descriptor
    if FINGERPRINTS in descriptor.implemented and potential.model.inputs == "fingerprints":
        _check_fingerprints(backend, descriptor, images, rtol, label)
    serial = manager.create("backend", "serial", {})
    if forces is None:
        forces = force_coefficient is not None
    coefficient = None if force_coefficient is _UNSET else force_coefficient
    options = {"force_coefficient": coefficient, "forces": forces, "manager": manager}
    with loss_function(images, potential, serial, **options) as reference:
        x0 = potential.model.vector()
        x1 = x0 + np.random.default_rng(0).normal(0.0, 0.05, x0.shape)
        expected = [reference.evaluate(x) for x in (x0, x1)]
    with loss_function(images, potential, backend, **options) as tested:
        if not tested.drives:
            return  # an MPI rank other than 0: it served rank 0's evaluations, which rank 0 checks
        got = [tested.evaluate(x) for x in (x0, x1)]
    for k, (e, g) in enumerate(zip(expected, got)):
        for field in ("loss", "energy_loss", "force_loss", "energy_maxresid", "force_maxresid", "gradient"):
            error = _relative(getattr(g, field), getattr(e, field))
            assert error <= rtol, f"{label}: {field} at vector {k} differs from serial by {error:.2e} (relative)"


def _check_fingerprints(backend: Any, descriptor: Any, images: Sequence[Any], rtol: float, label: str) -> None:
    derivatives = FINGERPRINT_DERIVATIVES in descriptor.implemented
    worker_descriptor = use_compiled(descriptor, backend, lambda line: None)
    drives = bool(getattr(backend, "drives", True))  # under MPI: rank 0 checks, every rank computes
    with tempfile.TemporaryDirectory() as own:
        folder = share(backend, own)  # rank 0's folder on every rank
        tasks = [FingerprintTask(worker_descriptor, [a], [image_hash(a)], derivatives, folder) for a in images]
        names = backend.map(run_task, tasks, stage="fingerprint")
        if not drives:
            return
        assert [len(n) for n in names] == [1] * len(images), f"{label}: map returned {names!r}"
        for k, (atoms, name) in enumerate(zip(images, names)):
            got = read_entry(Path(folder) / name[0])
            expected = descriptor.compute(atoms, derivatives=derivatives)
            where = f"{label}, image {k}"
            assert np.array_equal(got.lengths, expected.lengths), f"{where}: fingerprint lengths differ"
            error = _relative(got.values, expected.values)
            assert error <= rtol, f"{where}: fingerprints differ from serial by {error:.2e}"
            if derivatives:
                same = got.pairs is not None and expected.pairs is not None and np.array_equal(got.pairs, expected.pairs)
                assert same, f"{where}: derivative pairs differ"
                error = _relative(got.derivatives, expected.derivatives)
                assert error <= rtol, f"{where}: fingerprint derivatives differ from serial by {error:.2e}"
