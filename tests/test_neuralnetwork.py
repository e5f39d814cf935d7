"""Tests of the ``neuralnetwork`` model: definitions, gradients, initialisation, saving, errors."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111
from ase.neighborlist import neighbor_list

import amp_core
from amp_core.data import ImageFingerprints, LossParts, LossSettings
from amp_core.errors import ConfigError, DataError, ModelFileError, UsageError
from amp_core.reshape import build_arrays, load_arrays, save_arrays
from amp_plugins.models.neuralnetwork import NeuralNetwork, NeuralNetworkParams, from_dict

# A toy descriptor with exact derivatives: feature k of atom i is
# sum_j (Z_j / 30) exp(-eta_k r_ij^2) (1 - r_ij / RC)^3; a ``None`` eta is the constant 0.5.
ETAS = {29: (0.3, 1.0, None), 78: (0.5, 2.0), 8: (0.7,)}
RC = 4.0


def toy(atoms: Atoms, derivatives: bool = True) -> ImageFingerprints:
    """Fingerprint ``atoms`` with the toy descriptor (Cu: 3 features, Pt: 2, O: 1)."""
    n, width = len(atoms), max(len(v) for v in ETAS.values())
    i, j, vec = neighbor_list("ijD", atoms, RC)
    r = np.linalg.norm(vec, axis=1)
    values, dense = np.zeros((n, width)), np.zeros((n, n, 3, width))
    for z, etas in ETAS.items():
        sel = atoms.numbers[i] == z
        for k, eta in enumerate(etas):
            if eta is None:
                values[atoms.numbers == z, k] = 0.5
                continue
            rr, w = r[sel], atoms.numbers[j[sel]] / 30.0
            g, cut = np.exp(-eta * rr**2), (1 - rr / RC) ** 3
            dt = w * (-2 * eta * rr * g * cut - 3 * g * (1 - rr / RC) ** 2 / RC)
            np.add.at(values[:, k], i[sel], w * g * cut)
            step = (dt / rr)[:, None] * vec[sel]
            np.add.at(dense, (i[sel], j[sel], slice(None), k), step)
            np.add.at(dense, (i[sel], i[sel], slice(None), k), -step)
    lengths = np.array([len(ETAS[z]) for z in atoms.numbers], dtype=np.int64)
    numbers = atoms.numbers.astype(np.int64)
    if not derivatives:
        return ImageFingerprints(numbers, values, lengths)
    pairs = np.argwhere(np.any(dense != 0, axis=(2, 3)) | np.eye(n, dtype=bool)).astype(np.int64)
    return ImageFingerprints(numbers, values, lengths, pairs, dense[pairs[:, 0], pairs[:, 1]])


def images() -> list[Atoms]:
    """Periodic slabs, a periodic bulk cell and a free molecule of Cu, Pt and O."""
    out = []
    for k in range(2):
        slab = fcc111("Cu", size=(2, 2, 2), vacuum=4.0)
        slab.numbers[[0, 5]] = 78
        slab.numbers[3] = 8
        slab.rattle(0.1, seed=k)
        out.append(slab)
    cell = bulk("Cu", "fcc", a=3.7, cubic=True)
    cell.numbers[1] = 78
    cell.rattle(0.05, seed=7)
    out.append(cell)
    out.append(Atoms("CuPtO", positions=[[0, 0, 0], [2.1, 0.3, 0], [0.4, 1.9, 0.5]]))
    return out


@pytest.fixture(scope="module")
def data() -> tuple[list[Atoms], list[ImageFingerprints], list, dict]:
    rng = np.random.default_rng(1)
    atoms = images()
    fps = [toy(a) for a in atoms]
    targets = [(float(rng.normal() - 3 * len(a)), rng.normal(size=(len(a), 3))) for a in atoms]
    return atoms, fps, targets, build_arrays(atoms, targets, fps)


def total(evaluator, model, settings: LossSettings, vector: np.ndarray) -> tuple[float, np.ndarray]:
    parts = evaluator(vector)
    penalty, dpenalty = model.regularization(vector, settings.overfit)
    loss = (
        settings.energy_coefficient * parts.energy_loss
        + (settings.force_coefficient or 0.0) * parts.force_loss
    )
    return loss + penalty, parts.gradient + dpenalty


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "linear"])
@pytest.mark.parametrize(
    "settings", [LossSettings(1.0, None, 0.0), LossSettings(0.7, 0.3, 0.0), LossSettings(0.5, 0.2, 0.1)]
)
def test_gradient_matches_central_differences(data, activation, settings):
    _, _, _, arrays = data
    model = NeuralNetwork(NeuralNetworkParams(hiddenlayers=(3, 2), activation=activation, seed=3))
    model.initialize([arrays])
    vector = model.vector() + np.random.default_rng(5).normal(size=model.layout.size) * 0.3
    evaluator = model.loss_evaluator(arrays, settings)
    _, gradient = total(evaluator, model, settings, vector)
    h = 1e-6
    numeric = np.array(
        [
            (
                total(evaluator, model, settings, vector + h * e)[0]
                - total(evaluator, model, settings, vector - h * e)[0]
            )
            / (2 * h)
            for e in np.eye(len(vector))
        ]
    )
    assert np.abs(numeric).max() > 1e-3
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-6 * np.abs(numeric).max())


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "linear"])
def test_loss_parts_match_predictions(data, activation):
    atoms, fps, targets, arrays = data
    model = NeuralNetwork(NeuralNetworkParams(hiddenlayers=(4,), activation=activation, seed=1))
    model.initialize([arrays])
    parts = model.loss_evaluator(arrays, LossSettings(1.0, 0.1))(model.vector())
    e_res = [(model.predict(a, f, False)[0] - t[0]) / len(a) for a, f, t in zip(atoms, fps, targets)]
    f_res = [model.predict(a, f, True)[1] - t[1] for a, f, t in zip(atoms, fps, targets)]
    assert parts.energy_loss == pytest.approx(sum(r * r for r in e_res), rel=1e-12)
    assert parts.force_loss == pytest.approx(sum((r**2).sum() / r.size for r in f_res), rel=1e-12)
    assert parts.energy_maxresid == pytest.approx(max(abs(r) for r in e_res), rel=1e-12)
    assert parts.force_maxresid == pytest.approx(max(np.abs(r).max() for r in f_res), rel=1e-12)
    assert parts.n_images == len(atoms)
    energy_only = model.loss_evaluator(arrays, LossSettings(1.0, None))(model.vector())
    assert energy_only.force_loss == 0.0 and energy_only.force_maxresid == 0.0
    assert energy_only.energy_loss == pytest.approx(parts.energy_loss, rel=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "linear"])
def test_forces_are_minus_energy_gradient(data, activation):
    _, _, _, arrays = data
    scalings = {el: (-1.0, 1.5) for el in ("Cu", "O", "Pt")}
    model = NeuralNetwork(
        NeuralNetworkParams(hiddenlayers=(4, 3), activation=activation, scalings=scalings, seed=2)
    )
    model.initialize([arrays])
    model.set_vector(model.vector() * 2.0)  # leave the near-linear regime
    for atoms in (images()[0], images()[-1]):
        _, forces = model.predict(atoms, toy(atoms), True)
        numeric = np.zeros_like(forces)
        for m in range(len(atoms)):
            for axis in range(3):
                shifted = []
                for sign in (1, -1):
                    moved = atoms.copy()
                    moved.positions[m, axis] += sign * 1e-5
                    shifted.append(model.predict(moved, toy(moved, False), False)[0])
                numeric[m, axis] = -(shifted[0] - shifted[1]) / 2e-5
        assert np.abs(numeric).max() > 1e-3
        np.testing.assert_allclose(forces, numeric, atol=1e-6 * np.abs(numeric).max())


HAND = {
    "hiddenlayers": {"Cu": (2,), "Pt": (2,)},
    "weights": {
        "Cu": {"1": [[0.5, -0.25], [1.0, 0.75], [0.1, -0.2]], "2": [[1.5], [-0.5], [0.25]]},
        "Pt": {1: [[-0.3, 0.8], [0.6, -0.4], [0.05, 0.15]], 2: [[0.7], [1.2], [-0.1]]},
    },
    "scalings": {"Cu": {"intercept": -3.5, "slope": 2.0}, "Pt": {"intercept": -5.25, "slope": 1.5}},
    "fprange": {"Cu": [[0.2, 0.9], [0.0, 0.4]], "Pt": [[0.1, 0.5], [0.3, 0.3]]},
}


def hand_fingerprints(x_cu: float = 0.55) -> ImageFingerprints:
    values = np.array([[x_cu, 0.1], [0.3, 0.7]])
    return ImageFingerprints(np.array([29, 78]), values, np.array([2, 2]))


def test_hand_built_network_energy():
    model = amp_core.create_model("neuralnetwork", activation="tanh", **HAND)
    energy, forces = model.predict(Atoms("CuPt"), hand_fingerprints(), False)
    # Cu: scaled input (0, -0.5); Pt: (0, 0.7) - the second Pt feature has zero range, so stays raw.
    e_cu = 2.0 * math.tanh(1.5 * math.tanh(-0.4) - 0.5 * math.tanh(-0.575) + 0.25) - 3.5
    e_pt = 1.5 * math.tanh(0.7 * math.tanh(0.47) + 1.2 * math.tanh(-0.13) - 0.1) - 5.25
    assert forces is None
    assert energy == pytest.approx(e_cu + e_pt, abs=1e-12)
    sigmoid = amp_core.create_model("neuralnetwork", activation="sigmoid", **HAND)
    s = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    e_cu = 2.0 * s(1.5 * s(-0.4) - 0.5 * s(-0.575) + 0.25) - 3.5
    e_pt = 1.5 * s(0.7 * s(0.47) + 1.2 * s(-0.13) - 0.1) - 5.25
    assert sigmoid.predict(Atoms("CuPt"), hand_fingerprints(), False)[0] == pytest.approx(
        e_cu + e_pt, abs=1e-12
    )


def test_hand_built_forces_follow_the_chain_rule():
    model = amp_core.create_model("neuralnetwork", **HAND)
    # Cu's first feature moves with x of atom 1 at rate 0.2/A; nothing else moves.
    fps = hand_fingerprints()
    derivatives = np.zeros((4, 3, 2))
    derivatives[1, 0, 0] = 0.2
    moved = ImageFingerprints(
        fps.numbers, fps.values, fps.lengths, np.array([[0, 0], [0, 1], [1, 0], [1, 1]]), derivatives
    )
    _, forces = model.predict(Atoms("CuPt"), moved, True)
    h = 1e-6
    de_dx = (
        model.predict(Atoms("CuPt"), hand_fingerprints(0.55 + h), False)[0]
        - model.predict(Atoms("CuPt"), hand_fingerprints(0.55 - h), False)[0]
    ) / (2 * h)
    expected = np.zeros((2, 3))
    expected[1, 0] = -0.2 * de_dx
    np.testing.assert_allclose(forces, expected, atol=1e-9)


def test_vector_is_in_amp_order():
    model = amp_core.create_model("neuralnetwork", **HAND)
    expected = np.concatenate(
        [
            np.ravel(HAND["weights"]["Cu"]["1"]),
            np.ravel(HAND["weights"]["Cu"]["2"]),
            np.ravel(HAND["weights"]["Pt"][1]),
            np.ravel(HAND["weights"]["Pt"][2]),
            [-3.5, 2.0, -5.25, 1.5],
        ]
    )
    np.testing.assert_array_equal(model.vector(), expected)
    model.set_vector(expected * 2)
    np.testing.assert_array_equal(model.vector(), expected * 2)
    with pytest.raises(UsageError, match="shape"):
        model.set_vector(expected[:-1])


def test_regularization_penalises_first_layer_weights_only():
    model = amp_core.create_model("neuralnetwork", **HAND)
    penalty, gradient = model.regularization(model.vector(), 0.5)
    first = (
        np.array(HAND["weights"]["Cu"]["1"])[:-1].ravel().tolist()
        + np.array(HAND["weights"]["Pt"][1])[:-1].ravel().tolist()
    )
    assert penalty == pytest.approx(0.5 * sum(w * w for w in first))
    assert np.count_nonzero(gradient) == len(first)
    np.testing.assert_allclose(gradient[:4], [0.5, -0.25, 1.0, 0.75])


def test_initialize_fills_only_what_is_missing(data):
    _, _, _, arrays = data
    half = [{k: v for k, v in arrays.items()}, arrays]
    model = NeuralNetwork(NeuralNetworkParams(hiddenlayers=(5, 5), activation="sigmoid", seed=4))
    model.initialize(half)
    doc = model.todict()
    assert model.elements == ("Cu", "O", "Pt")
    np.testing.assert_allclose(
        doc["fprange"]["Cu"], np.stack([arrays["fp_29"].min(0), arrays["fp_29"].max(0)], 1)
    )
    # per-element energy reference: least squares of E on composition, remainder per atom
    counts = np.stack([np.bincount(arrays["atom_image"][arrays["numbers"] == z], minlength=len(arrays["energy"]))
                       for z in (29, 8, 78)], axis=1).astype(float)
    energies = np.concatenate([arrays["energy"], arrays["energy"]])
    counts = np.concatenate([counts, counts])
    reference = np.linalg.lstsq(counts, energies, rcond=None)[0]
    rest = (energies - counts @ reference) / np.concatenate([arrays["natoms"], arrays["natoms"]])
    assert doc["scalings"]["Pt"]["intercept"] == pytest.approx(reference[2] + rest.min(), abs=1e-12)
    assert doc["scalings"]["Pt"]["slope"] == pytest.approx(rest.max() - rest.min(), abs=1e-12)
    w1 = np.array(doc["weights"]["Cu"]["1"])
    assert w1.shape == (4, 5) and np.abs(w1).max() < math.sqrt(6 / 8)
    before = model.vector()
    model.initialize([arrays])
    np.testing.assert_array_equal(model.vector(), before)
    again = NeuralNetwork(NeuralNetworkParams(hiddenlayers=(5, 5), activation="sigmoid", seed=4))
    again.initialize([arrays])  # the same data once: the same least-squares reference (to rounding)
    np.testing.assert_allclose(again.vector(), before, rtol=1e-12, atol=1e-14)
    fixed = NeuralNetwork(
        NeuralNetworkParams(activation="linear", scalings={el: (1.0, 2.0) for el in ("Cu", "O", "Pt")})
    )
    fixed.initialize([arrays])
    assert fixed.todict()["scalings"]["O"] == {"intercept": 1.0, "slope": 2.0}


def test_todict_round_trips_through_json(data):
    atoms, fps, _, arrays = data
    model = NeuralNetwork(NeuralNetworkParams(hiddenlayers={"Cu": (3,), "O": (2, 2), "Pt": (4,)}, seed=9))
    model.initialize([arrays])
    doc = json.loads(json.dumps(model.todict()))
    assert doc["name"] == "neuralnetwork" and doc["hiddenlayers"]["O"] == [2, 2]
    loaded = from_dict(doc)
    np.testing.assert_array_equal(loaded.vector(), model.vector())
    assert loaded.predict(atoms[0], fps[0], True)[0] == model.predict(atoms[0], fps[0], True)[0]
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.vector(), model.vector())
    with pytest.raises(ModelFileError, match="version"):
        from_dict({**doc, "version": 99})
    with pytest.raises(ModelFileError, match="not a neuralnetwork"):
        from_dict({"name": "pairpotential"})
    with pytest.raises(ModelFileError, match="invalid"):
        from_dict({**doc, "activation": "relu"})


def test_bad_inputs_raise_clear_errors(data):
    model = amp_core.create_model("neuralnetwork", **HAND)
    with pytest.raises(DataError, match=r"element O .*knows Cu, Pt"):
        model.predict(Atoms("O"), ImageFingerprints(np.array([8]), np.zeros((1, 2)), np.array([2])), False)
    with pytest.raises(DataError, match=r"element Cu has 3 .* takes 2"):
        model.predict(Atoms("Cu"), ImageFingerprints(np.array([29]), np.zeros((1, 3)), np.array([3])), False)
    _, _, _, arrays = data
    with pytest.raises(DataError, match="element"):
        model.loss_evaluator(arrays, LossSettings())
    with pytest.raises(UsageError, match="initialize"):
        NeuralNetwork().vector()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"activation": "relu"}, "activation"),
        ({"hiddenlayers": (5, 0)}, "positive"),
        ({"hiddenlayers": {"Cu": (2, -1)}}, "positive"),
        ({"weights": {"Cu": {1: [[1.0, 2.0]], 3: [[1.0]]}}}, "layers 1..n"),
        ({"hiddenlayers": (3,), "weights": HAND["weights"]}, "hidden layers"),
        ({"scalings": {"Cu": {"slope": 1.0}}}, "intercept"),
        ({"fprange": {"Cu": [[1.0, 0.0]]}}, "max < min"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_params_reject_bad_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        amp_core.create_model("neuralnetwork", **kwargs)


def test_params_are_hashable_and_normalised():
    a = NeuralNetworkParams(**HAND)
    b = NeuralNetworkParams(**{**HAND, "hiddenlayers": [("Pt", [2]), ("Cu", [2])]})
    assert hash(a) == hash(b) and a == b
    assert a.weights[0][0] == "Cu" and a.weights[0][1][1] == ((1.5,), (-0.5,), (0.25,))
    assert NeuralNetworkParams(hiddenlayers=7).hiddenlayers == (7,)


def test_shards_add_up_to_the_whole_set(data, tmp_path):
    atoms, fps, targets, arrays = data
    model = NeuralNetwork(NeuralNetworkParams(hiddenlayers=(3,), seed=6))
    model.initialize([arrays])
    assert isinstance(model, amp_core.Model)
    settings = LossSettings(1.0, 0.2)
    cu_only = [2]  # the bulk cell has Cu and Pt only: O's parameters get no gradient from it
    rest = [0, 1, 3]
    shards = []
    for k, picked in enumerate((cu_only, rest)):
        shard = build_arrays(
            [atoms[i] for i in picked], [targets[i] for i in picked], [fps[i] for i in picked]
        )
        save_arrays(shard, tmp_path / str(k))
        shards.append(model.loss_evaluator(load_arrays(tmp_path / str(k)), settings)(model.vector()))
    layout = model.layout
    offset, shape = layout.weights["O"][0]
    assert not shards[0].gradient[offset : offset + shape[0] * shape[1]].any()
    assert shards[0].gradient[layout.scalings["O"]] == 0.0
    combined = LossParts.combine(shards)
    whole = model.loss_evaluator(arrays, settings)(model.vector())
    assert combined.energy_loss == pytest.approx(whole.energy_loss, rel=1e-12)
    assert combined.force_loss == pytest.approx(whole.force_loss, rel=1e-12)
    assert combined.force_maxresid == pytest.approx(whole.force_maxresid, rel=1e-12)
    np.testing.assert_allclose(combined.gradient, whole.gradient, rtol=1e-10, atol=1e-12)


def _energy_arrays(compositions, energies):
    """Arrays with only what the scalings read: per image element counts and energies."""
    numbers = np.concatenate([np.repeat([29, 78], c) for c in compositions])
    natoms = np.array([sum(c) for c in compositions])
    return [{"energy": np.array(energies, dtype=float), "natoms": natoms, "numbers": numbers,
             "atom_image": np.repeat(np.arange(len(compositions)), natoms)}]


def test_energy_reference_recovers_elemental_energies():
    from amp_plugins.models.neuralnetwork import MIN_SPREAD, _initial_scalings

    # hand-made: E = 2 n_Cu - 5 n_Pt + a remainder of +0.1 / -0.1 eV per atom on two images
    compositions = [(2, 0), (1, 1), (0, 2), (3, 1)]
    energies = [2 * 2 + 0.0, 2 - 5 + 0.2, -10.0 - 0.2, 6 - 5 + 0.0]
    pairs = _initial_scalings(_energy_arrays(compositions, energies), "tanh", ["Cu", "Pt"])
    counts = np.array(compositions, dtype=float)
    reference = np.linalg.lstsq(counts, np.array(energies), rcond=None)[0]
    rest = (np.array(energies) - counts @ reference) / counts.sum(1)
    assert pairs["Cu"][0] == pytest.approx(reference[0] + (rest.max() + rest.min()) / 2, abs=1e-12)
    assert pairs["Pt"][0] == pytest.approx(reference[1] + (rest.max() + rest.min()) / 2, abs=1e-12)
    assert pairs["Cu"][1] == pytest.approx((rest.max() - rest.min()) / 2, abs=1e-12)
    assert abs(pairs["Cu"][0] - 2) < 0.2 and abs(pairs["Pt"][0] + 5) < 0.2  # near the true references
    # exactly linear energies: the slope keeps the smallest spread instead of 0
    exact = _initial_scalings(_energy_arrays(compositions, [4.0, -3.0, -10.0, 1.0]), "tanh", ["Cu", "Pt"])
    assert exact["Cu"][0] == pytest.approx(2.0, abs=1e-9) and exact["Pt"][0] == pytest.approx(-5.0, abs=1e-9)
    assert exact["Cu"][1] == pytest.approx(MIN_SPREAD / 2)


def test_energy_reference_with_one_element_is_amps_rule():
    from amp_plugins.models.neuralnetwork import _initial_scalings

    arrays = [{"energy": np.array([-7.0, -9.5, -11.0]), "natoms": np.array([2, 3, 4]),
               "numbers": np.full(9, 29), "atom_image": np.repeat([0, 1, 2], [2, 3, 4])}]
    per_atom = arrays[0]["energy"] / arrays[0]["natoms"]
    pairs = _initial_scalings(arrays, "tanh", ["Cu"])
    assert pairs["Cu"] == ((per_atom.max() + per_atom.min()) / 2, (per_atom.max() - per_atom.min()) / 2)
