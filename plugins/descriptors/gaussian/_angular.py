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
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from amp_plugins.descriptors.gaussian._params import Cutoff
from amp_plugins.descriptors.gaussian._plan import AngularPlan

if TYPE_CHECKING:
    from amp_core.errors import DataError
    from amp_plugins.descriptors.gaussian._neighbors import Neighbours

SINGULAR_BASE = 1e-12
"""With zeta < 1, a contributing pair whose 1 + gamma cos(theta) is at most this has no
finite derivative (it is 0 for an exactly collinear triplet; round-off leaves ~1e-16).
Both kernels refuse such pairs when derivatives are asked for."""


class SingularTriplet(Exception):
    """A contributing neighbour pair (local entries ``e1``, ``e2``) where a zeta < 1 term has no derivative."""

    def __init__(self, e1: int, e2: int, zeta: float, gamma: float) -> None:
        super().__init__(e1, e2, zeta, gamma)
        self.e1, self.e2, self.zeta, self.gamma = e1, e2, zeta, gamma


def singular_error(neighbours: Neighbours, entry_j: int, entry_k: int, zeta: float, gamma: float) -> DataError:
    """Return the error naming the three atoms of a singular triplet (``entry_j``, ``entry_k``: entries of ``neighbours``)."""
    from amp_core.errors import DataError

    def atom(entry: int) -> str:
        shift = tuple(int(x) for x in neighbours.shift[entry])
        text = f"{int(neighbours.neighbour[entry])}"
        return text if not any(shift) else f"{text} (its periodic image shifted by {shift} cell vectors)"

    i = int(neighbours.centre[entry_j])
    side = "on opposite sides of" if gamma > 0 else "on the same side of"
    return DataError(
        f"atoms {atom(entry_j)} and {atom(entry_k)} lie on one line {side} centre atom {i}: a G4/G5 symmetry "
        f"function with zeta = {zeta:g} < 1 and gamma = {gamma:g} has no finite derivative where "
        "1 + gamma cos(theta) = 0, so fingerprint derivatives (forces) are undefined for this structure; move "
        "the atoms off the line (e.g. rattle them), use zeta >= 1 for such functions, or train on energies only"
    )


@dataclass
class Block:
    """Neighbour images of a block of centres of one element (local indices).

    Attributes:
        vectors: (n_e, 3) float64 r_ij of each entry, Angstrom.
        r: (n_e,) float64 |r_ij|, Angstrom.
        fc: (n_e,) float64 cutoff value; dfc: (n_e,) its derivative, 1/Angstrom (None for values only).
        species: (n_e,) int64 species index of the neighbour.
        starts: (n_c + 1,) int64; centre c's entries are ``starts[c]:starts[c + 1]``.
        n_species: number of species the descriptor knows.
    """

    vectors: NDArray[np.float64]
    r: NDArray[np.float64]
    fc: NDArray[np.float64]
    dfc: NDArray[np.float64] | None
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
        rjk2: (n_t,) float64 |b - a|^2, Angstrom^2.
    """

    e1: NDArray[np.int64]
    e2: NDArray[np.int64]
    rjk2: NDArray[np.float64]


def find_triplets(block: Block, rc: float, keep_far: bool) -> Triplets:
    """Return every neighbour pair of each centre; drop r_jk >= rc unless ``keep_far`` (G5).

    One batched matrix product gives all |b - a|^2 at once: with u_j = (a_j, |a_j|^2, 1)
    and w_k = (-2 a_k, 1, |a_k|^2), u_j . w_k = |a_k - a_j|^2. Padding slots get a huge
    value so they never pass the cutoff test.
    """
    counts = np.diff(block.starts)
    n_c = len(counts)
    width = int(counts.max()) if n_c else 0
    rank = np.arange(block.n_entries) - np.repeat(block.starts[:-1], counts)
    slot = np.repeat(np.arange(n_c) * width, counts) + rank  # flat (centre, rank) of each entry
    r2 = block.r * block.r
    left = np.zeros((n_c * width, 5))
    right = np.zeros((n_c * width, 5))
    left[:, 4] = 1.0
    right[:, 4] = 1e30
    left[slot, :3] = block.vectors
    left[slot, 3] = r2
    right[slot, :3] = -2.0 * block.vectors
    right[slot, 3] = 1.0
    right[slot, 4] = r2
    rjk2 = left.reshape(n_c, width, 5) @ right.reshape(n_c, width, 5).transpose(0, 2, 1)
    upper = np.triu(np.ones((width, width), dtype=bool), 1)
    if keep_far:
        mask = upper & (rjk2 < 1e29)
    else:
        mask = upper & (rjk2 < rc * rc)
    flat = np.flatnonzero(mask)
    row = flat // width  # centre * width + j
    centre = row // width
    entry = np.full(n_c * width, -1, np.int64)
    entry[slot] = np.arange(block.n_entries)
    e1 = entry[row]
    e2 = entry[flat - row * width + centre * width]
    return Triplets(e1, e2, np.maximum(rjk2.ravel()[flat], 0.0))


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


def angular_terms(
    plan: AngularPlan, block: Block, t: Triplets, cutoff: Cutoff, derivatives: bool
) -> AngularTerms:
    """Evaluate every pair term for each distinct (type, eta, zeta, gamma)."""
    ra, rb = block.r[t.e1], block.r[t.e2]
    ra2, rb2 = ra * ra, rb * rb
    inv_ab = 1.0 / (ra * rb)
    cos = (0.5 * inv_ab) * (ra2 + rb2 - t.rjk2)
    n_p, n_t = len(plan.eta), len(ra)
    value = np.empty((n_p, n_t))
    alpha = np.empty((n_p, n_t)) if derivatives else None
    beta = np.empty((n_p, n_t)) if derivatives else None
    delta = np.empty((n_p, n_t)) if derivatives else None
    geometry = _Geometry(block, t, ra, rb, ra2 + rb2, cutoff, derivatives)
    if derivatives:
        cos_a, cos_b = cos / ra2, cos / rb2
    shared: dict[tuple[bool, float], tuple[NDArray[np.float64], ...]] = {}
    for p in range(n_p):
        key = (bool(plan.g4[p]), float(plan.eta[p]))
        if key not in shared:
            shared[key] = geometry.radial(*key)
        ef, ua, w, ub = shared[key]
        zeta, gamma = float(plan.zeta[p]), float(plan.gamma[p])
        prefactor = 2.0 ** (1.0 - zeta)
        base = 1.0 + cos if gamma == 1.0 else (1.0 - cos if gamma == -1.0 else 1.0 + gamma * cos)
        if zeta < 1.0:
            base = np.maximum(base, 0.0)  # round-off past a collinear line: base^zeta has no real value below 0
            if derivatives:
                _check_singular(base, geometry.weight(key[0]), t, zeta, gamma)
        kp = (
            prefactor if zeta == 1.0 else prefactor * _power(base, zeta - 1.0)
        )  # K (1 + gamma cos)^(zeta - 1)
        term = kp * base  # K T
        np.multiply(term, ef, out=value[p])
        if derivatives:
            angle = (zeta * gamma) * (kp * ef)  # K dT/dcos E F
            np.subtract(term * ua, angle * cos_a, out=alpha[p])  # type: ignore[index]
            np.add(term * w, angle * inv_ab, out=beta[p])  # type: ignore[index]
            np.subtract(term * ub, angle * cos_b, out=delta[p])  # type: ignore[index]
    return AngularTerms(value, alpha, beta, delta)


def _power(base: NDArray[np.float64], exponent: float) -> NDArray[np.float64] | float:
    if exponent == 1.0:
        return base
    if exponent == 2.0:
        return base * base
    if exponent == 3.0:
        return base * base * base
    if exponent < 0.0:  # zeta < 1: as the compiled kernel, finite even where 1 + gamma cos = 0
        return np.power(np.maximum(base, np.finfo(np.float64).tiny), exponent)
    return np.power(np.maximum(base, 0.0), exponent)


def _check_singular(
    base: NDArray[np.float64], weight: NDArray[np.float64], t: Triplets, zeta: float, gamma: float
) -> None:
    """Raise :class:`SingularTriplet` for the first contributing pair with 1 + gamma cos <= SINGULAR_BASE."""
    bad = np.flatnonzero((base <= SINGULAR_BASE) & (weight > 0.0))
    if len(bad):
        raise SingularTriplet(int(t.e1[bad[0]]), int(t.e2[bad[0]]), zeta, gamma)


class _Geometry:
    """Radial factors of the pair terms, shared by parameter sets with one (type, eta)."""

    def __init__(self, block: Block, t: Triplets, ra, rb, radial2, cutoff: Cutoff, derivatives: bool) -> None:  # noqa: ANN001
        self.derivatives = derivatives
        self.radial2, self.rjk2 = radial2, t.rjk2
        fa, fb = block.fc[t.e1], block.fc[t.e2]
        self.fab = fa * fb
        rjk = np.sqrt(t.rjk2)
        self.fjk, dfjk = cutoff.evaluate(rjk, derivatives)
        if derivatives:
            self.da = block.dfc[t.e1] * fb / ra  # fc'(a) fc(b) / a
            self.db = fa * block.dfc[t.e2] / rb  # fc(a) fc'(b) / b
            self.dc = self.fab * dfjk / np.where(rjk > 0, rjk, 1.0)  # fc(a) fc(b) fc'(c) / c

    def weight(self, g4: bool) -> NDArray[np.float64]:
        """Return the cutoff product F of each pair (0 where the pair does not contribute)."""
        return self.fab * self.fjk if g4 else self.fab

    def radial(self, g4: bool, eta: float) -> tuple[NDArray[np.float64], ...]:
        """Return E F and the coefficients ua, w, ub (E times radial gradient terms)."""
        if g4:
            e = np.exp(-eta * (self.radial2 + self.rjk2))
            f = self.fab * self.fjk
        else:
            e = np.exp(-eta * self.radial2)
            f = self.fab
        ef = e * f
        if not self.derivatives:
            return ef, ef, ef, ef
        if g4:
            common = -4.0 * eta * f + self.dc
            ua = e * (common + self.da * self.fjk)
            ub = e * (common + self.db * self.fjk)
            w = e * (2.0 * eta * f - self.dc)
        else:
            ua = e * (-2.0 * eta * f + self.da)
            ub = e * (-2.0 * eta * f + self.db)
            w = np.zeros_like(e)
        return ef, ua, w, ub


class PairOperators:
    """Sparse sums over pairs, split by the partner's species, for all parameter sets at once.

    Entries must be sorted by species within each centre, so that for a fixed e1 the
    partners e2 > e1 come in species order. With ``data`` of shape (P, n_t):

    * ``rows(data, x)[p, e, Y]`` = sum over pairs (e, e2), species(e2) = Y, of data * x[e2];
    * ``cols(data, x)[p, e, Y]`` = sum over pairs (e1, e), species(e1) = Y, of data * x[e1];

    where ``x`` is (n_e,) or (n_e, 3); results are (P, n_e, n_species[, 3]).
    """

    def __init__(self, t: Triplets, species: NDArray[np.int64], n_p: int, n_species: int) -> None:
        n_e, n_t = len(species), len(t.e1)
        self.shape = (n_p, n_e, n_species)
        offsets = np.arange(n_p)[:, None]
        key = t.e1 * n_species + species[t.e2]  # sorted: entries are in species order per centre
        single = np.searchsorted(key, np.arange(n_e * n_species))
        indptr = np.append((single[None, :] + offsets * n_t).ravel(), n_p * n_t)
        indices = (t.e2[None, :] + offsets * n_e).ravel()
        size = n_p * n_e
        self._rows = sp.csr_matrix((np.zeros(n_p * n_t), indices, indptr), shape=(size * n_species, size))
        first = single[::n_species][None, :] + offsets * n_t
        indptr = np.append(first.ravel(), n_p * n_t)
        indices = ((t.e2 * n_species + species[t.e1])[None, :] + offsets * (n_e * n_species)).ravel()
        self._cols = sp.csr_matrix((np.zeros(n_p * n_t), indices, indptr), shape=(size, size * n_species))
        self.n_p = n_p

    def rows(self, data: NDArray[np.float64], x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Sum data * x[e2] into (e1, species(e2)) for every parameter set."""
        self._rows.data = data.ravel()
        return np.asarray(self._rows @ self._tile(x)).reshape(self.shape + x.shape[1:])

    def cols(self, data: NDArray[np.float64], x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Sum data * x[e1] into (e2, species(e1)) for every parameter set."""
        self._cols.data = data.ravel()
        return np.asarray(self._cols.T @ self._tile(x)).reshape(self.shape + x.shape[1:])

    def _tile(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.tile(x, (self.n_p,) + (1,) * (x.ndim - 1))
