"""Regenerate the example data set: EMT-labelled Pt/Cu slab snapshots (run: python make_data.py).

Recipe (as in the project's reference workloads): fcc111 Cu slab 3x3x4 with 7 A vacuum,
every other top-layer atom Pt, rattled by 0.05 A (seed 0), then Velocity-Verlet MD with
ASE's EMT at 600 K, 5 fs steps, every 5th step kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import units
from ase.build import fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet


def slab_images(count: int, seed: int = 0) -> list:
    """Return ``count`` labelled snapshots of the 36-atom Pt/Cu slab."""
    atoms = fcc111("Cu", size=(3, 3, 4), vacuum=7.0)
    top = [a.index for a in atoms if a.tag == 1]
    for k in top[::2]:
        atoms[k].symbol = "Pt"
    atoms.rattle(0.05, seed=seed)
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=np.random.default_rng(seed))
    dynamics = VelocityVerlet(atoms, 5 * units.fs)
    images = []
    for _ in range(count):
        dynamics.run(5)
        snapshot = atoms.copy()
        snapshot.calc = SinglePointCalculator(snapshot, energy=atoms.get_potential_energy(),
                                              forces=atoms.get_forces())
        images.append(snapshot)
    return images


if __name__ == "__main__":
    here = Path(__file__).parent / "data"
    here.mkdir(exist_ok=True)
    images = slab_images(50)
    write(here / "ptcu-train.xyz", images[:40])
    write(here / "ptcu-validation.xyz", images[40:])
    print(f"wrote {len(images)} images to {here}")
