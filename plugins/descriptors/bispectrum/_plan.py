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
from fractions import Fraction

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
    rows: list[tuple[int, int, int, float, int]] = []
    starts = [0]
    feats = features(two_jmax / 2)
    for k, f in enumerate(feats):
        big1, big = f.two_j1, 2 * f.j
        j1, j = Fraction(big1, 2), Fraction(f.j)
        # couplings (p1, p2) -> p of the two j1 indices into one j index (all as j + m)
        couple = []
        for p1 in range(big1 + 1):
            for p2 in range(big1 + 1):
                p2m = p1 + p2 - big1 + f.j  # index of m = m1 + m2 in block j
                if 0 <= p2m <= big:
                    value = cg(j1, p1 - j1, j1, p2 - j1, j, Fraction(p2m) - j)
                    if value != 0.0:
                        couple.append((p1, p2, p2m, value))
        for p1, p2, p, c1 in couple:
            for q1, q2, q, c2 in couple:
                rows.append(
                    (
                        int(offsets[big]) + p * (big + 1) + q,
                        int(offsets[big1]) + p1 * (big1 + 1) + q1,
                        int(offsets[big1]) + p2 * (big1 + 1) + q2,
                        c1 * c2,
                        k,
                    )
                )
        starts.append(len(rows))
    table = np.array([r[:3] for r in rows], dtype=np.int64).reshape(-1, 3)
    return Plan(
        two_jmax=two_jmax,
        features=feats,
        size=int(offsets[-1]),
        starts=np.array(starts, dtype=np.int64),
        term_j=np.ascontiguousarray(table[:, 0]),
        term_1=np.ascontiguousarray(table[:, 1]),
        term_2=np.ascontiguousarray(table[:, 2]),
        coef=np.array([r[3] for r in rows], dtype=np.float64),
        feature=np.array([r[4] for r in rows], dtype=np.int64),
    )
