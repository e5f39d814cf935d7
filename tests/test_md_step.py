"""What the calculator does at every MD step besides the kernel: the state check, the kept lists, the
extrapolation check and the network's dE/dG.

Each fast path is compared with the plain computation it replaces: ASE's ``compare_atoms``,
a fresh pair search, a per-element loop over the training bounds, and the per-element
network passes.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import compare_atoms
from ase.data import chemical_symbols
from ase.md.verlet import VelocityVerlet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amp_core import ExtrapolationWarning, Potential, create_descriptor, create_model
from amp_core.errors import DataError
from amp_core.extrapolation import FEATURE_TOLERANCE, ContactList, TrainingRange, _pair, _pairs
from amp_plugins.models.neuralnetwork import _core as core
from amp_plugins.models.neuralnetwork._loss import input_scaling
from tests.test_md_forces import initialised_model


def _cell(seed: int = 0, repeat: int = 2) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((repeat,) * 3)
    atoms.symbols[::5] = "Pt"
    atoms.rattle(0.08, seed=seed)
    return atoms




@pytest.fixture(scope="module")
def model():
    """A (10, 10) network initialised on three EMT-labelled cells (random weights: numbers, not physics)."""
    return initialised_model()


# -- check_state --------------------------------------------------------------------


CHANGES = st.lists(st.sampled_from(["move", "nudge", "nan", "cell", "cell-nudge", "pbc", "numbers", "charges",
                                    "magmoms", "momenta", "inf"]), max_size=3)


@settings(max_examples=60, deadline=None)
@given(changes=CHANGES, ignored=st.sets(st.sampled_from(["positions", "cell", "initial_charges"]), max_size=2))
def test_check_state_answers_as_ases_compare_atoms(changes, ignored):
    old = _cell(1)
    new = old.copy()
    if "inf" in changes:
        old.positions[0, 0] = new.positions[0, 0] = np.inf  # allclose calls same-signed infinities equal
    for change in changes:
        if change == "move":
            new.positions[3] += 0.01
        elif change == "nudge":  # within ASE's tolerance (1e-15 absolute): unchanged
            new.positions[4, 1] = np.nextafter(new.positions[4, 1], np.inf)
        elif change == "nan":
            new.positions[5, 2] = np.nan
        elif change == "cell":
            new.set_cell(new.cell.array * 1.01)
        elif change == "cell-nudge":
            new.set_cell(new.cell.array + 1e-16)
        elif change == "pbc":
            new.pbc = [True, False, True]
        elif change == "numbers":
            new.numbers[2] = 78 if new.numbers[2] == 29 else 29
        elif change == "charges":
            new.set_initial_charges(np.linspace(-0.1, 0.1, len(new)))
        elif change == "magmoms":
            new.set_initial_magnetic_moments(np.ones(len(new)))
        elif change == "momenta":  # not a system change
            new.set_momenta(np.ones((len(new), 3)))
    calc = Potential(*_model_stub())
    calc.atoms = old.copy()
    calc.ignored_changes = set(ignored)
    expected = compare_atoms(old, new, tol=1e-15, excluded_properties=set(ignored))
    assert sorted(calc.check_state(new)) == sorted(expected)


def _model_stub():
    return create_descriptor("gaussian", elements=["Cu", "Pt"]), create_model("neuralnetwork", hiddenlayers=(3,))


def test_check_state_without_a_previous_structure_is_all_changes():
    calc = Potential(*_model_stub())
    assert sorted(calc.check_state(_cell(2))) == sorted(["positions", "numbers", "cell", "pbc", "initial_charges",
                                                         "initial_magmoms"])


# -- the extrapolation check ------------------------------------------------------------


def _reference_check(record: TrainingRange, atoms, values):
    """The plain check: per element its bounds, and a fresh pair search (flagged atoms, features, close, unknown)."""
    symbols = atoms.get_chemical_symbols()
    unknown = {i: s for i, s in enumerate(symbols) if s not in record.low}
    features = {}
    if values is not None:
        numbers = np.asarray(atoms.numbers)
        for z in np.unique(numbers).tolist():
            el = chemical_symbols[z]
            if el not in record.low:
                continue
            rows = np.flatnonzero(numbers == z)
            lo, hi = record.low[el], record.high[el]
            slack = FEATURE_TOLERANCE * (hi - lo) + 1e-12
            block = values[rows, : len(lo)]
            outside = (block < lo - slack) | (block > hi + slack)
            for r in np.flatnonzero(outside.any(axis=1)).tolist():
                features[int(rows[r])] = np.flatnonzero(outside[r])
    close = {}
    known = [d for d in record.min_distance.values() if d > 0]
    if known and (len(atoms) > 1 or np.any(atoms.pbc)):
        i, j, d = _pairs(atoms.positions, atoms.cell.array, atoms.pbc, max(known))
        for k in np.argsort(d).tolist():
            limit = record.min_distance.get(_pair(symbols[i[k]], symbols[j[k]]), 0.0)
            if d[k] < limit:
                for a, b in ((int(i[k]), int(j[k])), (int(j[k]), int(i[k]))):
                    close.setdefault(a, (b, float(d[k]), float(limit)))
    flagged = sorted(set(unknown) | set(features) | set(close))
    return flagged, features, close, unknown


def _record(width_cu: int, width_pt: int, rng) -> TrainingRange:
    low = {"Cu": rng.uniform(-1.0, 0.0, width_cu), "Pt": rng.uniform(-1.0, 0.0, width_pt)}
    high = {el: lo + rng.uniform(0.0, 2.0, len(lo)) * (rng.random(len(lo)) > 0.1) for el, lo in low.items()}
    distances = {"Cu-Cu": float(rng.uniform(1.5, 2.6)), "Cu-Pt": float(rng.uniform(1.5, 2.9))}
    if rng.random() < 0.7:
        distances["Pt-Pt"] = float(rng.uniform(1.0, 3.2))
    return TrainingRange(low, high, distances, 10)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 100_000), n=st.integers(1, 24), pbc=st.tuples(st.booleans(), st.booleans(), st.booleans()),
       gold=st.booleans(), with_values=st.booleans(), contacts=st.booleans())
def test_flags_equal_the_plain_check_on_random_structures(seed, n, pbc, gold, with_values, contacts):
    rng = np.random.default_rng(seed)
    record = _record(6, 4, rng)
    cell = np.diag(rng.uniform(4.0, 7.0, 3)) + rng.uniform(-0.5, 0.5, (3, 3)) * (1 - np.eye(3))
    numbers = rng.choice([29, 78], n)
    if gold:
        numbers[rng.integers(n)] = 79  # an element without a training range
    atoms = Atoms(numbers=numbers, cell=cell, pbc=pbc, scaled_positions=rng.random((n, 3)))
    values = None
    if with_values:
        values = rng.uniform(-1.2, 1.2, (n, 7))  # 7 columns: zero-padded past each element's width
        values[numbers == 78, 4:] = 0.0
        values[rng.random(n) < 0.5] *= 0.3  # some atoms inside the range
        for r in np.flatnonzero(rng.random(n) < 0.5):  # a feature at the edge: inside or outside the slack
            el = {29: "Cu", 78: "Pt"}.get(int(numbers[r]))
            if el is not None:
                lo, hi = record.low[el], record.high[el]
                c = int(rng.integers(len(lo)))
                slack = FEATURE_TOLERANCE * (hi[c] - lo[c]) + 1e-12
                values[r, c] = rng.choice([lo[c] - 0.5 * slack, hi[c] + 0.5 * slack, lo[c] - 3 * slack, hi[c] + 3 * slack])
    kept = None
    if contacts:  # a list built at positions up to skin / 2 away from these
        skin = 0.6
        before = atoms.positions + rng.uniform(-1, 1, (n, 3)) * 0.29 / np.sqrt(3)
        kept = ContactList(before, cell, np.array(pbc), record.contact_radius, skin)
    swapped = atoms.copy()
    swapped.numbers = np.where(numbers == 29, 78, np.where(numbers == 78, 29, numbers))
    for structure in (atoms, swapped, atoms):  # the record and the list keep tables for the last numbers
        found = record.check(structure, values, kept)
        flagged, features, close, unknown = _reference_check(record, structure, values)
        assert found.atoms.tolist() == flagged and found.atoms.dtype == np.int64
        assert list(found.features) == list(features)
        for i in features:
            np.testing.assert_array_equal(found.features[i], features[i])
        assert found.unknown == unknown
        assert set(found.close) == set(close)
        for i, (_, d, limit) in close.items():  # equal distances may name another neighbour
            assert found.close[i][1] == pytest.approx(d, rel=1e-12) and found.close[i][2] == limit


def test_fingerprints_narrower_than_the_record_are_refused():
    record = _record(6, 4, np.random.default_rng(0))
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]])
    with pytest.raises(ValueError, match="fingerprints have 5 features, fewer than the 6"):
        record.check(atoms, np.zeros((2, 5)))


def _range_of(potential: Potential, images) -> TrainingRange:
    """A training range from these images' fingerprints and distances (no training needed)."""
    low: dict[str, np.ndarray] = {}
    high: dict[str, np.ndarray] = {}
    distances: dict[str, float] = {}
    for atoms in images:
        values = potential.descriptor.compute(atoms).values
        for el in ("Cu", "Pt"):
            rows = np.asarray(atoms.get_chemical_symbols()) == el
            lo, hi = values[rows].min(axis=0), values[rows].max(axis=0)
            low[el] = np.minimum(low.get(el, lo), lo)
            high[el] = np.maximum(high.get(el, hi), hi)
        i, j, d = _pairs(atoms.positions, atoms.cell.array, atoms.pbc, 4.0)
        for a, b, dist in zip(i, j, d):
            key = _pair(atoms.get_chemical_symbols()[a], atoms.get_chemical_symbols()[b])
            distances[key] = min(distances.get(key, 4.0), float(dist))
    return TrainingRange(low, high, distances, sum(len(a) for a in images))


def test_kept_lists_flag_what_fresh_searches_flag_across_an_md_run_with_cell_changes(model):
    kept, fresh = Potential(*model, skin=0.4), Potential(*model, skin=0)
    record = _range_of(kept, [_cell(seed) for seed in range(3)])
    kept.training_range = fresh.training_range = record
    atoms = _cell(7)
    atoms.calc = kept
    sigma = np.sqrt(units.kB * 2500 / atoms.get_masses())[:, None]
    atoms.set_momenta(atoms.get_masses()[:, None] * sigma * np.random.default_rng(3).normal(size=(len(atoms), 3)))
    dyn = VelocityVerlet(atoms, 2.0 * units.fs)
    flagged = builds = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        for step in range(24):
            dyn.run(1)
            if step % 8 == 7:  # a changed cell: both lists are built anew
                atoms.set_cell(atoms.cell.array * 0.985, scale_atoms=True)
                builds = kept.neighbour_builds
                atoms.get_forces()
                assert kept.neighbour_builds == builds + 1
                assert kept._frame is not None and np.array_equal(kept._frame.cell, atoms.cell.array)
            copy_ = atoms.copy()
            copy_.calc = fresh
            copy_.get_forces()
            np.testing.assert_array_equal(kept.results["extrapolating_atoms"], fresh.results["extrapolating_atoms"])
            scale = np.abs(fresh.results["forces"]).max()  # the entry order differs: round-off only
            np.testing.assert_allclose(kept.results["forces"], fresh.results["forces"], rtol=0, atol=1e-12 * scale)
            flagged += len(kept.results["extrapolating_atoms"])
    assert flagged > 0  # the run leaves the range: the check had something to flag
    assert 1 < kept.neighbour_builds < 24


@pytest.mark.filterwarnings("ignore::amp_core.ExtrapolationWarning")
def test_a_changed_skin_rebuilds_the_kept_lists(model):
    potential = Potential(*model, skin=0.2)
    potential.training_range = _range_of(potential, [_cell(0)])
    atoms = _cell(5)
    atoms.calc = potential
    atoms.get_forces()
    contacts = potential._frame.contacts
    assert contacts is not None and contacts.skin == 0.2
    potential.skin = 1.0
    atoms.positions[0, 0] += 0.3  # beyond the old skin / 2, within the new one
    atoms.get_forces()
    assert potential.neighbour_builds == 2
    assert potential._frame.contacts is not contacts and potential._frame.contacts.skin == 1.0


# -- the network's dE/dG ------------------------------------------------------------------


def _plain_gradient(network, numbers, values):
    """Per element: scale, forward, backward (the formula, without kept tables)."""
    weights, scalings, fprange = network._require()
    energies, gradient = np.empty(len(numbers)), np.zeros_like(values)
    for z in np.unique(numbers).tolist():
        el = chemical_symbols[z]
        rows = np.flatnonzero(numbers == z)
        width = len(fprange[el])
        scale, shift = input_scaling(fprange[el])
        outputs = core.forward(values[rows, :width] * scale + shift, weights[el], network.activation)
        intercept, slope = scalings[el]
        energies[rows] = slope * outputs[-1][:, 0] + intercept
        fprimes = core.derivatives(outputs, network.activation)
        gradient[rows, :width] = core.input_gradient(weights[el], fprimes, slope) * scale
    return energies, gradient


def test_atomic_gradient_follows_new_parameters_and_new_numbers(model):
    descriptor, network = model
    network = copy.deepcopy(network)
    atoms = _cell(4)
    values = descriptor.compute(atoms).values
    numbers = np.asarray(atoms.numbers)
    for _ in range(2):  # the second call uses the kept tables
        energies, gradient = network.atomic_gradient(numbers, values)
        expected = _plain_gradient(network, numbers, values)
        np.testing.assert_array_equal(energies, expected[0])
        np.testing.assert_array_equal(gradient, expected[1])
    network.set_vector(network.vector() * 1.1)
    energies, gradient = network.atomic_gradient(numbers, values)
    np.testing.assert_array_equal(gradient, _plain_gradient(network, numbers, values)[1])
    for rows in (np.arange(10), np.flatnonzero(numbers == 29), np.arange(len(numbers))[::-1]):
        energies, gradient = network.atomic_gradient(numbers[rows], values[rows])
        expected = _plain_gradient(network, numbers[rows], values[rows])
        np.testing.assert_array_equal(energies, expected[0])
        np.testing.assert_array_equal(gradient, expected[1])
    for k in range(12):  # more numbers than are kept: the oldest are dropped, answers stay right
        rows = np.arange(k, len(numbers))
        np.testing.assert_array_equal(network.atomic_gradient(numbers[rows], values[rows])[1],
                                      _plain_gradient(network, numbers[rows], values[rows])[1])
    assert len(network._groups_cache) <= 8


def test_atomic_gradient_refuses_an_element_without_a_network(model):
    descriptor, network = model
    values = descriptor.compute(_cell(4)).values
    with pytest.raises(DataError, match="element Au has no network"):
        network.atomic_gradient(np.array([29, 79, 78]), values[:3])
    with pytest.raises(DataError, match="fingerprint features"):
        network.atomic_gradient(np.array([29, 29]), values[:2, :5])
