"""The ``none`` descriptor: no fingerprinting; models receive the raw structure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amp_core import DescriptorEntry, hookimpl
from amp_core.errors import PropertyNotImplementedError

if TYPE_CHECKING:
    from ase import Atoms

    from amp_core.data import ImageFingerprints


@dataclass(frozen=True)
class NoneParams:
    """The ``none`` descriptor takes no parameters."""


class NoDescriptor:
    """Compute nothing: the pipeline skips fingerprinting, storing and reshaping them."""

    name = "none"
    implemented: frozenset[str] = frozenset()
    elements = None

    def __init__(self, params: NoneParams | None = None) -> None:
        self.params = params or NoneParams()

    def compute(self, atoms: Atoms, derivatives: bool = False) -> ImageFingerprints:
        """Refuse: this descriptor has no fingerprints."""
        raise PropertyNotImplementedError(
            "the 'none' descriptor computes no fingerprints (implemented: nothing); "
            "use a model whose inputs are 'structures', such as 'pairpotential'"
        )

    def cost(self, atoms: Atoms) -> float:
        """Work is proportional to the atom count."""
        return float(len(atoms))

    def todict(self) -> dict[str, Any]:
        """No parameters."""
        return {}


@hookimpl
def amp_descriptors() -> list[DescriptorEntry]:
    """Register ``none``."""
    return [DescriptorEntry(name="none", params=NoneParams, factory=NoDescriptor, summary="No fingerprints: models see raw structures.")]
