"""Side-by-side reference checks and same-machine speed ratios against the original Amp.

The original Amp (``amp-atomistics`` 1.0.1, GPL) lives in its own virtual environment
outside this project (``$AMP_VENV``, default ``~/.cache/amp-original``; see the peers'
AMP_SETUP notes). It is never imported here: this script writes a small driver program
into a temporary folder and runs it with that environment's Python, in a temporary
working folder (Amp writes ``amp-log.txt`` and ``*.ampdb`` there). Data go both ways as
extxyz, JSON and ``.npz`` files only (no pickle).

Modes:

* ``fingerprints``: Amp's Gaussian fingerprints and fingerprint primes (default symmetry
  functions for Cu, Pt; Cosine cutoff 6.5 A) on the first 3 images of
  ``examples/data/ptcu-train.xyz``, a rattled 8-atom Cu/Pt fcc cell and a 13-atom
  Cu/Pt cluster, against ours (numpy and compiled). Amp keys a prime as
  ``(m, symbol_m, i, symbol_i, l) -> d G_i / d x_(m, l)`` (first index: the atom that
  moves; third: the centre whose fingerprint changes); a finite difference of Amp's
  own fingerprints confirms that reading.
* ``loss``: a neural network with fixed weights, scalings and fprange in Amp and in
  amp-core: energies and forces, the loss and its gradient (energy only, and with
  ``force_coefficient`` 0.04; Amp's Fortran and Python paths), and the ``.amp`` files
  Amp saves read back with ``amp_core.load``.
* ``ampfile``: ``.amp`` files amp-core writes (``Potential.save_amp``; Amp's default set
  with a Cosine cutoff, a Polynomial cutoff with a sigmoid network, and a zeta 0.5 G4/G5
  set) loaded by Amp's ``Amp.load``: the same energies and forces to 1e-10 relative.
* ``zernike_bispectrum``: Amp's Zernike (values and primes, its Fortran path) and
  Bispectrum (values, its Python path: ~30 s at jmax 1) with their default ``Gs`` (weights
  = atomic numbers) on the 13-atom cluster,
  against amp-core's ``zernike`` and ``bispectrum`` plugins (skipped, saying so, for a
  plugin that is not installed).
* ``speed``: one core each; fingerprints with derivatives on the 36-atom slab, values
  only on the 108-atom bulk, loss + gradient per image in steady state; prints ours/Amp.

Run: ``python benchmarks/amp_reference.py {fingerprints,loss,ampfile,zernike_bispectrum,speed,all} [--keep]
[--hidden 10 10] [--nmax 5] [--jmax 1]``.
Run times on 2 cores: fingerprints ~20 s, ampfile ~4 min (Amp's force calls), loss ~6 min (Amp's Fortran force-training set-up
alone takes ~4.5 min for the 5 images), speed ~2.5 min (``--force-images 1``).
Not part of the tests or CI; without the Amp environment it says so and exits 0.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core for both programs
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.build import bulk, fcc111  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402
from ase.cluster import Icosahedron  # noqa: E402
from ase.io import read, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ELEMENTS = ["Cu", "Pt"]
CUTOFF = 6.5
FORCE_COEFFICIENT = 0.04

AMP_DRIVER = r'''
"""Amp side of benchmarks/amp_reference.py (generated; runs in the Amp environment)."""
import json, sys, time
import numpy as np
from ase.io import read
from amp import Amp
from amp.descriptor.cutoffs import Cosine
from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction
from amp.model.neuralnetwork import NeuralNetwork
from amp.utilities import Logger, get_hash, hash_images

cfg = json.load(open(sys.argv[1]))
out, info = {}, {}
quiet = Logger(None)


def descriptor(fortran, label):
    return Gaussian(cutoff=Cosine(cfg["cutoff"]), elements=list(cfg["elements"]), fortran=fortran,
                    dblabel=label)


def fingerprint(images, fortran, label, derivatives):
    desc = descriptor(fortran, label)
    start = time.perf_counter()
    desc.calculate_fingerprints(hash_images(images, log=quiet), log=quiet,
                                calculate_derivatives=derivatives)
    return desc, time.perf_counter() - start


def export(tag, images, desc, derivatives):
    for k, atoms in enumerate(images):
        key = get_hash(atoms)
        fps = desc.fingerprints[key]
        assert [s for s, _ in fps] == atoms.get_chemical_symbols()
        out["%s_fp_%d" % (tag, k)] = np.array([v for _, v in fps], dtype=float)
        if derivatives:
            primes = desc.fingerprintprimes[key]
            out["%s_pkey_%d" % (tag, k)] = np.array([[a, c, l] for a, _, c, _, l in primes], dtype=int)
            out["%s_pval_%d" % (tag, k)] = np.array(list(primes.values()), dtype=float)


def task_fingerprints():
    images = read(cfg["images"], ":")
    for fortran in cfg["fortran_modes"]:
        tag = "fortran" if fortran else "python"
        subset = images if fortran else images[-1:]  # Python path: the (small) last image only
        desc, seconds = fingerprint(subset, fortran, "fp-" + tag, True)
        info[tag + "_seconds"] = seconds
        export(tag, subset, desc, True)
        info["Gs"] = desc.parameters.Gs
    fd = cfg["fd"]  # finite difference of Amp's own fingerprints: d G_i / d x_(m, l), all i
    base = images[fd["image"]]
    plus, minus = base.copy(), base.copy()
    plus.positions[fd["atom"], fd["direction"]] += fd["h"]
    minus.positions[fd["atom"], fd["direction"]] -= fd["h"]
    desc, _ = fingerprint([plus, minus], True, "fp-fd", False)
    values = [np.array([v for _, v in desc.fingerprints[get_hash(a)]]) for a in (plus, minus)]
    out["fd"] = (values[0] - values[1]) / (2 * fd["h"])


def model(fortran, lossfunction=None):
    weights = {el: {int(k): np.array(w) for k, w in ws.items()} for el, ws in cfg["weights"].items()}
    hidden = {el: tuple(cfg["hiddenlayers"]) for el in cfg["elements"]}  # as fit() leaves it
    return NeuralNetwork(hiddenlayers=hidden, activation=cfg["activation"], weights=weights,
                         scalings=cfg["scalings"], fprange=cfg["fprange"], mode="atom-centered",
                         fortran=fortran, lossfunction=lossfunction)


def loss_session(images, fortran, forces, label):
    lf = LossFunction(energy_coefficient=1.0, force_coefficient=cfg["force_coefficient"] if forces else None,
                      convergence={"energy_rmse": 1e-12, "force_rmse": 1e-12 if forces else None},
                      raise_ConvergenceOccurred=False, log_losses=False)
    calc = Amp(descriptor=descriptor(True, label), model=model(fortran, lf), label=label, cores=1)
    hashed = hash_images(images, log=quiet)
    start = time.perf_counter()
    calc.descriptor.calculate_fingerprints(hashed, log=quiet, calculate_derivatives=forces)
    calc.model.fit(hashed, calc.descriptor, quiet, {"cores": 1}, only_setup=True)
    vector = np.array(calc.model.vector)
    first = lf.get_loss(vector, lossprime=True)
    return lf, vector, first, time.perf_counter() - start


def task_loss():
    images = read(cfg["images"], ":")
    fresh = Amp(descriptor=descriptor(True, "pred"), model=model(True), label="pred", cores=1)
    fresh.save("model-fresh.amp", overwrite=True)
    energies, forces, start = [], [], time.perf_counter()
    for atoms in images:
        atoms = atoms.copy()
        atoms.calc = fresh
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces())
    fresh.save("model-used.amp", overwrite=True)
    info["predict_seconds"] = time.perf_counter() - start
    out["energies"] = np.array(energies)
    for k, f in enumerate(forces):
        out["forces_%d" % k] = f
    for fortran in (True, False):
        for with_forces in (False, True):
            tag = "%s_%s" % ("fortran" if fortran else "python", "forces" if with_forces else "energy")
            _, vector, r, seconds = loss_session(images, fortran, with_forces, "loss-" + tag)
            out["vector"] = vector
            info[tag + "_seconds"] = seconds
            out[tag + "_gradient"] = np.array(r["dloss_dparameters"])
            info[tag] = {k: float(r[k]) for k in ("loss", "energy_loss", "force_loss", "energy_maxresid",
                                                  "force_maxresid")}


def steady(lf, vector, budget):
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < budget:
        lf.get_loss(vector * (1.0 + 1e-12 * (calls % 2)), lossprime=True)
        calls += 1
    return (time.perf_counter() - start) / calls


def task_speed():
    slab = read(cfg["slab"])
    for fortran in cfg["fortran_modes"]:
        tag = "fortran" if fortran else "python"
        if cfg["slab_derivatives"] or fortran:
            info["slab_derivatives_" + tag] = fingerprint([slab], fortran, "sd-" + tag, True)[1]
        info["bulk_values_" + tag] = fingerprint([read(cfg["bulk"])], fortran, "bv-" + tag, False)[1]
    for with_forces in (False, True):
        tag = "forces" if with_forces else "energy"
        images = read(cfg["loss_images"], ":" if not with_forces else ":%d" % cfg["force_images"])
        lf, vector, _, setup = loss_session(images, True, with_forces, "speed-" + tag)
        info["loss_setup_" + tag] = setup
        info["loss_call_" + tag] = steady(lf, vector, cfg["budget"])


def task_predict():
    """Load each .amp file amp-core wrote with Amp.load; predict energies and forces of the images."""
    images = read(cfg["images"], ":")
    for tag, name in cfg["files"].items():
        calc = Amp.load(name, label="load-" + tag, cores=1)
        energies = []
        for k, atoms in enumerate(images):
            atoms = atoms.copy()
            atoms.calc = calc
            energies.append(atoms.get_potential_energy())
            out["%s_forces_%d" % (tag, k)] = atoms.get_forces()
        out[tag + "_energies"] = np.array(energies)


def task_zernike_bispectrum():
    """Amp's Zernike (values, primes) and Bispectrum (values) fingerprints with their default Gs."""
    from amp.descriptor.bispectrum import Bispectrum
    from amp.descriptor.zernike import Zernike

    images = read(cfg["images"], ":")
    hashed = hash_images(images, log=quiet)
    made = {"zernike": Zernike(cutoff=Cosine(cfg["cutoff"]), nmax=cfg["nmax"], elements=list(cfg["elements"]),
                               dblabel="zernike", fortran=True),
            "bispectrum": Bispectrum(cutoff=Cosine(cfg["cutoff"]), jmax=cfg["jmax"],
                                     elements=list(cfg["elements"]), dblabel="bispectrum")}
    for tag, desc in made.items():
        start = time.perf_counter()
        desc.calculate_fingerprints(hashed, log=quiet, calculate_derivatives=tag == "zernike")
        info[tag + "_seconds"] = time.perf_counter() - start
        info[tag + "_Gs"] = desc.parameters.Gs
        export(tag, images, desc, tag == "zernike")


{"fingerprints": task_fingerprints, "loss": task_loss, "speed": task_speed, "predict": task_predict,
 "zernike_bispectrum": task_zernike_bispectrum}[cfg["task"]]()
np.savez("amp-out.npz", **out)
json.dump(info, open("amp-out.json", "w"))
'''


# -- running Amp -------------------------------------------------------------------------


def amp_python() -> Path | None:
    """Return the Amp environment's Python, or ``None`` when it is not installed."""
    venv = Path(os.environ.get("AMP_VENV", "~/.cache/amp-original")).expanduser()
    python = venv / "bin" / "python"
    return python if python.is_file() else None


def run_amp(python: Path, work: Path, config: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Run the driver with Amp's Python in ``work``; return its arrays and its JSON record."""
    (work / "driver.py").write_text(AMP_DRIVER)
    (work / "config.json").write_text(json.dumps(config))
    env = dict(os.environ, PYTHONNOUSERSITE="1")
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [str(python), "driver.py", "config.json"], cwd=work, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"the Amp driver failed in {work} (exit {done.returncode}):\n{done.stderr[-3000:]}"
        )
    with np.load(work / "amp-out.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, json.loads((work / "amp-out.json").read_text())


# -- structures --------------------------------------------------------------------------


def labelled(atoms: Atoms) -> Atoms:
    """Return ``atoms`` with EMT energy and forces stored as single-point results."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    return atoms


def small_bulk() -> Atoms:
    """An 8-atom rattled fcc Cu cell (a = 3.61 A) with three Pt atoms; periodic images of itself."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    atoms.symbols[::3] = "Pt"
    atoms.rattle(0.05, seed=1)
    return labelled(atoms)


def cluster() -> Atoms:
    """A non-periodic 13-atom Cu icosahedron with every 4th atom Pt, rattled, no cell."""
    atoms = Icosahedron("Cu", 2)
    atoms.symbols[::4] = "Pt"
    atoms.rattle(0.05, seed=2)
    return labelled(atoms)


def slab(seed: int) -> Atoms:
    """The reference slab: fcc111 Cu 3x3x4, vacuum 7, every other top-layer atom Pt, rattled."""
    atoms = fcc111("Cu", size=(3, 3, 4), vacuum=7.0)
    top = np.flatnonzero(atoms.positions[:, 2] > atoms.positions[:, 2].max() - 0.1)
    atoms.numbers[top[::2]] = 78
    atoms.rattle(0.05, seed=seed)
    atoms.info.pop("adsorbate_info", None)  # not storable in extxyz
    return labelled(atoms)


def bulk108() -> Atoms:
    """The reference bulk: fcc Cu 3x3x3 cubic cells, every 10th atom Pt, rattled (seed 0)."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    atoms.symbols[::10] = "Pt"
    atoms.rattle(0.05, seed=0)
    return atoms


def reference_images() -> list[Atoms]:
    """The first 3 images of examples/data/ptcu-train.xyz, the small bulk cell and the cluster."""
    return [*read(ROOT / "examples" / "data" / "ptcu-train.xyz", ":3"), small_bulk(), cluster()]


def exchange(path: Path, images: list[Atoms]) -> list[Atoms]:
    """Write ``images`` as extxyz for Amp and return them as read back (positions rounded as Amp sees them)."""
    write(path, images)
    return read(path, ":")


# -- comparison helpers -------------------------------------------------------------------


def diff(label: str, ours: np.ndarray, amp: np.ndarray, tol: float = 1e-9) -> bool:
    """Print max |ours - amp|, the scale max |amp| and their ratio; return whether ratio <= tol."""
    ours, amp = np.asarray(ours, dtype=float), np.asarray(amp, dtype=float)
    if ours.shape != amp.shape:
        print(f"  {label:42s} SHAPE MISMATCH ours {ours.shape} vs Amp {amp.shape}")
        return False
    abs_err = float(np.max(np.abs(ours - amp))) if ours.size else 0.0
    scale = float(np.max(np.abs(amp))) if amp.size else 0.0
    rel = abs_err / scale if scale > 0 else abs_err
    verdict = "ok" if rel <= tol else "DIFFERS"
    print(f"  {label:42s} max abs {abs_err:9.2e}  max|Amp| {scale:9.2e}  rel {rel:9.2e}  {verdict}")
    return rel <= tol


def amp_dense(keys: np.ndarray, values: np.ndarray, n_atoms: int, moved_first: bool) -> np.ndarray:
    """Amp's primes as (n_atoms, n_atoms, 3, F) ``[i, m, l, f] = d G_i / d x_(m, l)``.

    ``keys`` rows are Amp's (first index, third index, direction); ``moved_first`` reads
    the first index as the moving atom m and the third as the centre i (Amp's convention).
    """
    out = np.zeros((n_atoms, n_atoms, 3, values.shape[1]))
    first, third, direction = keys[:, 0], keys[:, 1], keys[:, 2]
    centre, moved = (third, first) if moved_first else (first, third)
    out[centre, moved, direction] = values
    return out


# -- mode: fingerprints ---------------------------------------------------------------------


def check_gs(amp_gs: dict[str, Any], descriptor: Any) -> None:
    """Check that Amp's default symmetry functions equal ours, function by function."""
    from amp_plugins.descriptors.gaussian import make_default_symmetry_functions

    ours = make_default_symmetry_functions(ELEMENTS)
    same = all(
        len(amp_gs[el]) == len(ours[el])
        and all(
            a["type"] == b["type"]
            and a.get("element") == b.get("element")
            and list(a.get("elements", [])) == list(b.get("elements", []))
            and all(
                np.isclose(a.get(k, 0.0), b.get(k, 0.0), rtol=1e-14)
                for k in ("eta", "offset", "zeta", "gamma")
            )
            for a, b in zip(amp_gs[el], ours[el])
        )
        for el in ELEMENTS
    )
    print(f"Amp's default Gs == ours, in order: {same} ({len(ours['Cu'])} functions per element)")


def compare_image(
    name: str, atoms: Atoms, amp: dict[str, np.ndarray], tag: str, k: int, ours: list[Any]
) -> bool:
    """Compare one image's fingerprints and primes (Amp ``tag`` path) with each of ``ours``."""
    keys, values = amp[f"{tag}_pkey_{k}"], amp[f"{tag}_pval_{k}"]
    dense = amp_dense(keys, values, len(atoms), moved_first=True)
    ok = True
    for label, fp in ours:
        print(
            f" {name} ({len(atoms)} atoms, pbc {''.join('TF'[not p] for p in atoms.pbc)}), Amp {tag} vs ours {label}:"
        )
        ok &= diff("fingerprints", fp.values, amp[f"{tag}_fp_{k}"])
        ok &= diff("primes, Amp key (m, ., i, ., l) -> dG_i/dx_ml", fp.dense_derivatives(), dense)
        amp_pairs = {(int(c), int(a)) for a, c, _ in keys}
        our_pairs = {(int(i), int(m)) for i, m in fp.pairs}
        print(
            f"  (i, m) pairs: Amp {len(amp_pairs)}, ours {len(our_pairs)}, same set: {amp_pairs == our_pairs}"
        )
        ok &= amp_pairs == our_pairs
    return ok


def mode_fingerprints(python: Path, work: Path, args: argparse.Namespace) -> bool:
    """Amp's fingerprints and primes (Fortran path; Python path on the cluster) against ours."""
    import amp_core

    images = reference_images()
    names = ["ptcu-train[0]", "ptcu-train[1]", "ptcu-train[2]", "bulk Cu5Pt3", "cluster Cu9Pt4"]
    images = exchange(work / "images.extxyz", images)
    fd = {"image": len(images) - 1, "atom": 3, "direction": 1, "h": 1e-5}
    config = {
        "task": "fingerprints",
        "images": "images.extxyz",
        "cutoff": CUTOFF,
        "elements": ELEMENTS,
        "fortran_modes": [True, False],
        "fd": fd,
    }
    amp, info = run_amp(python, work, config)
    print(
        f"Amp: Fortran path {info['fortran_seconds']:.1f} s for {len(images)} images, "
        f"Python path {info['python_seconds']:.1f} s for the cluster"
    )
    descriptor = amp_core.create_descriptor("gaussian", elements=ELEMENTS, cutoff=CUTOFF, preset="amp")
    compiled = descriptor.compiled()
    check_gs(info["Gs"], descriptor)
    ok = True
    for k, (name, atoms) in enumerate(zip(names, images)):
        ours = [
            ("numpy", descriptor.compute(atoms, derivatives=True)),
            ("compiled", compiled.compute(atoms, derivatives=True)),
        ]
        ok &= compare_image(name, atoms, amp, "fortran", k, ours)
        if k == len(images) - 1:
            ok &= compare_image(name, atoms, amp, "python", 0, ours[:1])
    cl = images[fd["image"]]
    print(
        f"Amp's key convention, from a central difference of Amp's own fingerprints of the cluster "
        f"(atom m={fd['atom']} moved along l={fd['direction']}):"
    )
    keys, values = amp["fortran_pkey_4"], amp["fortran_pval_4"]
    for moved_first, text in ((True, "(m, ., i, ., l) [m moves, G_i changes]"), (False, "(i, ., m, ., l)")):
        column = amp_dense(keys, values, len(cl), moved_first)[:, fd["atom"], fd["direction"]]
        error = float(np.max(np.abs(column - amp["fd"])))
        print(
            f"  read as {text:40s} max |prime - finite difference| {error:9.2e}"
            f" (max |fd| {np.max(np.abs(amp['fd'])):.2e})"
        )
    return ok


# -- mode: loss ----------------------------------------------------------------------------


def fixed_parameters(images: list[Atoms], descriptor: Any, hidden: list[int]) -> dict[str, Any]:
    """Weights, scalings and fprange in Amp's formats (seeded), fprange from these images' fingerprints.

    One Pt feature gets a zero-width range [v, v], so the raw-input rule for such features is compared too.
    """
    rng = np.random.default_rng(0)
    values = {el: [] for el in ELEMENTS}
    for atoms in images:
        fp = descriptor.compute(atoms)
        for el in ELEMENTS:
            rows = np.array(atoms.get_chemical_symbols()) == el
            values[el].append(fp.values[rows])
    fprange = {
        el: np.stack([np.concatenate(v).min(0), np.concatenate(v).max(0)], 1) for el, v in values.items()
    }
    fprange["Pt"][5] = fprange["Pt"][5].mean()
    weights = {}
    for el in ELEMENTS:
        sizes = [len(fprange[el]), *hidden, 1]
        weights[el] = {
            k + 1: rng.uniform(-1, 1, (n + 1, m)) * np.sqrt(6.0 / (n + m))
            for k, (n, m) in enumerate(zip(sizes[:-1], sizes[1:]))
        }
    scalings = {"Cu": {"intercept": 0.15, "slope": 0.4}, "Pt": {"intercept": 0.25, "slope": 0.7}}
    return {
        "hiddenlayers": list(hidden),
        "activation": "tanh",
        "weights": weights,
        "scalings": scalings,
        "fprange": {el: r.tolist() for el, r in fprange.items()},
    }


def our_potential(params: dict[str, Any]) -> Any:
    """amp-core's Gaussian descriptor + neural network with exactly these parameters."""
    import amp_core

    descriptor = amp_core.create_descriptor("gaussian", elements=ELEMENTS, cutoff=CUTOFF, preset="amp")
    return amp_core.Potential(descriptor, amp_core.create_model("neuralnetwork", **params))


def compare_predictions(label: str, potential: Any, images: list[Atoms], amp: dict[str, np.ndarray],
                        tol: float = 1e-9) -> bool:
    """Energies and forces of ``potential`` against Amp's calculator (relative ``tol``)."""
    energies, forces = [], []
    for atoms in images:
        atoms = atoms.copy()
        atoms.calc = potential
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces())
    ok = diff(f"{label}: energies (eV)", np.array(energies), amp["energies"], tol)
    return ok & diff(
        f"{label}: forces (eV/A)",
        np.concatenate(forces),
        np.concatenate([amp[f"forces_{k}"] for k in range(len(images))]),
        tol,
    )


def compare_loss(label: str, result: Any, record: dict[str, float], gradient: np.ndarray) -> bool:
    """A LossResult against Amp's get_loss record and gradient."""
    ok = True
    for key in ("loss", "energy_loss", "force_loss", "energy_maxresid", "force_maxresid"):
        ok &= diff(f"{label}: {key}", np.array(getattr(result, key)), np.array(record[key]))
    return ok & diff(f"{label}: gradient", result.gradient, gradient)


def mode_loss(python: Path, work: Path, args: argparse.Namespace) -> bool:
    """Energies, forces, loss and gradient of one fixed network in Amp and in amp-core; .amp import."""
    import amp_core

    images = exchange(work / "images.extxyz", reference_images())
    descriptor = amp_core.create_descriptor("gaussian", elements=ELEMENTS, cutoff=CUTOFF, preset="amp")
    params = fixed_parameters(images, descriptor, args.hidden)
    config = {
        "task": "loss",
        "images": "images.extxyz",
        "cutoff": CUTOFF,
        "elements": ELEMENTS,
        "force_coefficient": FORCE_COEFFICIENT,
        **params,
        "weights": {el: {str(k): w.tolist() for k, w in ws.items()} for el, ws in params["weights"].items()},
    }
    amp, info = run_amp(python, work, config)
    potential = our_potential(params)
    print(f" NN {tuple(args.hidden)} tanh, {len(images)} images (3 ptcu slabs, Cu5Pt3 bulk, Cu9Pt4 cluster)")
    ok = compare_predictions("Potential", potential, images, amp)
    ok &= diff("parameter vector (Amp's order)", potential.model.vector(), amp["vector"], tol=0.0)
    backends: list[tuple[str, Any]] = [("serial", "serial")]
    try:
        backends.append(("fortran", amp_core.create_backend("fortran", cores=1)))
    except amp_core.AmpError as exc:
        print(f"  (ours fortran backend not available: {exc})")
    for name, backend in backends:
        for forces in (False, True):
            what = "forces" if forces else "energy"
            result = amp_core.evaluate_loss(
                images,
                potential,
                backend,
                energy_coefficient=1.0,
                force_coefficient=FORCE_COEFFICIENT if forces else None,
            )
            for path in ("fortran", "python"):
                ok &= compare_loss(
                    f"{what} loss, ours {name} vs Amp {path}",
                    result,
                    info[f"{path}_{what}"],
                    amp[f"{path}_{what}_gradient"],
                )
        if not isinstance(backend, str):
            backend.close()
    for name in ("model-used.amp", "model-fresh.amp"):  # saved after use (Gs filled in) / before (Gs=None)
        try:
            loaded = amp_core.load(work / name)
        except amp_core.AmpError as exc:
            print(f"  amp_core.load({name}) DIFFERS: Amp loads and uses this file, amp-core raises {exc!r}")
            ok = False
            continue
        ok &= compare_predictions(f"amp_core.load({name})", loaded, images, amp)
    return ok


# -- mode: ampfile ------------------------------------------------------------------------


ZETA_HALF_GS = {
    el: [
        {"type": "G2", "element": "Cu", "eta": 0.05, "offset": 0.0},
        {"type": "G2", "element": "Pt", "eta": 4.0, "offset": 0.0},
        {"type": "G2", "element": "Cu", "eta": 1.0, "offset": 0.0},
        {"type": "G2", "element": "Pt", "eta": 0.3, "offset": 0.0},
        {"type": "G4", "elements": ["Cu", "Pt"], "eta": 0.005, "zeta": 0.5, "gamma": 1.0},
        {"type": "G4", "elements": ["Cu", "Cu"], "eta": 0.005, "zeta": 4.0, "gamma": -1.0},
        {"type": "G5", "elements": ["Pt", "Pt"], "eta": 0.01, "zeta": 0.5, "gamma": 0.6},
    ]
    for el in ELEMENTS
}


def mode_ampfile(python: Path, work: Path, args: argparse.Namespace) -> bool:
    """.amp files written by amp-core (Potential.save_amp), loaded by the original Amp's Amp.load."""
    import amp_core

    images = exchange(work / "images.extxyz", reference_images())
    descriptors = {
        "default": {"elements": ELEMENTS, "cutoff": CUTOFF},
        "polynomial": {"elements": ELEMENTS, "cutoff": {"name": "Polynomial", "Rc": CUTOFF, "gamma": 5.0}},
        "zeta-half": {"Gs": ZETA_HALF_GS, "cutoff": CUTOFF},
    }
    potentials, files = {}, {}
    for tag, kwargs in descriptors.items():
        descriptor = amp_core.create_descriptor("gaussian", **kwargs)
        params = fixed_parameters(images, descriptor, args.hidden)
        if tag == "polynomial":
            params["activation"] = "sigmoid"
        potentials[tag] = amp_core.Potential(descriptor, amp_core.create_model("neuralnetwork", **params))
        files[tag] = str(potentials[tag].save_amp(work / f"{tag}.amp"))
    amp, _ = run_amp(python, work, {"task": "predict", "images": "images.extxyz", "files": files})
    ok = True
    print(f" {len(images)} images (3 ptcu slabs, Cu5Pt3 bulk, Cu9Pt4 cluster); NN {tuple(args.hidden)}")
    for tag, potential in potentials.items():
        ok &= compare_predictions(f"Amp.load({tag}.amp) vs ours", potential, images, {
            "energies": amp[f"{tag}_energies"],
            **{f"forces_{k}": amp[f"{tag}_forces_{k}"] for k in range(len(images))},
        }, tol=1e-10)
    return ok


# -- mode: zernike_bispectrum ---------------------------------------------------------------


def mode_zernike_bispectrum(python: Path, work: Path, args: argparse.Namespace) -> bool | None:
    """Amp's Zernike and Bispectrum fingerprints against amp-core's ``zernike`` and ``bispectrum`` plugins."""
    import amp_core
    from amp_core.protocols import FINGERPRINT_DERIVATIVES

    installed = amp_core.PluginManager().registered("descriptor")
    missing = [name for name in ("zernike", "bispectrum") if name not in installed]
    for name in missing:
        print(f" skipped {name}: the amp-core descriptor plugin {name!r} is not installed")
    if len(missing) == 2:
        return None
    images = exchange(work / "images.extxyz", [cluster()])  # Amp's Bispectrum (Python) takes minutes on a cell
    names = ["cluster Cu9Pt4"]
    config = {"task": "zernike_bispectrum", "images": "images.extxyz", "cutoff": CUTOFF, "elements": ELEMENTS,
              "nmax": args.nmax, "jmax": args.jmax}
    amp, info = run_amp(python, work, config)
    ok = True
    for name, extra in (("zernike", {"nmax": args.nmax}), ("bispectrum", {"jmax": args.jmax})):
        if name in missing:
            continue
        descriptor = amp_core.create_descriptor(name, cutoff=CUTOFF, elements=ELEMENTS, **extra)
        derivatives = name == "zernike" and FINGERPRINT_DERIVATIVES in descriptor.implemented
        print(f" {name} {extra}, Amp's default Gs {info[name + '_Gs']}; Amp took {info[name + '_seconds']:.1f} s")
        for k, (label, atoms) in enumerate(zip(names, images)):
            fp = descriptor.compute(atoms, derivatives=derivatives)
            ok &= diff(f"{label}: {name} fingerprints", fp.values, amp[f"{name}_fp_{k}"], tol=1e-10)
            if derivatives:
                dense = amp_dense(amp[f"{name}_pkey_{k}"], amp[f"{name}_pval_{k}"], len(atoms), moved_first=True)
                ok &= diff(f"{label}: {name} primes", fp.dense_derivatives(), dense, tol=1e-10)
    return ok


# -- mode: speed ---------------------------------------------------------------------------


def seconds_per_call(function: Any, budget: float) -> float:
    """Mean seconds of ``function()`` over at least 3 calls and ``budget`` seconds (after one warm-up)."""
    function()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < budget:
        function()
        calls += 1
    return (time.perf_counter() - start) / calls


def our_loss_rate(images: list[Atoms], potential: Any, backend: Any, forces: bool, budget: float) -> float:
    """Steady-state seconds per image of one loss + gradient evaluation through amp_core.loss_function."""
    import amp_core

    with amp_core.loss_function(
        images,
        potential,
        backend,
        energy_coefficient=1.0,
        force_coefficient=FORCE_COEFFICIENT if forces else None,
    ) as f:
        vector = potential.model.vector()
        flip = [0]

        def call() -> None:  # alternate two vectors: the loss function caches the last one
            flip[0] ^= 1
            f(vector * (1.0 + 1e-12 * flip[0]))

        return seconds_per_call(call, budget) / len(images)


def ratio_line(label: str, ours: float, amp: float, unit: str) -> None:
    """Print a rate of ours and of Amp (both in ``unit``, larger is faster) and ours/Amp."""
    print(f"  {label:46s} ours {ours:12,.1f}  Amp {amp:10,.2f} {unit:9s} ours/Amp {ours / amp:10,.1f}x")


def mode_speed(python: Path, work: Path, args: argparse.Namespace) -> None:
    """Same-machine, one-core timings of Amp (Fortran paths) and amp-core; prints ratios."""
    import amp_core

    n_images = max(args.loss_images, args.force_images)
    slabs = exchange(work / "slabs.extxyz", [slab(k) for k in range(n_images)])
    cell = exchange(work / "bulk.extxyz", [bulk108()])[0]
    config = {
        "task": "speed",
        "slab": "slabs.extxyz",
        "bulk": "bulk.extxyz",
        "loss_images": "slabs.extxyz",
        "force_images": args.force_images,
        "cutoff": CUTOFF,
        "elements": ELEMENTS,
        "fortran_modes": [True, False] if args.amp_python else [True],
        "slab_derivatives": False,
        "budget": args.budget,
        "force_coefficient": FORCE_COEFFICIENT,
    }
    descriptor = amp_core.create_descriptor("gaussian", elements=ELEMENTS, cutoff=CUTOFF, preset="amp")
    params = fixed_parameters(slabs, descriptor, [10, 10])
    config.update(
        params,
        weights={el: {str(k): w.tolist() for k, w in ws.items()} for el, ws in params["weights"].items()},
    )
    print(
        f" Amp running (its force-training set-up takes minutes per slab image; {args.force_images} here)..."
    )
    _, amp = run_amp(python, work, config)
    kinds = [("numpy", descriptor), ("compiled", descriptor.compiled())]
    print(" fingerprints (atoms/s), one core, Amp's Fortran path:")
    for label, d in kinds:
        rate = len(slabs[0]) / seconds_per_call(
            lambda d=d: d.compute(slabs[0], derivatives=True), args.budget
        )
        ratio_line(
            f"slab 36, with derivatives, ours {label}",
            rate,
            len(slabs[0]) / amp["slab_derivatives_fortran"],
            "atoms/s",
        )
    for label, d in kinds:
        rate = len(cell) / seconds_per_call(lambda d=d: d.compute(cell, derivatives=False), args.budget)
        ratio_line(
            f"bulk 108, values only, ours {label}", rate, len(cell) / amp["bulk_values_fortran"], "atoms/s"
        )
        if "bulk_values_python" in amp:
            ratio_line("  (vs Amp's Python path)", rate, len(cell) / amp["bulk_values_python"], "atoms/s")
    potential = our_potential(params)
    backends: list[tuple[str, Any]] = [
        ("serial", "serial"),
        ("fortran", amp_core.create_backend("fortran", cores=1)),
    ]
    print(
        f" loss + gradient, steady state (images/s), NN (10, 10) tanh, Amp's Fortran path "
        f"(Amp set-up: {amp['loss_setup_energy']:.1f} s energy only, {amp['loss_setup_forces']:.1f} s with forces "
        f"for {args.force_images} image(s)):"
    )
    for forces, count in ((False, args.loss_images), (True, args.force_images)):
        what = "with forces" if forces else "energy only"
        amp_rate = count / amp["loss_call_forces" if forces else "loss_call_energy"]
        for label, backend in backends:
            ours = 1.0 / our_loss_rate(slabs[:count], potential, backend, forces, args.budget)
            ratio_line(f"{what}, {count} slab image(s), ours {label}", ours, amp_rate, "images/s")
    backends[1][1].close()


# -- main ----------------------------------------------------------------------------------

MODES = {"fingerprints": mode_fingerprints, "loss": mode_loss, "ampfile": mode_ampfile,
         "zernike_bispectrum": mode_zernike_bispectrum, "speed": mode_speed}


def main() -> None:
    """Parse the mode, find Amp's environment, run the mode(s) in a temporary folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=[*MODES, "all"])
    parser.add_argument("--hidden", type=int, nargs="+", default=[5, 5], help="hidden layers (loss mode)")
    parser.add_argument("--loss-images", type=int, default=10, help="slab images, energy-only loss (speed)")
    parser.add_argument(
        "--force-images",
        type=int,
        default=1,
        help="slab images, force-training loss (speed; Amp's set-up takes minutes per image)",
    )
    parser.add_argument("--budget", type=float, default=3.0, help="seconds per steady-state timing (speed)")
    parser.add_argument(
        "--amp-python",
        action="store_true",
        help="also time Amp's Python fingerprint path on the bulk (speed; ~15 s)",
    )
    parser.add_argument("--nmax", type=int, default=5, help="Zernike nmax (zernike_bispectrum)")
    parser.add_argument("--jmax", type=float, default=1, help="Bispectrum jmax (zernike_bispectrum)")
    parser.add_argument("--keep", action="store_true", help="keep Amp's working folder and print its path")
    args = parser.parse_args()
    python = amp_python()
    if python is None:
        print(
            f"skipped: no original Amp environment at {os.environ.get('AMP_VENV', '~/.cache/amp-original')} "
            "(set AMP_VENV, or install amp-atomistics 1.0.1 there as the AMP_SETUP notes describe)"
        )
        return
    modes = list(MODES) if args.mode == "all" else [args.mode]
    work = Path(tempfile.mkdtemp(prefix="amp-reference-"))
    results = {}
    try:
        for mode in modes:
            print(f"== {mode} (Amp: {python}) ==")
            folder = work / mode
            folder.mkdir()
            results[mode] = MODES[mode](python, folder, args)
    finally:
        if args.keep:
            print(f"Amp's working folder kept: {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    for mode, ok in results.items():
        if ok is not None:
            print(f"{mode}: {'Amp and amp-core agree' if ok else 'DISAGREEMENT (see lines marked DIFFERS)'}")


if __name__ == "__main__":
    sys.exit(main())
