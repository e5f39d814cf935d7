"""The ``mpi`` backend: two ranks against one, and the communication cost of one optimiser step.

Run: ``python benchmarks/bench_mpi.py [--images 200] [--rounds 3] [--seconds 2] [--comm]``. It starts
``mpiexec -n 1`` and ``mpiexec -n 2`` jobs of itself, alternating (a shared machine's speed
drifts), and prints the medians: fingerprints with derivatives, the steady-state loss with
forces (the ranks start the fingerprints together, as they do in a run after the cost estimates),
and the time of one step whose evaluators do nothing (parameter vector out, one
record with its gradient back per chunk) for 1k, 10k and 100k parameters. ``--comm`` measures
only that step (no fingerprints, no loss).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from make_data import slab_images  # noqa: E402

from amp_core import Potential, create_backend, create_descriptor, create_model, loss_function  # noqa: E402
from amp_core.data import LossParts  # noqa: E402
from amp_core.images import load_dataset  # noqa: E402
from amp_core.pipeline import compute_fingerprints, use_compiled  # noqa: E402
from amp_core.store import FingerprintStore  # noqa: E402
from amp_plugins.backends.mpi._wire import pack, unpack  # noqa: E402
from amp_plugins.backends.multiprocessing._workers import THREAD_VARIABLES  # noqa: E402

SIZES = (1_000, 10_000, 100_000)
CHUNKS = 12


@dataclass(frozen=True)
class EmptyChunk:
    """A chunk with no arrays (the communication test's evaluators ignore them)."""

    index: int
    cost: float = 1.0
    folder: str = ""

    def load(self) -> dict[str, Any]:
        return {}


class NoWork:
    """A model whose chunk evaluators return a zero record of ``n`` parameters at once."""

    def __init__(self, n: int) -> None:
        self.n = n

    def loss_evaluator(self, arrays: dict[str, Any], settings: Any) -> Any:
        return _Zero(self.n)


@dataclass(frozen=True)
class _Zero:
    n: int

    def __call__(self, vector: np.ndarray) -> LossParts:
        return LossParts(0.0, 0.0, 0.0, 0.0, 0.0, 1, np.zeros(self.n))


def work(args: argparse.Namespace, backend: Any, folder: str, results: dict[str, Any]) -> None:
    """Measure fingerprinting and the steady-state loss (collective)."""
    images = slab_images(args.images)
    data = load_dataset(images, forces=True)
    descriptor = create_descriptor("gaussian", elements=["Cu", "Pt"], preset="amp")
    store = FingerprintStore(Path(folder) / "fp", "bench")
    start = time.perf_counter()
    backend.comm.Barrier()  # ranks start apart (imports, images); in a run, the cost estimates line them up
    results["lag"] = time.perf_counter() - start
    start = time.perf_counter()
    compute_fingerprints(data, use_compiled(descriptor, backend, print), backend, store, True)
    results["fingerprints"] = time.perf_counter() - start
    potential = Potential(descriptor, create_model("neuralnetwork", hiddenlayers=(10, 10)))
    f = loss_function(images, potential, backend, force_coefficient=0.04, run_dir=Path(folder) / "run")
    if f.drives:
        vector = potential.model.vector()
        for k in range(3):
            f(vector + 1e-9 * (k + 1))
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            vector = vector + 1e-9
            f(vector)
            count += 1
        results["loss"] = (time.perf_counter() - start) / count
        if backend.size == 2:
            results["interleaved"] = interleaved(args, f, images, potential, folder, vector)
        f.close()


def interleaved(args: argparse.Namespace, both: Any, images: list[Any], potential: Any, folder: str,
                vector: np.ndarray) -> list[float]:
    """On rank 0 of a 2-rank job: the loss loop's speed-up measured in alternating slices of one job.

    Rank 0 alone evaluates every chunk (a ``serial`` loss function on the same run directory, so
    the same store and arrays) while rank 1 waits, then both ranks evaluate, and so on: eight
    pairs of slices of ``seconds / 4``. This machine's speed drifts by 20-40% within a minute, so
    a ratio taken within the same second is steadier than one between separate jobs.
    """
    alone = loss_function(images, potential, create_backend("serial", compiled=args.compiled),
                          force_coefficient=0.04, run_dir=Path(folder) / "run")
    alone(vector)
    ratios = []
    for _ in range(8):
        rates = []
        for f in (alone, both):
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < args.seconds / 4:
                vector = vector + 1e-9
                f(vector)
                count += 1
            rates.append(count / (time.perf_counter() - start))
        ratios.append(rates[1] / rates[0])
    alone.close()
    return ratios


def job(args: argparse.Namespace) -> None:
    """One MPI job (collective): measure, print a JSON line on rank 0."""
    backend = create_backend("mpi", compiled=args.compiled)
    results: dict[str, Any] = {"ranks": backend.size}
    folder = backend.share(tempfile.mkdtemp(prefix="amp-bench-") if backend.drives else None)
    try:
        if not args.comm:
            work(args, backend, folder, results)
        for n in SIZES:
            session = backend.start(NoWork(n), [EmptyChunk(k) for k in range(CHUNKS)], None)
            if backend.drives:
                vector = np.zeros(n)
                session.evaluate(vector)
                count, start = 0, time.perf_counter()
                while time.perf_counter() - start < args.seconds / 4:
                    LossParts.combine(session.evaluate(vector))
                    count += 1
                results[f"step{n}"] = (time.perf_counter() - start) / count
                session.close()
    finally:
        rss = backend.comm.allgather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        results["rss0"], results["rss"] = rss[0], max(rss[1:], default=0.0)
        backend.close()
        if backend.drives:
            shutil.rmtree(folder, ignore_errors=True)
            print(json.dumps(results), flush=True)


def serialisation(n: int, records: int = CHUNKS // 2, seconds: float = 0.5) -> tuple[float, float]:
    """CPU seconds to turn one rank's records into a message and back: pickled (as mpi4py's
    lowercase calls do, what the backend did before) and raw (:func:`pack`/:func:`unpack`), without
    the transfer (one copy either way). In one process, so a busy machine disturbs it less than
    the timed steps."""
    parts = [LossParts(0.5, 0.25, 0.125, 0.1, 0.2, 3, np.random.default_rng(k).random(n)) for k in range(records)]
    out = []
    for encode in (lambda: pickle.loads(pickle.dumps(("loss", list(enumerate(parts))), pickle.HIGHEST_PROTOCOL)),
                   lambda: unpack(pack(parts, n), n, records)):
        count, start = 0, time.process_time()
        while time.process_time() - start < seconds:
            encode()
            count += 1
        out.append((time.process_time() - start) / count)
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one loss measurement")
    parser.add_argument("--compiled", action="store_true", help="the plugins' compiled kernels in every rank")
    parser.add_argument("--comm", action="store_true", help="only the communication of one step")
    parser.add_argument("--job", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        job(args)
        return
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        print('skipped: no mpiexec (pip install ".[mpi]")')
        return
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    # One BLAS thread per rank, as the README asks of MPI runs: otherwise one rank's numpy would use both
    # cores in its matrix products (a baseline that is not one core) and two ranks would oversubscribe them.
    env = {**os.environ, **{name: os.environ.get(name, "1") for name in THREAD_VARIABLES}}
    for _ in range(args.rounds):
        for ranks in (1, 2):
            out = subprocess.run([mpiexec, "-n", str(ranks), sys.executable, __file__, "--job", "--images",
                                  str(args.images), "--seconds", str(args.seconds)]
                                 + (["--compiled"] if args.compiled else []) + (["--comm"] if args.comm else []),
                                 capture_output=True, text=True, check=True, env=env).stdout
            runs[ranks].append(json.loads(out.strip().splitlines()[-1]))
    med = {r: {k: statistics.median(run[k] for run in v) for k in v[0] if k != "interleaved"} for r, v in runs.items()}
    if not args.comm:
        report(args, med, runs[2])
    for size in SIZES:
        print(f"one step, {CHUNKS} chunks, evaluators doing nothing, {size:>7,} parameters: 1 rank "
              f"{1e6 * med[1][f'step{size}']:8.0f} us, 2 ranks {1e6 * med[2][f'step{size}']:8.0f} us")
    for size in SIZES:
        pickled, raw = serialisation(size)
        print(f"rank 1's {CHUNKS // 2} records of {size:>7,} parameters into a message and back, CPU time: pickled "
              f"{1e6 * pickled:6.0f} us, raw {1e6 * raw:6.0f} us")


def report(args: argparse.Namespace, med: dict[int, dict[str, float]], runs2: list[dict[str, Any]]) -> None:
    """Print the fingerprint, loss and memory figures."""
    n = args.images
    print(f"{n} Pt/Cu slab images (36 atoms), Gaussian default set Rc 6.5, NN (10, 10), "
          f"{'compiled' if args.compiled else 'numpy'} kernels; "
          f"median of {args.rounds} alternating jobs per rank count")
    print(f"fingerprints + derivatives: 1 rank {n * 36 / med[1]['fingerprints']:8.0f} atoms/s, 2 ranks "
          f"{n * 36 / med[2]['fingerprints']:8.0f} atoms/s, speed-up "
          f"{med[1]['fingerprints'] / med[2]['fingerprints']:.2f}x (target >= 1.8x)")
    print(f"loss + gradient with forces: 1 rank {n / med[1]['loss']:8.0f} images/s, 2 ranks "
          f"{n / med[2]['loss']:8.0f} images/s, speed-up {med[1]['loss'] / med[2]['loss']:.2f}x (target >= 1.8x)")
    pairs = [r for run in runs2 for r in run.get("interleaved", [])]
    if pairs:
        print(f"loss + gradient, interleaved in each 2-rank job (rank 0 alone with every chunk, then both ranks, "
              f"{len(pairs)} pairs of {args.seconds / 4:g}-s slices): speed-up median {statistics.median(pairs):.2f}x "
              f"(quartiles {np.percentile(pairs, 25):.2f}-{np.percentile(pairs, 75):.2f}x)")
    print(f"rank 0 waited {med[2]['lag']:.3f} s for rank 1 to reach the fingerprint stage (not counted)")
    print(f"peak RSS, 2 ranks: rank 0 {med[2]['rss0']:.0f} MiB, rank 1 {med[2]['rss']:.0f} MiB "
          f"(1 rank: {med[1]['rss0']:.0f} MiB)")


if __name__ == "__main__":
    main()
