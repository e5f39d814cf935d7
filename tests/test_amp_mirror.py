"""``amp_core.amp``: Amp's Python API on amp-core (an Amp script runs with its imports changed).

The script test is the example of Amp's documentation page "Using Amp" (instantiate
``Amp(descriptor=Gaussian(), model=NeuralNetwork(hiddenlayers=(10, 10, 10)), label="calc")``,
``calc.model.lossfunction = LossFunction(convergence=...)``, ``calc.train(images=...)``,
``Amp.load("calc.amp")`` and use it on a structure) with ``from amp`` changed to
``from amp_core.amp``, a looser force criterion and 6 training images so that it trains
in seconds. Its training data are made as the documentation's example makes them (EMT
molecular dynamics of a Pt(110) slab with a Cu adsorbate).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import fcc110
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.io import Trajectory, read
from ase.md.verlet import VelocityVerlet

import amp_core
from amp_core import ConfigError, DataError, DescriptorEntry, ExtrapolationWarning, UsageError, hookimpl
from amp_core.amp import Amp, backend_table
from amp_core.amp.descriptor.bispectrum import Bispectrum
from amp_core.amp.descriptor.cutoffs import Cosine, Polynomial
from amp_core.amp.descriptor.gaussian import (
    Gaussian,
    make_default_symmetry_functions,
    make_symmetry_functions,
)
from amp_core.amp.descriptor.zernike import Zernike
from amp_core.amp.model import LossFunction
from amp_core.amp.model.neuralnetwork import NeuralNetwork
from amp_core.amp.regression import Regressor
from amp_core.amp.utilities import TrainingConvergenceError
from amp_core.manager import make_plugin_manager

sys.path.insert(0, str(Path(__file__).parent / "support"))
amp_original = importlib.import_module("amp_original")

DATA = Path(__file__).parent / "data"


def generate_data(count: int, filename: Path) -> None:
    """Amp's documentation example data: EMT MD of a Pt(110) slab with a Cu dimer (shortened)."""
    atoms = fcc110("Pt", (2, 2, 2), vacuum=7.0)
    adsorbate = Atoms("2Cu", positions=[(0.0, 0.0, 0.0), (0.0, 0.0, 2.5)])
    adsorbate.translate(atoms[7].position + (0.0, 0.0, 2.5))
    atoms.extend(adsorbate)
    atoms.set_constraint(FixAtoms(indices=[0, 2]))
    atoms.calc = EMT()
    rng = np.random.default_rng(0)
    atoms.set_momenta(rng.normal(scale=0.05, size=(len(atoms), 3)) * np.sqrt(atoms.get_masses())[:, None])
    with Trajectory(filename, "w") as traj:
        atoms.get_potential_energy()
        traj.write(atoms)
        dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
        for _ in range(count - 1):
            dyn.run(5)
            traj.write(atoms)


USING_AMP = '''
from ase.io import read

from amp_core.amp import Amp
from amp_core.amp.descriptor.gaussian import Gaussian
from amp_core.amp.model.neuralnetwork import NeuralNetwork
from amp_core.amp.model import LossFunction

calc = Amp(descriptor=Gaussian(),
           model=NeuralNetwork(hiddenlayers=(10, 10, 10)),
           label="calc")
convergence = {'energy_rmse': 0.02, 'force_rmse': 0.5}
calc.model.lossfunction = LossFunction(convergence=convergence)
calc.train(images='my-images.traj')

calc = Amp.load('calc.amp')
atoms = read('my-images.traj', index=-1)
atoms.calc = calc
energy = atoms.get_potential_energy()
forces = atoms.get_forces()
print(repr(energy))
'''


@pytest.fixture(scope="module")
def trained_script(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """Run the 'Using Amp' script as a program in a fresh folder; return the folder and the energy it printed."""
    folder = tmp_path_factory.mktemp("using-amp")
    generate_data(6, folder / "my-images.traj")
    (folder / "script.py").write_text(textwrap.dedent(USING_AMP))
    done = subprocess.run([sys.executable, "script.py"], cwd=folder, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, float(done.stdout.strip().splitlines()[-1])


def test_using_amp_script_trains_writes_amps_files_and_reloads(trained_script: tuple[Path, float]) -> None:
    folder, energy = trained_script
    for name in ("calc.amp", "calc-log.txt", "calc-checkpoint.amp"):
        assert (folder / name).is_file(), name
    assert not (folder / "calc-untrained-parameters.amp").exists()
    log = (folder / "calc-log.txt").read_text()
    assert "converged at iteration" in log and 'Parameters saved in file "calc.amp"' in log
    atoms = read(folder / "my-images.traj", index=-1)
    atoms.calc = amp_core.load(folder / "calc.amp")  # amp-core reads the file the mirror wrote
    assert atoms.get_potential_energy() == pytest.approx(energy, rel=1e-12)
    loaded = Amp.load(folder / "calc.amp")
    assert loaded.model.parameters["hiddenlayers"] == {"Cu": (10, 10, 10), "Pt": (10, 10, 10)}
    assert loaded.descriptor.plugin == "gaussian"
    assert loaded.descriptor.elements == ["Cu", "Pt"]


AMP = amp_original.amp_python()


@pytest.mark.skipif(AMP is None, reason="the original Amp is not installed (~/.cache/amp-original, AMP_SETUP notes)")
def test_original_amp_loads_the_trained_file(trained_script: tuple[Path, float], tmp_path: Path) -> None:
    folder, _ = trained_script
    images = read(folder / "my-images.traj", ":3")
    structures, energies, forces = amp_original.amp_predict(AMP, folder / "calc.amp", images, tmp_path)
    ours = Amp.load(folder / "calc.amp")
    for atoms, energy, force in zip(structures, energies, forces):
        atoms.calc = ours
        assert atoms.get_potential_energy() == pytest.approx(energy, rel=1e-10)
        np.testing.assert_allclose(atoms.get_forces(), force, rtol=0, atol=1e-10 * np.abs(force).max())


def labelled_cell(seed: int, energy: float | None = None) -> Atoms:
    atoms = Atoms("Cu2Pt", positions=[[0, 0, 0], [2.4, 0.2, 0.1], [1.1, 2.0, 0.3]])
    atoms.rattle(0.05, seed=seed)
    atoms.calc = EMT()
    value = atoms.get_potential_energy() if energy is None else energy
    atoms.calc = SinglePointCalculator(atoms, energy=value, forces=np.zeros((3, 3)))
    return atoms


def test_training_that_stops_short_raises_training_convergence_error(tmp_path: Path) -> None:
    """The same structure twice with different energies: no fit meets 1e-6 eV; BFGS stops by itself."""
    images = [labelled_cell(0, -1.0), labelled_cell(0, 1.0)]
    model = NeuralNetwork(hiddenlayers=(2,), lossfunction=LossFunction(
        force_coefficient=None, convergence={"energy_rmse": 1e-6}, weight_duplicates=True, maxiter=5000))
    calc = Amp(Gaussian(cutoff=4.0), model, label=str(tmp_path / "calc"), cores=1)
    with pytest.raises(TrainingConvergenceError, match="did not converge"):
        calc.train(images)
    assert (tmp_path / "calc-untrained-parameters.amp").is_file()
    assert not (tmp_path / "calc.amp").exists()
    assert "NOT converged" in (tmp_path / "calc-log.txt").read_text()


def test_reaching_maxiter_counts_as_finished_as_in_amp(tmp_path: Path) -> None:
    model = NeuralNetwork(hiddenlayers=(2,), lossfunction=LossFunction(
        force_coefficient=None, convergence={"energy_rmse": 1e-9}, maxiter=3))
    calc = Amp(Gaussian(cutoff=4.0), model, label=str(tmp_path / "calc"), cores=1)
    calc.train([labelled_cell(1), labelled_cell(2)])
    assert (tmp_path / "calc.amp").is_file()
    assert "NOT converged after 3 iterations" in (tmp_path / "calc-log.txt").read_text()
    atoms = labelled_cell(3)
    atoms.calc = calc
    with warnings.catch_warnings():  # an unseen cell after 3 iterations may be outside the training range
        warnings.simplefilter("ignore", ExtrapolationWarning)
        assert np.isfinite(atoms.get_potential_energy())


def test_duplicates_count_once_unless_weighted(tmp_path: Path) -> None:
    from amp_core.amp import labelled_images

    images = [labelled_cell(0), labelled_cell(0), labelled_cell(1)]
    assert len(labelled_images(images, forces=True, weight_duplicates=False)) == 2
    assert len(labelled_images(images, forces=True, weight_duplicates=True)) == 3


def test_forces_are_read_without_constraints_as_amp_reads_them() -> None:
    from amp_core.amp import labelled_images

    atoms = labelled_cell(0)
    forces = np.arange(9.0).reshape(3, 3)
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=forces)
    atoms.set_constraint(FixAtoms(indices=[0]))
    (copy,) = labelled_images([atoms], forces=True, weight_duplicates=False)
    np.testing.assert_array_equal(copy.get_forces(), forces)


def test_unlabelled_image_names_it(tmp_path: Path) -> None:
    calc = Amp(Gaussian(cutoff=4.0), NeuralNetwork(hiddenlayers=(2,)), label=str(tmp_path / "c"), cores=1)
    with pytest.raises(DataError, match="image 1: needs energy and forces"):
        calc.train([labelled_cell(0), Atoms("Cu")])


def test_untrained_calculator_says_so() -> None:
    calc = Amp(Gaussian(elements=["Cu"]), NeuralNetwork())
    with pytest.raises(UsageError, match="not trained"):
        Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.2]], calculator=calc).get_potential_energy()


def test_cores_select_the_backend() -> None:
    assert backend_table(None) == {"name": "serial"}
    assert backend_table(1) == {"name": "serial"}
    assert backend_table(4) == {"name": "multiprocessing", "cores": 4}
    assert backend_table(2, "fortran") == {"name": "fortran", "cores": 2}
    assert backend_table(None, "mpi") == {"name": "mpi"}
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ConfigError, match="cores must be"):
            backend_table(bad)


def test_amps_host_dictionary_points_to_the_mpi_backend() -> None:
    with pytest.raises(ConfigError, match=r"host dictionary.*backend='mpi'.*mpiexec"):
        Amp(Gaussian(), NeuralNetwork(), cores={"node1": 4, "node2": 4})


def test_default_gaussian_is_amps_default_set() -> None:
    from amp_plugins.descriptors.gaussian import make_default_symmetry_functions as plugin_default

    assert make_default_symmetry_functions(["Cu", "Pt"]) == plugin_default(["Cu", "Pt"])
    built = Gaussian().build(["Pt", "Cu"])
    assert built.todict()["Gs"] == make_default_symmetry_functions(["Cu", "Pt"])
    assert Gaussian(elements=["O", "Cu"]).built.elements == ("Cu", "O")


def test_make_symmetry_functions_in_amps_order() -> None:
    g2 = make_symmetry_functions(["Cu", "O"], "G2", [0.1, 2.0], offsets=[0.0, 1.0])
    assert [(g["eta"], g["element"], g["offset"]) for g in g2] == [
        (0.1, "Cu", 0.0), (0.1, "Cu", 1.0), (0.1, "O", 0.0), (0.1, "O", 1.0),
        (2.0, "Cu", 0.0), (2.0, "Cu", 1.0), (2.0, "O", 0.0), (2.0, "O", 1.0),
    ]  # fmt: skip
    g5 = make_symmetry_functions(["O", "Cu"], "G5", [0.005], zetas=[0.5], gammas=[1.0, -1.0])
    assert [(g["gamma"], g["elements"]) for g in g5] == [
        (1.0, ["O", "O"]), (1.0, ["Cu", "O"]), (1.0, ["Cu", "Cu"]),
        (-1.0, ["O", "O"]), (-1.0, ["Cu", "O"]), (-1.0, ["Cu", "Cu"]),
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="unknown type"):
        make_symmetry_functions(["Cu"], "G3", [0.1])


def test_cutoffs_and_bad_arguments() -> None:
    assert Gaussian(cutoff=Polynomial(5.0, gamma=3), elements=["Cu"]).built.params.cutoff.gamma == 3.0
    assert Gaussian(cutoff=Cosine(4.0), elements=["Cu"]).built.params.cutoff.Rc == 4.0
    with pytest.raises(ConfigError, match="cutoff must be"):
        Gaussian(cutoff="6.5")
    with pytest.raises(ConfigError, match="atom-centered"):
        Gaussian(mode="image-centered")
    with pytest.raises(ConfigError, match="not supported"):
        LossFunction(d=1e-4)
    with pytest.raises(ConfigError, match="unknown criterion 'force_rsme'"):
        LossFunction(convergence={"force_rsme": 0.1})
    with pytest.raises(ConfigError, match="optimizer_kwargs"):
        Regressor(optimizer_kwargs={"gtol": 1e-3})
    with pytest.raises(ConfigError, match="prescale"):
        NeuralNetwork(prescale=True)
    with pytest.raises(ConfigError, match="Amp.descriptor=|descriptor from amp_core.amp.descriptor"):
        Amp(descriptor=object(), model=NeuralNetwork())  # type: ignore[arg-type]


def test_loss_function_maps_to_the_training_table() -> None:
    table = LossFunction(convergence={"force_rmse": 0.1}, overfit=1e-4, maxiter=50).training_table()
    assert table == {"energy_coefficient": 1.0, "forces": True, "overfit": 1e-4, "maxiter": 50,
                     "convergence": {"energy_rmse": 0.001, "force_rmse": 0.1}, "force_coefficient": 0.04}
    energy_only = LossFunction(force_coefficient=None, convergence={"force_rmse": 0.1}).training_table()
    assert energy_only["forces"] is False and energy_only["convergence"] == {"energy_rmse": 0.001}
    assert Regressor("L-BFGS-B").name == "lbfgs" and Regressor().name == "bfgs"


@pytest.mark.parametrize("cls, plugin", [(Zernike, "zernike"), (Bispectrum, "bispectrum")])
def test_zernike_and_bispectrum_say_when_their_plugin_is_not_installed(cls: type, plugin: str) -> None:
    empty = make_plugin_manager(entry_points=())
    with pytest.raises(ConfigError, match=f"needs the amp-core descriptor plugin '{plugin}', which is not installed"):
        cls(manager=empty)


class _Recorded:
    """A stand-in plugin recording the parameters it is built with."""

    implemented = frozenset({"fingerprints"})
    elements = None

    def __init__(self, params: object) -> None:
        self.params = params


def _recording_manager(name: str, fields: tuple[str, ...]) -> amp_core.PluginManager:
    from dataclasses import make_dataclass

    params = make_dataclass(f"{name.title()}Params", [(f, object, None) for f in fields], frozen=True)
    factory = type(name.title(), (_Recorded,), {"name": name})

    class Plugin:
        @hookimpl
        def amp_descriptors(self) -> list[DescriptorEntry]:
            return [DescriptorEntry(name=name, params=params, factory=factory, summary="test stand-in")]

    manager = make_plugin_manager(entry_points=())
    manager.register(Plugin(), name=f"test-{name}")
    return manager


def test_zernike_maps_amps_arguments_to_the_plugin() -> None:
    manager = _recording_manager("zernike", ("cutoff", "Gs", "nmax", "elements"))
    zernike = Zernike(cutoff=Polynomial(5.0, gamma=3), Gs={"Pt": {"Pt": 1.0, "Cu": 2.0}}, nmax=4,
                      dblabel="db", fortran=False, elements=["Pt", "Cu"], manager=manager)
    built = zernike.build()
    assert vars(built.params) == {"cutoff": {"name": "Polynomial", "Rc": 5.0, "gamma": 3},
                                  "Gs": {"Pt": {"Pt": 1.0, "Cu": 2.0}}, "nmax": 4, "elements": ("Cu", "Pt")}


def test_bispectrum_maps_amps_arguments_to_the_plugin() -> None:
    manager = _recording_manager("bispectrum", ("cutoff", "Gs", "jmax", "elements"))
    bispectrum = Bispectrum(cutoff=6.0, jmax=2.5, dblabel="db", manager=manager)
    with pytest.raises(ConfigError, match="elements are not known yet"):
        bispectrum.build()
    built = bispectrum.build(["Pt", "Cu"])  # from the training images
    assert vars(built.params) == {"cutoff": 6.0, "Gs": None, "jmax": 2.5, "elements": ("Cu", "Pt")}


def test_amp_load_reads_amps_own_file_and_save_round_trips(tmp_path: Path) -> None:
    calc = Amp.load(DATA / "amp_cupt.amp", label=str(tmp_path / "again"))
    dimer = Atoms("CuPt", positions=[[0, 0, 0], [2.5, 0.1, 0]])
    dimer.calc = calc
    energy, forces = dimer.get_potential_energy(), dimer.get_forces()
    dimer.calc = amp_core.load(DATA / "amp_cupt.amp")
    assert dimer.get_potential_energy() == energy
    saved = calc.save(tmp_path / "copy.amp")
    assert saved == str(tmp_path / "copy.amp")
    dimer.calc = Amp.load(saved)
    assert dimer.get_potential_energy() == energy
    np.testing.assert_array_equal(dimer.get_forces(), forces)
    elsewhere = calc.save(tmp_path / "copy.amp")  # exists, no overwrite: Amp saves to a new temporary file
    assert elsewhere != saved and Path(elsewhere).is_file()
    Path(elsewhere).unlink()


def test_retraining_a_loaded_calculator_starts_from_its_weights(tmp_path: Path) -> None:
    images = [labelled_cell(1), labelled_cell(2), labelled_cell(4)]
    model = NeuralNetwork(hiddenlayers=(2,), lossfunction=LossFunction(force_coefficient=None, maxiter=2))
    first = Amp(Gaussian(cutoff=4.0), model, label=str(tmp_path / "a"), cores=1)
    first.train(images)
    again = Amp.load(tmp_path / "a.amp", label=str(tmp_path / "b"), cores=1)
    np.testing.assert_array_equal(again.potential.model.vector(), first.potential.model.vector())
    again.model.lossfunction = LossFunction(force_coefficient=None, maxiter=1)
    again.train(images)
    assert (tmp_path / "b.amp").is_file()

    def rows(label: str) -> dict[int, str]:  # iteration -> loss column of the run's log
        lines = (tmp_path / f"{label}-amp-core" / "train-log.txt").read_text().splitlines()
        return {int(p[0]): p[2] for p in (line.split() for line in lines) if len(p) > 3 and p[0].isdigit()}

    assert rows("b")[0] == rows("a")[2]  # the second run starts where the first ended
