"""Angular symmetry functions (G4, G5) of a block of centres, with analytic derivatives.

For a centre i and an unordered pair of neighbour images (j, k) with vectors
a = r_ij, b = r_ik and c = b - a = r_jk, one term of a G4 is

    2^(1 - zeta) (1 + gamma cos) ^ zeta exp(-eta' (a^2 + b^2 + c^2)) fc(a) fc(b) fc(c),

with eta' = eta / Rc^2 (G5: no c^2 in the exponent and no fc(c)). Its gradient with
respect to a is ``alpha a + beta b`` and with respect to b is ``beta a + delta b``
(beta appears in both because the term is symmetric in a and b); the neighbour
atoms j and k receive those gradients and the centre i minus their sum. So each
term needs only three scalars per parameter set, and the sums over pairs become
sparse matrix products with the neighbour vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from amp_plugins.descriptors._gaussian_params import Cutoff
from amp_plugins.descriptors._gaussian_plan import AngularPlan


@dataclass
class Block:
    """Neighbour images of a block of centres of one element (local indices).

    Attributes:
        vectors: (n_e, 3) float64 r_ij of each entry, Angstrom.
        r: (n_e,) float64 |r_ij|, Angstrom.
        fc: (n_e,) float64 cutoff value; dfc: (n_e,) its derivative, 1/Angstrom.
        species: (n_e,) int64 species index of the neighbour.
        starts: (n_c + 1,) int64; centre c's entries are ``starts[c]:starts[c + 1]``.
        n_species: number of species the descriptor knows.
    """

    vectors: NDArray[np.float64]
    r: NDArray[np.float64]
    fc: NDArray[np.float64]
    dfc: NDArray[np.float64]
    species: NDArray[np.int64]
    starts: NDArray[np.int64]
    n_species: int

    @property
    def n_entries(self) -> int:
        """Number of neighbour images in the block."""
        return len(self.r)

    def centre_matrix(self) -> sp.csr_matrix:
        """(n_c, n_e) CSR of ones: row c sums centre c's entries."""
        n_e = self.n_entries
        return sp.csr_matrix((np.ones(n_e), np.arange(n_e), self.starts), shape=(len(self.starts) - 1, n_e))

    def onehot(self) -> NDArray[np.float64]:
        """(n_e, n_species) float64 indicator of each entry's species."""
        out = np.zeros((self.n_entries, self.n_species))
        out[np.arange(self.n_entries), self.species] = 1.0
        return out


@dataclass
class Triplets:
    """Pairs of neighbour images (e1 < e2) of the same centre, sorted by e1 then e2.

    Attributes:
        e1, e2: (n_t,) int64 local entry indices.
        dot: (n_t,) float64 a . b, Angstrom^2.
        rjk2: (n_t,) float64 |b - a|^2, Angstrom^2.
    """

    e1: NDArray[np.int64]
    e2: NDArray[np.int64]
    dot: NDArray[np.float64]
    rjk2: NDArray[np.float64]


def find_triplets(block: Block, rc: float, keep_far: bool) -> Triplets:
    """Return every neighbour pair of each centre; drop r_jk >= rc unless ``keep_far`` (G5)."""
    counts = np.diff(block.starts)
    n_c = len(counts)
    width = int(counts.max()) if n_c else 0
    rank = np.arange(block.n_entries) - np.repeat(block.starts[:-1], counts)
    owner = np.repeat(np.arange(n_c), counts)
    padded = np.zeros((n_c, width, 3))
    padded[owner, rank] = block.vectors
    gram = padded @ padded.transpose(0, 2, 1)
    r2 = np.zeros((n_c, width))
    r2[owner, rank] = block.r * block.r
    rjk2 = r2[:, :, None] + r2[:, None, :] - 2.0 * gram
    mask = np.triu(np.ones((width, width), dtype=bool), 1)[None] & (np.arange(width) < counts[:, None])[:, None, :]
    if not keep_far:
        mask &= rjk2 < rc * rc
    c, j, k = np.nonzero(mask)
    base = block.starts[c]
    return Triplets(base + j, base + k, gram[c, j, k], np.maximum(rjk2[c, j, k], 0.0))


@dataclass
class AngularTerms:
    """Per-pair values and gradient coefficients, one row per parameter set.

    Attributes:
        value: (P, n_t) float64 term of each pair.
        alpha, beta, delta: (P, n_t) float64 gradient coefficients (1/Angstrom^2 times
            the value unit), or ``None`` without derivatives.
    """

    value: NDArray[np.float64]
    alpha: NDArray[np.float64] | None
    beta: NDArray[np.float64] | None
    delta: NDArray[np.float64] | None


def angular_terms(plan: AngularPlan, block: Block, t: Triplets, cutoff: Cutoff, derivatives: bool) -> AngularTerms:
    """Evaluate every pair term for each distinct (type, eta, zeta, gamma)."""
    ra, rb = block.r[t.e1], block.r[t.e2]
    fa, fb = block.fc[t.e1], block.fc[t.e2]
    inv_ab = 1.0 / (ra * rb)
    cos = t.dot * inv_ab
    n_p, n_t = len(plan.eta), len(ra)
    value = np.empty((n_p, n_t))
    alpha = np.empty((n_p, n_t)) if derivatives else None
    beta = np.empty((n_p, n_t)) if derivatives else None
    delta = np.empty((n_p, n_t)) if derivatives else None
    rjk = np.sqrt(t.rjk2)
    fjk, dfjk = cutoff.evaluate(rjk)
    radial2 = ra * ra + rb * rb
    shared = {}
    for p in range(n_p):
        g4, eta = bool(plan.g4[p]), float(plan.eta[p])
        if (g4, eta) not in shared:
            shared[(g4, eta)] = _radial_part(g4, eta, block, t, radial2, rjk, fa, fb, fjk, dfjk, derivatives)
        ef, ua, w, ub = shared[(g4, eta)]
        zeta, gamma = float(plan.zeta[p]), float(plan.gamma[p])
        base = 1.0 + gamma * cos
        power = _power(base, zeta - 1.0)
        prefactor = 2.0 ** (1.0 - zeta)
        value[p] = prefactor * power * base * ef
        if derivatives:
            angle = (prefactor * zeta * gamma) * power * ef  # dT/dcos times E F
            term = prefactor * power * base  # T
            alpha[p] = angle * (-cos / (ra * ra)) + term * ua  # type: ignore[index]
            beta[p] = angle * inv_ab + term * w  # type: ignore[index]
            delta[p] = angle * (-cos / (rb * rb)) + term * ub  # type: ignore[index]
    return AngularTerms(value, alpha, beta, delta)


def _power(base: NDArray[np.float64], exponent: float) -> NDArray[np.float64]:
    if exponent == 0.0:
        return np.ones_like(base)
    if exponent == 1.0:
        return base
    if exponent == 3.0:
        return base * base * base
    return np.power(np.maximum(base, 0.0), exponent)


def _radial_part(
    g4: bool,
    eta: float,
    block: Block,
    t: Triplets,
    radial2: NDArray[np.float64],
    rjk: NDArray[np.float64],
    fa: NDArray[np.float64],
    fb: NDArray[np.float64],
    fjk: NDArray[np.float64],
    dfjk: NDArray[np.float64],
    derivatives: bool,
) -> tuple[NDArray[np.float64], ...]:
    """Return E F and the radial gradient coefficients E dF-style (a-, shared-, b-) terms."""
    if g4:
        e = np.exp(-eta * (radial2 + t.rjk2))
        f = fa * fb * fjk
    else:
        e = np.exp(-eta * radial2)
        f = fa * fb
    ef = e * f
    if not derivatives:
        return ef, ef, ef, ef
    ra, rb = block.r[t.e1], block.r[t.e2]
    da = block.dfc[t.e1] * fb / ra  # d fc(a) / da / a, times fc(b)
    db = fa * block.dfc[t.e2] / rb
    if g4:
        da = da * fjk
        db = db * fjk
        dc = fa * fb * dfjk / np.where(rjk > 0, rjk, 1.0)
        ua = e * (-4.0 * eta * f + da + dc)
        ub = e * (-4.0 * eta * f + db + dc)
        w = e * (2.0 * eta * f - dc)
    else:
        ua = e * (-2.0 * eta * f + da)
        ub = e * (-2.0 * eta * f + db)
        w = np.zeros_like(e)
    return ef, ua, w, ub


def pair_operator(t: Triplets, n_e: int, n_p: int, data: NDArray[np.float64]) -> sp.csr_matrix:
    """(P n_e, P n_e) block-diagonal CSR; block p has ``data[p]`` at (e1, e2)."""
    n_t = len(t.e1)
    indptr = np.empty(n_p * n_e + 1, np.int64)
    single = np.searchsorted(t.e1, np.arange(n_e))
    indptr[:-1] = (single[None, :] + n_t * np.arange(n_p)[:, None]).ravel()
    indptr[-1] = n_p * n_t
    indices = (t.e2[None, :] + n_e * np.arange(n_p)[:, None]).ravel()
    return sp.csr_matrix((data.ravel(), indices, indptr), shape=(n_p * n_e, n_p * n_e))
