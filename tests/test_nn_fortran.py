"""Tests of the compiled neural-network loss kernel against a numpy reference and finite differences.

The kernel is always built here with ``-fcheck=all`` (bounds and argument checks) and
loaded from there (``AMP_KERNEL_GENERIC=1``, so that an installed AVX2 build is not
preferred), so every test also proves that it reads and writes only inside the arrays it
is given.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from amp_core.data import ImageFingerprints, LossSettings
from amp_core.errors import DataError, UsageError
from amp_core.reshape import build_arrays
from amp_plugins.models.neuralnetwork._loss import Layout, ShardLoss, prepare_shard

SOURCE = Path(__file__).resolve().parent.parent / "plugins" / "models" / "neuralnetwork" / "neuralnetwork_kernels.f90"
FEATURES = {"H": 3, "Cu": 4, "Pt": 5}
HIDDEN = {"Au": (2,), "Cu": (3,), "H": (2, 2), "Pt": ()}
ELEMENTS = ("Au", "Cu", "H", "Pt")  # sorted by symbol; Au is absent from the data


@pytest.fixture(scope="session", autouse=True)
def checked_kernels(bounds_checked):
    """Compile the kernel with bounds checking (and -std=f2008 -Wall -Werror) and load it from there."""
    folder = bounds_checked(SOURCE, "-std=f2008", "-Wall", "-Werror")
    with bounds_checked.loaded(folder, "amp_plugins.models.neuralnetwork", "neuralnetwork_kernels"):
        yield folder


def fake_fingerprints(atoms: Atoms, rng: np.random.Generator) -> ImageFingerprints:
    """Random fingerprints and random sparse derivative blocks (pairs sorted, self pairs included)."""
    n = len(atoms)
    lengths = np.array([FEATURES[s] for s in atoms.get_chemical_symbols()], dtype=np.int64)
    width = int(lengths.max())
    values = rng.normal(size=(n, width)) * (np.arange(width) < lengths[:, None])
    values[atoms.numbers == 29, 2] = 0.7  # a constant feature: left unscaled
    pairs = np.array([(i, m) for i in range(n) for m in range(n) if i == m or rng.random() < 0.6])
    derivatives = rng.normal(size=(len(pairs), 3, width)) * (
        np.arange(width) < lengths[pairs[:, 0], None, None]
    )
    return ImageFingerprints(
        atoms.numbers.astype(np.int64), values, lengths, pairs.astype(np.int64), derivatives
    )


def fake_shard(n_images: int = 4, seed: int = 0):
    """Images of H, Cu and Pt with random targets, their fingerprints and the reshaped arrays."""
    rng = np.random.default_rng(seed)
    images, targets, prints = [], [], []
    for k in range(n_images):
        symbols = list(rng.choice(["H", "Cu", "Pt"], size=3 + k % 3)) + ["H", "Cu", "Pt"]
        atoms = Atoms(symbols, positions=rng.normal(size=(len(symbols), 3)) * 3.0)
        images.append(atoms)
        targets.append((float(rng.normal() * 3.0), rng.normal(size=(len(atoms), 3))))
        prints.append(fake_fingerprints(atoms, rng))
    return images, targets, prints, build_arrays(images, targets, prints)


def fprange_of(prints: list[ImageFingerprints]) -> dict[str, list[list[float]]]:
    """Per element [[min, max], ...] over the data (like the model's initialise step)."""
    out = {}
    for symbol, count in FEATURES.items():
        rows = np.concatenate([p.values[p.numbers == _z(symbol), :count] for p in prints])
        out[symbol] = np.stack([rows.min(axis=0), rows.max(axis=0)], axis=1).tolist()
    out["Au"] = [[0.0, 1.0]] * 2
    return out


def _z(symbol: str) -> int:
    return {"H": 1, "Cu": 29, "Pt": 78, "Au": 79}[symbol]


def random_vector(seed: int = 1) -> np.ndarray:
    """A parameter vector of the right length (from the reference unpacking)."""
    n = sum(sum((a + 1) * b for a, b in zip(w[:-1], w[1:])) for w in _widths().values()) + 2 * len(ELEMENTS)
    return np.random.default_rng(seed).normal(size=n) * 0.7


def _widths() -> dict[str, tuple[int, ...]]:
    nfeat = {**FEATURES, "Au": 2}
    return {s: (nfeat[s], *HIDDEN[s], 1) for s in ELEMENTS}


# -- the numpy reference (independent of the plugin code) -------------------------------------


def unpack(vector: np.ndarray) -> tuple[dict[str, list[np.ndarray]], dict[str, tuple[float, float]]]:
    """Weights (n_in + 1, n_out) per layer per element, and (intercept, slope) per element."""
    weights, k = {}, 0
    for symbol in ELEMENTS:
        widths = _widths()[symbol]
        weights[symbol] = []
        for a, b in zip(widths[:-1], widths[1:]):
            weights[symbol].append(vector[k : k + (a + 1) * b].reshape(a + 1, b))
            k += (a + 1) * b
    scalings = {s: (vector[k + 2 * e], vector[k + 2 * e + 1]) for e, s in enumerate(ELEMENTS)}
    return weights, scalings


ACT = {
    "tanh": (np.tanh, lambda o: 1 - o**2),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), lambda o: o * (1 - o)),
    "linear": (lambda x: x, lambda o: np.ones_like(o)),
}


def atom_energy(x, weights, slope, intercept, activation):
    """Energy of one atom from its raw-scaled input x and dE/dx (same length)."""
    f, df = ACT[activation]
    outs = [x]
    for w in weights:
        outs.append(f(np.append(outs[-1], 1.0) @ w))
    delta = slope * df(outs[-1])
    for w, o in zip(weights[::-1], outs[-2::-1]):
        delta = (w[:-1] @ delta) * (df(o) if o is not x else 1.0)
    return slope * outs[-1][0] + intercept, delta


def reference_loss(images, targets, prints, fprange, vector, activation, c_f):
    """(energy_loss, force_loss, energy_maxresid, force_maxresid), image by image."""
    weights, scalings = unpack(vector)
    e_loss = f_loss = e_max = f_max = 0.0
    for atoms, (e_ref, f_ref), fp in zip(images, targets, prints):
        n = len(atoms)
        dense = fp.dense_derivatives()
        energy, forces = 0.0, np.zeros((n, 3))
        for i, symbol in enumerate(atoms.get_chemical_symbols()):
            low, high = np.array(fprange[symbol]).T
            span = high - low
            x, factor = fp[i].copy(), np.ones_like(span)
            wide = span > 1e-8
            x[wide] = -1 + 2 * (x[wide] - low[wide]) / span[wide]
            factor[wide] = 2 / span[wide]
            e_i, grad = atom_energy(x, weights[symbol], scalings[symbol][1], scalings[symbol][0], activation)
            energy += e_i
            forces -= dense[i, :, :, : len(x)] @ (grad * factor)
        e_loss += ((energy - e_ref) / n) ** 2
        e_max = max(e_max, abs(energy - e_ref) / n)
        if c_f is not None:
            f_loss += np.sum((forces - f_ref) ** 2) / (3 * n)
            f_max = max(f_max, np.abs(forces - f_ref).max())
    return e_loss, f_loss, e_max, f_max


# -- the tests ----------------------------------------------------------------------------------


def layout() -> Layout:
    """The parameter layout of the reference unpacking (every element, Au included)."""
    return Layout.build({s: [(a + 1, b) for a, b in zip(w[:-1], w[1:])] for s, w in _widths().items()})


def evaluator_for(arrays, prints, activation, c_f, c_e=1.0, kernel="fortran"):
    """The compiled loss evaluator of the shard (``kernel="numpy"``: ShardLoss from the same inputs)."""
    from amp_plugins.models.neuralnetwork._fortran import compiled_loss_evaluator

    settings = LossSettings(energy_coefficient=c_e, force_coefficient=c_f)
    fprange = {s: np.array(r) for s, r in fprange_of(prints).items()}
    shard = prepare_shard(arrays, layout(), fprange, settings.forces)
    build = compiled_loss_evaluator if kernel == "fortran" else ShardLoss
    return build(shard, layout(), activation, settings)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "linear"])
@pytest.mark.parametrize("c_f", [None, 0.3])
def test_loss_matches_numpy_reference(activation, c_f):
    images, targets, prints, arrays = fake_shard()
    vector = random_vector()
    parts = evaluator_for(arrays, prints, activation, c_f)(vector)
    expected = reference_loss(images, targets, prints, fprange_of(prints), vector, activation, c_f)
    got = (parts.energy_loss, parts.force_loss, parts.energy_maxresid, parts.force_maxresid)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    assert parts.n_images == len(images)
    assert expected[0] > 0 and (c_f is None or expected[1] > 0)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "linear"])
@pytest.mark.parametrize("c_f", [None, 0.3])
def test_gradient_matches_finite_differences(activation, c_f):
    _, _, prints, arrays = fake_shard(n_images=3, seed=2)
    evaluator = evaluator_for(arrays, prints, activation, c_f, c_e=0.8)
    vector = random_vector(seed=3)

    def loss(v):
        p = evaluator(v)
        return 0.8 * p.energy_loss + (c_f or 0.0) * p.force_loss

    gradient = evaluator(vector).gradient
    h = 1e-6
    numeric = np.array([(loss(vector + h * e) - loss(vector - h * e)) / (2 * h) for e in np.eye(len(vector))])
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-7 * np.abs(numeric).max())
    weights, scalings = unpack(np.arange(len(vector), dtype=float))
    absent = np.concatenate([w.ravel() for w in weights["Au"]] + [np.array(scalings["Au"])]).astype(int)
    assert np.all(gradient[absent] == 0) and np.abs(gradient).max() > 0


def test_repeated_calls_agree_and_return_fresh_gradients():
    _, _, prints, arrays = fake_shard(n_images=2)
    evaluator = evaluator_for(arrays, prints, "tanh", 0.1)
    first = evaluator(random_vector())
    evaluator(random_vector(seed=5))
    again = evaluator(random_vector())
    assert first.energy_loss == again.energy_loss and first.force_loss == again.force_loss
    np.testing.assert_array_equal(first.gradient, again.gradient)


def test_unsorted_blocks_give_the_same_result():
    _, _, prints, arrays = fake_shard(n_images=2)
    vector = random_vector()
    expected = evaluator_for(arrays, prints, "tanh", 0.5)(vector)
    shuffled = dict(arrays)
    order = np.random.default_rng(7).permutation(len(arrays["dcentre_29"]))
    for key in ("dcentre_29", "dneighbour_29", "dfp_29"):
        shuffled[key] = arrays[key][order]
    got = evaluator_for(shuffled, prints, "tanh", 0.5)(vector)
    np.testing.assert_allclose(got.force_loss, expected.force_loss, rtol=1e-13)
    np.testing.assert_allclose(got.gradient, expected.gradient, rtol=1e-11, atol=1e-14)


def test_wrong_vector_is_refused_before_the_kernel_reads_it():
    _, _, prints, arrays = fake_shard(n_images=2)
    with pytest.raises(UsageError, match="expects"):
        evaluator_for(arrays, prints, "tanh", None)(np.zeros(3))


@pytest.mark.parametrize("kernel", ["numpy", "fortran"])
def test_bad_shards_are_the_same_data_errors_on_both_kernels(kernel):
    """Both evaluators are built from one prepare_shard: the same checks, the same messages."""
    _, _, prints, arrays = fake_shard(n_images=2)
    no_derivatives = {k: v for k, v in arrays.items() if not k.startswith("dfp_")}
    with pytest.raises(DataError, match=r"element H has no fingerprint derivatives \('dfp_1'\)"):
        evaluator_for(no_derivatives, prints, "tanh", 1.0, kernel=kernel)
    narrow = dict(arrays, fp_29=arrays["fp_29"][:, :3])
    with pytest.raises(DataError, match="element Cu has 3 fingerprint features but the .* takes 4"):
        evaluator_for(narrow, prints, "tanh", None, kernel=kernel)


def test_an_element_without_a_network_is_refused_while_preparing():
    _, _, prints, arrays = fake_shard(n_images=2)
    known = Layout.build({s: [(FEATURES[s] + 1, 2), (3, 1)] for s in ("Cu", "H")})
    fprange = {s: np.array(r) for s, r in fprange_of(prints).items()}
    with pytest.raises(DataError, match=r"element Pt has no network in this model \(it knows Cu, H\)"):
        prepare_shard(arrays, known, fprange, False)


@pytest.mark.parametrize("n_images", [3, 40])  # 40: each element spans several row chunks
def test_matches_the_numpy_model(n_images):
    """Same numbers as the numpy model's own loss evaluator."""
    import amp_core

    model = amp_core.create_model("neuralnetwork", hiddenlayers=(4, 3), activation="tanh")
    _, _, prints, arrays = fake_shard(n_images=n_images, seed=4)
    from amp_plugins.models.neuralnetwork._fortran import CHUNK

    assert n_images < 40 or min(len(arrays[f"fp_{z}"]) for z in arrays["elements"]) > CHUNK
    settings = LossSettings(energy_coefficient=1.0, force_coefficient=0.2)
    model.initialize([arrays])
    vector = np.random.default_rng(9).normal(size=len(model.vector())) * 0.5
    expected = model.loss_evaluator(arrays, settings)(vector)
    got = model.compiled().loss_evaluator(arrays, settings)(vector)
    for name in ("energy_loss", "force_loss", "energy_maxresid", "force_maxresid"):
        np.testing.assert_allclose(getattr(got, name), getattr(expected, name), rtol=1e-10)
    np.testing.assert_allclose(
        got.gradient, expected.gradient, rtol=1e-10, atol=1e-12 * np.abs(expected.gradient).max()
    )


def test_sparse_blocks_are_packed_without_changing_results():
    """Features that are zero in every block of a kind are dropped; loss and gradient stay exact."""
    from amp_plugins.models.neuralnetwork._fortran import pack_blocks

    images, targets, prints, _ = fake_shard(n_images=3, seed=6)
    for atoms, fp in zip(images, prints):  # Pt centres: feature 0 never moves with an H neighbour
        numbers = atoms.numbers
        hit = (
            (numbers[fp.pairs[:, 0]] == 78)
            & (numbers[fp.pairs[:, 1]] == 1)
            & (fp.pairs[:, 0] != fp.pairs[:, 1])
        )
        fp.derivatives[hit, :, 0] = 0.0
    arrays = build_arrays(images, targets, prints)
    dfp = arrays["dfp_78"]
    kind = np.where(arrays["numbers"][arrays["dneighbour_78"]] == 1, 1, 0)
    packed = pack_blocks(dfp, kind)
    assert list(packed["pcnt"]) == [8, 4]  # 5 features padded to 8; 4 without feature 0
    assert list(packed["pidx"][1, :4]) == [2, 3, 4, 5]
    first = np.flatnonzero(kind == 1)[0]
    start = packed["boff"][first] - 1
    np.testing.assert_array_equal(packed["dc"][start : start + 12].reshape(3, 4), dfp[first][:, 1:])

    vector = random_vector(seed=8)
    evaluator = evaluator_for(arrays, prints, "tanh", 0.4)
    parts = evaluator(vector)
    expected = reference_loss(images, targets, prints, fprange_of(prints), vector, "tanh", 0.4)
    got = (parts.energy_loss, parts.force_loss, parts.energy_maxresid, parts.force_maxresid)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    direction = np.random.default_rng(3).normal(size=len(vector))
    h = 1e-6

    def loss(v):
        p = evaluator(v)
        return p.energy_loss + 0.4 * p.force_loss

    numeric = (loss(vector + h * direction) - loss(vector - h * direction)) / (2 * h)
    np.testing.assert_allclose(parts.gradient @ direction, numeric, rtol=1e-6)


def _optimised_builds(folder: Path) -> list[Path]:
    """The package's optimised builds of the kernel (portable, and AVX2 + FMA where it runs)."""
    from amp_core.compiled import wide_vectors

    variants = {"generic": []} | ({"v3": ["-march=x86-64-v3"]} if wide_vectors() else {})
    paths = []
    for name, extra in variants.items():
        target = folder / f"nn_{name}.so"
        flags = ["-shared", "-fPIC", "-O3", "-funroll-loops", *extra]
        subprocess.run([shutil.which("gfortran"), *flags, str(SOURCE), "-o", str(target)], check=True)
        paths.append(target)
    return paths


def test_optimised_activations_match_numpy_on_a_dense_grid(tmp_path):
    """tanh and sigmoid of the -O3 builds (vector libm calls) agree with numpy to 1e-15; no libgfortran."""
    import ctypes

    grid = np.concatenate([np.linspace(-30.0, 30.0, 600_001), np.geomspace(1e-300, 40.0, 20_001)])
    grid = np.concatenate([grid, -grid, [0.0, 800.0, -800.0, np.inf, -np.inf]])
    with np.errstate(over="ignore"):
        expected = {0: np.tanh(grid), 1: 1.0 / (1.0 + np.exp(-grid))}
    for path in _optimised_builds(tmp_path):
        function = ctypes.CDLL(str(path)).amp_nn_activate
        function.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
        for kind, reference in expected.items():
            got = np.full_like(grid, np.nan)
            function(kind, len(grid), grid.ctypes.data, got.ctypes.data)
            np.testing.assert_allclose(got, reference, rtol=1e-15, atol=1e-300, err_msg=f"{path.name} {kind}")
        readelf = shutil.which("readelf")
        if readelf is not None:
            dynamic = subprocess.run([readelf, "-d", str(path)], check=True, capture_output=True, text=True)
            assert "NEEDED" in dynamic.stdout
            assert "libgfortran" not in dynamic.stdout


def test_force_slots_cover_each_occurring_pair_once():
    """Each (image, neighbour, pattern) of the blocks gets one slot; slots of an image start at 0, packed."""
    from amp_plugins.models.neuralnetwork._fortran import force_slots

    image = np.array([0, 0, 0, 0, 2, 2])
    neighbour = np.array([3, 1, 3, 1, 9, 7])
    bpat = np.array([1, 2, 1, 1, 2, 2])
    pcnt = np.array([4, 8])
    out = force_slots(image, neighbour, bpat, pcnt, n_images=3)
    assert list(out["sptr"]) == [1, 4, 4, 6]
    # image 0: (1, p1) at 0, (1, p2) at 12, (3, p1) at 36; image 2: (7, p2) at 0, (9, p2) at 24
    np.testing.assert_array_equal(out["slot"], [[2, 1, 0], [2, 2, 12], [4, 1, 36], [8, 2, 0], [10, 2, 24]])
    assert list(out["bacc"]) == [36, 12, 36, 0, 24, 0]


def test_row_padding_is_an_odd_multiple_of_the_lanes():
    """ld = 16 * odd: enough rows, lanes whole, and columns (8 ld bytes apart) never 4 KiB-aligned."""
    from amp_plugins.models.neuralnetwork._fortran import LANES, padded_rows

    for n in range(0, 3000):
        ld = padded_rows(n)
        assert ld >= max(n, 1) and ld % LANES == 0 and (ld // LANES) % 2 == 1
        assert ld - n <= 2 * LANES
        assert (8 * ld) % 4096 != 0
