"""amp_core.testing.check_model: built-in models pass it, deliberately broken models fail it."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest

from amp_core import ModelEntry, create_descriptor, create_model, hookimpl
from amp_core.data import FORCE_COEFFICIENT
from amp_core.errors import PropertyNotImplementedError
from amp_core.testing import check_model, labelled_structures
from amp_plugins.models.neuralnetwork import NeuralNetwork, NeuralNetworkParams
from amp_plugins.models.neuralnetwork import from_dict as nn_from_dict
from amp_plugins.models.pairpotential import PairPotential, PairPotentialParams

# ------------------------------------------------------------------ the built-ins pass


def test_neuralnetwork_passes_with_forces():
    check_model(create_model("neuralnetwork", hiddenlayers=(3,)))


def test_neuralnetwork_passes_energy_only_with_a_given_descriptor():
    descriptor = create_descriptor("gaussian", cutoff=4.5, elements=["Cu", "Pt"])
    check_model(
        create_model("neuralnetwork", hiddenlayers=(2, 2), activation="sigmoid"),
        descriptor=descriptor,
        images=labelled_structures()[:3],
        forces=False,
    )


def test_compiled_neuralnetwork_passes():
    try:
        model = create_model("neuralnetwork", hiddenlayers=(3,)).compiled()
    except PropertyNotImplementedError as exc:
        pytest.skip(f"no Fortran kernels built: {exc}")
    check_model(model)


def test_pairpotential_passes_with_the_none_descriptor(builtin_plugin_manager):
    check_model(
        create_model("pairpotential"), descriptor=create_descriptor("none"), manager=builtin_plugin_manager
    )


def test_pairpotential_with_given_elements_passes_energy_only():
    check_model(create_model("pairpotential", elements=["Cu", "Pt"], cutoff=5.0), forces=False)


# ------------------------------------------------------------------ broken models


# Each broken model is the pair potential (fast) with one fault; BROKEN maps it to the message.


def altered(evaluator: Any, change: Any) -> Any:
    """Wrap a loss evaluator so that ``change(parts)`` edits every result."""
    return lambda vector: change(evaluator(vector))


class ScaledGradient(PairPotential):
    def loss_evaluator(self, arrays, settings):
        return altered(
            super().loss_evaluator(arrays, settings),
            lambda p: dataclasses.replace(p, gradient=1.01 * p.gradient),
        )


class ScaledForceGradient(PairPotential):
    def loss_evaluator(self, arrays, settings):
        scale = 1.01 if settings.forces else 1.0
        return altered(
            super().loss_evaluator(arrays, settings),
            lambda p: dataclasses.replace(p, gradient=scale * p.gradient),
        )


class UnweightedLoss(PairPotential):
    def loss_evaluator(self, arrays, settings):
        return altered(
            super().loss_evaluator(arrays, settings),
            lambda p: dataclasses.replace(p, loss=p.energy_loss + p.force_loss),
        )


class ForceLossWhenOff(PairPotential):
    def loss_evaluator(self, arrays, settings):
        return altered(
            super().loss_evaluator(arrays, settings), lambda p: dataclasses.replace(p, force_loss=1.0)
        )


class MeanOverImages(PairPotential):
    def loss_evaluator(self, arrays, settings):
        def mean(p):
            n = p.n_images
            return dataclasses.replace(
                p,
                loss=p.loss / n,
                energy_loss=p.energy_loss / n,
                force_loss=p.force_loss / n,
                gradient=p.gradient / n,
            )

        return altered(super().loss_evaluator(arrays, settings), mean)


class EnergyOff(PairPotential):
    def predict(self, atoms, fingerprints=None, forces=False):
        energy, f = super().predict(atoms, fingerprints, forces)
        return energy + 0.01, f


class ForcesUphill(PairPotential):
    """Forces +dE/dR, consistently in predict and in training (the reference forces are negated)."""

    def loss_evaluator(self, arrays, settings):
        return super().loss_evaluator(dict(arrays, forces=-np.asarray(arrays["forces"])), settings)

    def predict(self, atoms, fingerprints=None, forces=False):
        energy, f = super().predict(atoms, fingerprints, forces)
        return energy, None if f is None else -f


class DoubledPenaltyGradient(PairPotential):
    def regularization(self, vector, overfit):
        penalty, gradient = super().regularization(vector, overfit)
        return penalty, 2.0 * gradient


class PenaltyAtZeroOverfit(PairPotential):
    def regularization(self, vector, overfit):
        penalty, gradient = super().regularization(vector, overfit)
        return penalty + 1e-3, gradient


class VectorView(PairPotential):
    def vector(self):
        return self._checked_vector()


class SetVectorKeepsReference(PairPotential):
    def set_vector(self, vector):
        self._vector = vector


class Unpicklable(PairPotential):
    def __init__(self, params: PairPotentialParams | None = None) -> None:
        super().__init__(params)
        self.hook = lambda x: x


class PicklesInSinglePrecision(PairPotential):
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_vector"] = state["_vector"].astype(np.float32).astype(np.float64)
        return state


class NotJson(PairPotential):
    def todict(self):
        return dict(super().todict(), extra=np.zeros(2))


class UnknownCapability(PairPotential):
    implemented = frozenset({"energy", "forces", "stress"})


class NoEnergy(PairPotential):
    implemented = frozenset({"forces"})


class BadInputs(PairPotential):
    inputs = "graphs"


class Unregistered(PairPotential):
    name = "unregistered-model"


class NoPredict:
    name = "nopredict"
    params = None
    implemented = frozenset({"energy"})
    inputs = "structures"
    elements = None

    def initialize(self, arrays): ...
    def vector(self): ...
    def set_vector(self, vector): ...
    def loss_evaluator(self, arrays, settings): ...
    def regularization(self, vector, overfit): ...
    def todict(self): ...


class LossyNetwork(NeuralNetwork):
    """A network registered as ``lossy-network`` whose loader drops (zeroes) one first-layer weight."""

    name = "lossy-network"


def lossy_loader(document: dict[str, Any]) -> LossyNetwork:
    document = json.loads(json.dumps(document))
    document["name"] = "neuralnetwork"
    document["weights"]["Cu"]["1"][0][0] = 0.0
    return LossyNetwork(nn_from_dict(document).params)


class LossyPlugin:
    @hookimpl
    def amp_models(self) -> list[ModelEntry[Any]]:
        return [
            ModelEntry(
                name="lossy-network",
                params=NeuralNetworkParams,
                factory=LossyNetwork,
                summary="test: loses a weight on loading",
                loader=lossy_loader,
            )
        ]


BROKEN = {
    ScaledGradient: r"d loss / d parameter \(analytic\) versus central finite differences",
    ScaledForceGradient: rf"\(with forces, c_E 0.5, c_F {FORCE_COEFFICIENT:g}\): d loss / d parameter \(analytic\) versus",
    UnweightedLoss: r"LossParts.loss versus settings.objective",
    ForceLossWhenOff: r"forces are not trained, but force_loss 1.0",
    MeanOverImages: r"one shard of all images versus the shards of one image each",
    EnergyOff: r"image 0 .*energy_loss from the loss evaluator versus \(\(E_pred - E_ref\) / N\)\^2 from predict",
    ForcesUphill: r"forces from predict\(\) on image 1 .* versus minus central finite differences",
    DoubledPenaltyGradient: r"regularization.*d penalty / d parameter \(analytic\) versus central finite",
    PenaltyAtZeroOverfit: r"regularization\(vector, overfit\) at overfit 0 must be 0",
    VectorView: r"changing the array vector\(\) returned changed the model",
    SetVectorKeepsReference: r"changing the array passed to set_vector\(\) changed the model",
    Unpicklable: r"does not pickle",
    PicklesInSinglePrecision: r"vector\(\) of a pickled copy: \d+ of 11 entries differ",
    NotJson: r"todict\(\) is not strict JSON",
    UnknownCapability: r"implemented has unknown capabilities \['stress'\]",
    NoEnergy: r"lacks 'energy'",
    BadInputs: r"inputs must be one of \['fingerprints', 'structures'\], got 'graphs'",
    Unregistered: r"not registered in the plugin manager",
}


@pytest.mark.parametrize("cls", list(BROKEN), ids=lambda c: c.__name__)
def test_broken_models_fail_with_a_clear_message(cls, builtin_plugin_manager):
    with pytest.raises(AssertionError, match=BROKEN[cls]) as info:
        check_model(cls(), manager=builtin_plugin_manager)
    assert f"model {cls.name!r}" in str(info.value)


def test_a_loader_that_drops_a_weight_fails(builtin_plugin_manager):
    builtin_plugin_manager.register(LossyPlugin(), name="test-lossy")
    model = builtin_plugin_manager.lookup("model", "lossy-network").entry.factory(
        NeuralNetworkParams(hiddenlayers=(3,))
    )
    with pytest.raises(
        AssertionError,
        match=r"the registered loader rebuilt from todict\(\): vector\(\) differ "
        r"\(1 of \d+ entries\); worst at parameter 0: 0.0 versus",
    ):
        check_model(model, images=labelled_structures()[:2], manager=builtin_plugin_manager)


def test_a_loader_that_keeps_every_weight_passes(builtin_plugin_manager):
    """The same registration with an honest loader passes, so the failure above is the dropped weight."""
    entry = ModelEntry(
        name="lossy-network",
        params=NeuralNetworkParams,
        factory=LossyNetwork,
        summary="test",
        loader=lambda d: LossyNetwork(nn_from_dict(dict(d, name="neuralnetwork")).params),
    )

    class Honest:
        @hookimpl
        def amp_models(self) -> list[ModelEntry[Any]]:
            return [entry]

    builtin_plugin_manager.register(Honest(), name="test-honest")
    check_model(
        LossyNetwork(NeuralNetworkParams(hiddenlayers=(3,))),
        images=labelled_structures()[:2],
        manager=builtin_plugin_manager,
    )


def test_a_missing_method_is_named():
    with pytest.raises(
        AssertionError,
        match=r"model 'nopredict': does not satisfy the Model protocol .*missing "
        r"\['predict'\]",
    ):
        check_model(NoPredict())


def test_unlabelled_images_are_a_usage_error():
    from ase.build import bulk

    with pytest.raises(ValueError, match="needs labelled images"):
        check_model(PairPotential(), images=[bulk("Cu", "fcc", a=3.6)])


def test_forces_need_fingerprint_derivatives():
    class ValuesOnly:
        name = "values-only"
        implemented = frozenset({"fingerprints"})

    with pytest.raises(ValueError, match="pass forces=False"):
        check_model(create_model("neuralnetwork", hiddenlayers=(3,)), descriptor=ValuesOnly())
