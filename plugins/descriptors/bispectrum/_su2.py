"""SU(2) algebra of the bispectrum: Wigner matrices of neighbour images, Clebsch-Gordan tables.

A neighbour at r = (x, y, z), |r| < Rc, maps to a point on the 3-sphere, i.e. a rotation
by the angle omega = arcsin(|r| / Rc) about the axis r / |r| (Amp's mapping). Its
Cayley-Klein parameters are

    a = cos(omega / 2) - i (z / r) sin(omega / 2),   b = -(y + i x) / r sin(omega / 2),

and the spin-j representation matrix (Wigner's U^j, 2j + 1 square) follows from the
recursion over half-integer steps (as in Thompson et al., J. Comput. Phys. 285, 316
(2015)), in integer indices J = 2j, p = j + m, q = j + m':

    U^J[p, q] = (a sqrt(p) U^{J-1}[p-1, q-1] + b sqrt(J-p) U^{J-1}[p, q-1]) / sqrt(q),   q >= 1,
    U^J[p, 0] = (-conj(b) sqrt(p) U^{J-1}[p-1, 0] + conj(a) sqrt(J-p) U^{J-1}[p, 0]) / sqrt(J),

with U^0 = 1 (entries outside 0..J-1 are zero). This is the representation on the
homogeneous polynomials x^(j+m) y^(j-m) / sqrt((j+m)! (j-m)!), unitary and in the
Condon-Shortley basis that the Clebsch-Gordan coefficients below assume.

All matrices of J = 0..2 jmax are kept in one flat complex vector per neighbour ("U
vector"): block J starts at ``offsets[J]`` and holds U^J row-major ((J+1)^2 entries).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray


def block_offsets(two_jmax: int) -> NDArray[np.int64]:
    """Return (two_jmax + 2,) int64: block J of the U vector is ``offsets[J]:offsets[J + 1]``."""
    sizes = np.arange(1, two_jmax + 2, dtype=np.int64) ** 2
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def cayley_klein(
    vectors: NDArray[np.float64], rc: float, derivatives: bool
) -> tuple[
    NDArray[np.complex128],
    NDArray[np.complex128],
    NDArray[np.complex128] | None,
    NDArray[np.complex128] | None,
]:
    """Return a, b (n,) complex and, with ``derivatives``, da/dr, db/dr (n, 3) complex (1/Angstrom).

    Args:
        vectors: (n, 3) float64 neighbour vectors r, Angstrom, 0 < |r| < rc.
        rc: cutoff radius, Angstrom.
    """
    x, y, z = vectors[:, 0], vectors[:, 1], vectors[:, 2]
    r = np.sqrt(x * x + y * y + z * z)
    s = r / rc  # sin(omega)
    c = np.sqrt(np.maximum(1.0 - s * s, 0.0))  # cos(omega)
    ch = np.sqrt(0.5 * (1.0 + c))  # cos(omega / 2)
    sh = np.sqrt(0.5 * (1.0 - c))  # sin(omega / 2)
    a = ch - 1j * (z / r) * sh
    b = -(y + 1j * x) / r * sh
    if not derivatives:
        return a, b, None, None
    unit = vectors / r[:, None]
    # d cos(omega)/dr = -s / (c rc); d ch = -(1/(4 ch)) ... written through omega:
    # d omega / dr = 1 / (rc c); d ch / d omega = -sh / 2; d sh / d omega = ch / 2.
    domega = 1.0 / (rc * c)
    dch = (-0.5 * sh * domega)[:, None] * unit
    dsh = (0.5 * ch * domega)[:, None] * unit
    # d (x_k / r) / d x_l = (delta_kl - u_k u_l) / r
    eye = np.eye(3)[None, :, :]
    dunit = (eye - unit[:, :, None] * unit[:, None, :]) / r[:, None, None]  # [n, k, l]
    da = dch - 1j * (dunit[:, 2, :] * sh[:, None] + unit[:, 2:3] * dsh)
    dyx = dunit[:, 1, :] + 1j * dunit[:, 0, :]
    b_unit = unit[:, 1] + 1j * unit[:, 0]
    db = -(dyx * sh[:, None] + b_unit[:, None] * dsh)
    return a, b, da, db


def wigner_matrices(
    a: NDArray[np.complex128],
    b: NDArray[np.complex128],
    two_jmax: int,
    da: NDArray[np.complex128] | None = None,
    db: NDArray[np.complex128] | None = None,
) -> tuple[NDArray[np.complex128], NDArray[np.complex128] | None]:
    """Return the U vectors (n, size) complex and, given da, db (n, 3), their derivatives (n, 3, size).

    ``size = offsets[-1]`` of :func:`block_offsets`; see the module docstring for the layout.
    The entries of U^J are polynomials in (a, b, conj a, conj b) whose partial derivatives
    are entries of U^{J-1}:

        dU^J[p, q]/da = sqrt(p q) U^{J-1}[p-1, q-1],      dU^J[p, q]/db = sqrt((J-p) q) U^{J-1}[p, q-1],
        dU^J[p, q]/da* = sqrt((J-p)(J-q)) U^{J-1}[p, q],  dU^J[p, q]/db* = -sqrt(p (J-q)) U^{J-1}[p-1, q],

    so dU^J = da dU/da + db dU/db + conj(da) dU/da* + conj(db) dU/db*.
    """
    offsets = block_offsets(two_jmax)
    n = len(a)
    u = np.zeros((n, int(offsets[-1])), dtype=np.complex128)
    u[:, 0] = 1.0
    du = None
    if da is not None and db is not None:
        du = np.zeros((n, 3, int(offsets[-1])), dtype=np.complex128)
        chain = np.stack([da, db, np.conj(da), np.conj(db)], axis=2)  # (n, 3, 4)
    ac, bc = np.conj(a), np.conj(b)
    for big in range(1, two_jmax + 1):
        prev = u[:, offsets[big - 1] : offsets[big]].reshape(n, big, big)
        new = np.zeros((n, big + 1, big + 1), dtype=np.complex128)
        p = np.arange(big + 1)
        rp = np.sqrt(p[1:])[None, :, None]  # sqrt(p) for p >= 1
        rq = np.sqrt(big - p[:-1])[None, :, None]  # sqrt(J - p) for p <= J - 1
        inv_q = 1.0 / np.sqrt(np.arange(1, big + 1))[None, None, :]
        # q >= 1 columns come from column q - 1 of U^{J-1}
        new[:, 1:, 1:] += a[:, None, None] * rp * prev
        new[:, :-1, 1:] += b[:, None, None] * rq * prev
        new[:, :, 1:] *= inv_q
        new[:, 1:, 0] = -bc[:, None] * rp[:, :, 0] * prev[:, :, 0]
        new[:, :-1, 0] += ac[:, None] * rq[:, :, 0] * prev[:, :, 0]
        new[:, :, 0] /= math.sqrt(big)
        u[:, offsets[big] : offsets[big + 1]] = new.reshape(n, (big + 1) ** 2)
        if du is not None:
            root = np.sqrt(np.arange(big + 1))
            back = root[::-1]  # sqrt(J - p)
            partial = np.zeros((n, 4, big + 1, big + 1), dtype=np.complex128)
            partial[:, 0, 1:, 1:] = np.outer(root[1:], root[1:]) * prev
            partial[:, 1, :-1, 1:] = np.outer(back[:-1], root[1:]) * prev
            partial[:, 2, :-1, :-1] = np.outer(back[:-1], back[:-1]) * prev
            partial[:, 3, 1:, :-1] = -np.outer(root[1:], back[:-1]) * prev
            du[:, :, offsets[big] : offsets[big + 1]] = chain @ partial.reshape(n, 4, (big + 1) ** 2)
    return u, du


def clebsch_gordan(tj1: int, tm1: int, tj2: int, tm2: int, tj: int, tm: int) -> float:
    """Return <j1 m1 j2 m2 | j m> (Condon-Shortley phases; Racah's formula, exact until the square root).

    Arguments are twice the (integer or half-integer) quantum numbers: ``tj1 = 2 j1`` etc.
    """
    if tm1 + tm2 != tm or abs(tm1) > tj1 or abs(tm2) > tj2 or abs(tm) > tj:
        return 0.0
    if tj > tj1 + tj2 or tj < abs(tj1 - tj2) or (tj1 + tj2 + tj) % 2 or (tj1 + tm1) % 2 or (tj2 + tm2) % 2:
        return 0.0
    f = math.factorial
    # integer combinations (all even sums and differences halved)
    a, b, c = (tj1 + tj2 - tj) // 2, (tj1 - tj2 + tj) // 2, (-tj1 + tj2 + tj) // 2
    j1p, j1m, j2p, j2m = (tj1 + tm1) // 2, (tj1 - tm1) // 2, (tj2 + tm2) // 2, (tj2 - tm2) // 2
    jp, jm = (tj + tm) // 2, (tj - tm) // 2
    prefactor = Fraction((tj + 1) * f(a) * f(b) * f(c), f((tj1 + tj2 + tj) // 2 + 1))
    prefactor *= f(j1p) * f(j1m) * f(j2p) * f(j2m) * f(jp) * f(jm)
    d1, d2 = (tj - tj2 + tm1) // 2, (tj - tj1 - tm2) // 2
    kmin, kmax = max(0, -d1, -d2), min(a, j1m, j2p)
    # the alternating sum over k of 1 / (product of factorials), exactly, over a common denominator
    denominators = [
        f(k) * f(a - k) * f(j1m - k) * f(j2p - k) * f(d1 + k) * f(d2 + k) for k in range(kmin, kmax + 1)
    ]
    if not denominators:
        return 0.0
    common = math.lcm(*denominators)
    numerator = sum((-1) ** (kmin + n) * (common // d) for n, d in enumerate(denominators))
    if numerator == 0:
        return 0.0
    return math.copysign(
        math.sqrt(float(prefactor * Fraction(numerator * numerator, common * common))), numerator
    )


@dataclass(frozen=True)
class Feature:
    """One bispectrum component B_{j1 j1 j} (Amp keeps j2 = j1), as the two indices 2 j1 and j."""

    two_j1: int
    j: int


def features(jmax: float) -> tuple[Feature, ...]:
    """Return Amp's features in Amp's order: 2 j1 = 0..2 jmax, then j = 0..min(2 j1, jmax) (integers)."""
    two = int(round(2 * jmax))
    return tuple(Feature(t, j) for t in range(two + 1) for j in range(int(min(t, jmax)) + 1))
