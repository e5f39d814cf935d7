"""Force calls of an ensemble in MD: one fingerprinting pass for every member against a pass per member.

Workload: ``bench_md.py``'s 108-atom Cu/Pt fcc bulk and descriptor (``--preset``), a (20, 20)
network; an ``--members``-member ensemble trained briefly on 10 EMT snapshots (the numbers
do not matter, only the time). It prints the median time of a force call, the calculators
taking turns in rounds (this machine's speed drifts), for: one member alone; the ensemble
with the descriptor's ``contract(..., sets=N)`` (what the calculator does); the ensemble
through a descriptor whose ``contract`` takes one set (one pass per member, what it did
before and still does for descriptors without ``sets``).

Run: ``python benchmarks/bench_ensemble_md.py [--members 4] [--preset systematic|amp] [--rounds 8]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from ase.io import write  # noqa: E402
from bench_md import cu_pt_bulk, reference_images  # noqa: E402

from amp_core import ExtrapolationWarning, Potential, load, train  # noqa: E402
from amp_plugins.descriptors.gaussian import Gaussian  # noqa: E402


class OneSetOnly(Gaussian):
    """The Gaussian descriptor with a ``contract`` that takes one set of dE/dG (no ``sets``)."""

    def contract(self, atoms: Any, gradient: Any, *, virial: bool = False, neighbours: Any = None) -> Any:
        return super().contract(atoms, gradient, virial=virial, neighbours=neighbours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--preset", choices=("systematic", "amp"), default="systematic")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        write(folder / "train.xyz", reference_images(10))
        train({"descriptor": {"name": "gaussian", "cutoff": 6.5, "elements": ["Cu", "Pt"], "preset": args.preset},
               "model": {"name": "neuralnetwork", "hiddenlayers": [20, 20]},
               "backend": {"name": "serial", "compiled": True}, "data": {"train": str(folder / "train.xyz")},
               "training": {"maxiter": 3, "force_coefficient": 0.04, "directory": str(folder / "run"),
                            "ensemble": args.members}}, echo=None)
        together = load(folder / "run" / "potential.json")
        calculators = {
            "one member": load(folder / "run" / "members" / "1" / "potential.json"),
            f"{args.members} members, one pass": together,
            f"{args.members} members, a pass each": Potential(OneSetOnly(together.descriptor.params), together.model),
        }
        atoms = cu_pt_bulk()
        times: dict[str, list[float]] = {label: [] for label in calculators}
        warnings.simplefilter("ignore", ExtrapolationWarning)
        for _ in range(args.rounds):
            for label, calculator in calculators.items():
                start = time.perf_counter()
                for k in range(5):
                    atoms.positions[k] += 0.001  # a new structure each call
                    calculator.calculate(atoms, ["energy", "forces"], ["positions"])
                times[label].append((time.perf_counter() - start) / 5)
    alone = float(np.median(times["one member"]))
    print(f"108-atom Cu/Pt bulk, {args.preset} set, (20, 20) network, compiled kernels; median of {args.rounds} rounds")
    for label, values in times.items():
        median = float(np.median(values))
        print(f"  {label:28s} {1e3 * median:7.1f} ms per force call  {median / alone:5.2f} x one member")


if __name__ == "__main__":
    main()
