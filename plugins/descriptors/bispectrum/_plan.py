"""The coupling table of the bispectrum: every nonzero term of every feature, as flat indices.

For a centre with density coefficients c (one flat U vector, see :mod:`._su2`), feature
f = (j1, j) of Amp's list is

    B_f = Re sum_{m m' m1 m1'} <j1 m1 j1 m-m1 | j m> <j1 m1' j1 m'-m1' | j m'>
          conj(c^j_{m m'}) c^{j1}_{m1 m1'} c^{j1}_{m-m1, m'-m1'}

(Bartok et al., Phys. Rev. Lett. 104, 136403 (2010), eq. (5), with j2 = j1 as Amp).
Each nonzero product of Clebsch-Gordan coefficients is one *term*: the indices of its
three coefficients in the U vector and its weight. Both kernels read this table.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from amp_plugins.descriptors.bispectrum._su2 import Feature, block_offsets, clebsch_gordan, features


@dataclass(frozen=True, eq=False)
class Plan:
    """The term table of one jmax.

    Attributes:
        two_jmax: 2 jmax.
        features: Amp's feature list, in fingerprint order.
        size: length of the U vector (sum of (2j + 1)^2 over 2j = 0..2 jmax).
        starts: (n_features + 1,) int64; feature f's terms are ``starts[f]:starts[f + 1]``.
        term_j, term_1, term_2: (n_terms,) int64 U-vector index of c^j_{m m'},
            c^{j1}_{m1 m1'} and c^{j1}_{m-m1, m'-m1'}.
        coef: (n_terms,) float64 product of the two Clebsch-Gordan coefficients.
        feature: (n_terms,) int64 feature of each term.
    """

    two_jmax: int
    features: tuple[Feature, ...]
    size: int
    starts: NDArray[np.int64]
    term_j: NDArray[np.int64]
    term_1: NDArray[np.int64]
    term_2: NDArray[np.int64]
    coef: NDArray[np.float64]
    feature: NDArray[np.int64]

    @property
    def n_features(self) -> int:
        """Number of features per atom."""
        return len(self.features)


@functools.cache
def make_plan(two_jmax: int) -> Plan:
    """Build (once per process and jmax) the term table for ``jmax = two_jmax / 2``."""
    offsets = block_offsets(two_jmax)
    cg = functools.cache(clebsch_gordan)
    parts: list[NDArray[np.float64]] = []
    starts = [0]
    feats = features(two_jmax / 2)
    for k, f in enumerate(feats):
        big1, big = f.two_j1, 2 * f.j
        # couplings (p1, p2) -> p of the two j1 indices into one j index (all as j + m)
        couple = []
        for p1 in range(big1 + 1):
            for p2 in range(big1 + 1):
                p = p1 + p2 - big1 + f.j  # index of m = m1 + m2 in block j
                if 0 <= p <= big:
                    value = cg(big1, 2 * p1 - big1, big1, 2 * p2 - big1, big, 2 * p - big)
                    if value != 0.0:
                        couple.append((p1, p2, p, value))
        c = np.array(couple, dtype=np.float64).reshape(-1, 4)
        p1, p2, p = (c[:, n].astype(np.int64) for n in range(3))
        # every (row coupling, column coupling) pair is one term
        rows = np.stack(
            [
                offsets[big] + p[:, None] * (big + 1) + p[None, :],
                offsets[big1] + p1[:, None] * (big1 + 1) + p1[None, :],
                offsets[big1] + p2[:, None] * (big1 + 1) + p2[None, :],
                c[:, 3, None] * c[None, :, 3],
                np.full((len(c), len(c)), k),
            ],
            axis=-1,
        ).reshape(-1, 5)
        parts.append(rows)
        starts.append(starts[-1] + len(rows))
    table = np.concatenate(parts) if parts else np.zeros((0, 5))
    index = table[:, :3].astype(np.int64)
    return Plan(
        two_jmax=two_jmax,
        features=feats,
        size=int(offsets[-1]),
        starts=np.array(starts, dtype=np.int64),
        term_j=np.ascontiguousarray(index[:, 0]),
        term_1=np.ascontiguousarray(index[:, 1]),
        term_2=np.ascontiguousarray(index[:, 2]),
        coef=np.ascontiguousarray(table[:, 3]),
        feature=table[:, 4].astype(np.int64),
    )
