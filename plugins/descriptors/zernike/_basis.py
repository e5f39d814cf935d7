"""The tables both ``zernike`` kernels read: which (n, l) features, which m, and polynomial coefficients.

3D Zernike functions (Novotni and Klein, Comput.-Aided Des. 36, 1047 (2004); in
fingerprints, Khorshidi and Peterson, Comput. Phys. Commun. 207, 310 (2016)), in Amp's
normalisation, written as polynomials in the scaled neighbour vector d = r_ij / Rc
(s = |d|^2):

    Z_nlm(d) = R_nl(|d|) Y_lm(d / |d|) = P_nl(s) * K_lm * (-1)^m (x + i y)^m * Pi_lm(z, s)

* R_nl(rho) = sqrt(2n + 3) sum_{t=0}^{k} (-1)^(k-t) C(k, k-t) C(n - k + t + 1/2, k) rho^(l + 2t),
  k = (n - l) / 2, with generalised binomials C(x, k); so P_nl(s) = sum_t a_t s^t.
* Y_lm: orthonormal spherical harmonics with the Condon-Shortley phase (scipy's
  ``sph_harm``), K_lm = sqrt((2l + 1) / (4 pi) (l - m)! / (l + m)!), and
  Pi_lm(z, s) = |d|^(l-m) P_l^(m)(z / |d|) (the m-th derivative of the Legendre
  polynomial) by Pi_mm = (2m - 1)!!, Pi_{m+1,m} = (2m + 1) z Pi_mm,
  (l - m) Pi_lm = (2l - 1) z Pi_{l-1,m} - (l + m - 1) s Pi_{l-2,m}.

The fingerprint of a centre has one feature per (n, l), 0 <= l <= n <= nmax, n - l even,
in that order (n outer, l inner, as Amp):
G_nl = sum_{m=-l}^{l} |c_nlm|^2 = |c_nl0|^2 + 2 sum_{m=1}^{l} |c_nlm|^2, with
c_nlm = sum over neighbour images j of w(centre, element j) fc(r_ij) Z_nlm(r_ij / Rc)^*.
Phases (the (-1)^m, the complex conjugate) drop out of |c|^2 and are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


def feature_list(nmax: int) -> list[tuple[int, int]]:
    """Return the (n, l) pairs of the features, in fingerprint order."""
    return [(n, l) for n in range(nmax + 1) for l in range(n + 1) if (n - l) % 2 == 0]


def n_features(nmax: int) -> int:
    """Return the fingerprint length for ``nmax``: (nmax/2 + 1)(nmax/2 + 1) even, (nmax+1)(nmax+3)/4 odd."""
    return len(feature_list(nmax))


def _binomial(x: float, k: int) -> float:
    """Generalised binomial C(x, k) = x (x-1) ... (x-k+1) / k! for real x and integer k >= 0."""
    out = 1.0
    for i in range(k):
        out *= (x - i) / (i + 1)
    return out


def radial_coefficients(n: int, l: int) -> list[float]:
    """Return a_0..a_k with R_nl(rho) = rho^l sum_t a_t rho^(2t) (Amp's radial normalisation)."""
    k = (n - l) // 2
    scale = math.sqrt(2.0 * n + 3.0)
    return [
        scale * (-1.0) ** (k - t) * _binomial(k, k - t) * _binomial(n - k + t + 0.5, k) for t in range(k + 1)
    ]


def harmonic_norm(l: int, m: int) -> float:
    """Return K_lm = sqrt((2l + 1) / (4 pi) * (l - m)! / (l + m)!)."""
    return math.sqrt((2.0 * l + 1.0) / (4.0 * math.pi) * math.factorial(l - m) / math.factorial(l + m))


@dataclass(frozen=True)
class Basis:
    """Feature and term tables for one ``nmax`` (T terms (n, l, m >= 0), F features (n, l)).

    Attributes:
        nmax: largest n.
        n: (F,) int64 n of each feature; ``l`` (F,) its l.
        radial: (F, nmax // 2 + 1) float64 coefficients a_t of P_nl(s), zero-padded.
        term_feature: (T,) int64 feature of each term; ``term_l``, ``term_m`` its l and m.
        term_scale: (T,) float64 K_lm^2 times 1 (m = 0) or 2 (m > 0): the weight of
            |P Q Pi|^2 in G_nl.
        term_norm: (T,) float64 K_lm.
        sum_terms: (T, F) float64 0/1 matrix adding terms into their feature.
    """

    nmax: int
    n: NDArray[np.int64]
    l: NDArray[np.int64]
    radial: NDArray[np.float64]
    term_feature: NDArray[np.int64]
    term_l: NDArray[np.int64]
    term_m: NDArray[np.int64]
    term_norm: NDArray[np.float64]
    term_scale: NDArray[np.float64]
    sum_terms: NDArray[np.float64]

    @property
    def n_features(self) -> int:
        return len(self.n)


def make_basis(nmax: int) -> Basis:
    """Build the tables for ``nmax`` >= 0."""
    features = feature_list(nmax)
    radial = np.zeros((len(features), nmax // 2 + 1))
    terms: list[tuple[int, int, int]] = []
    for f, (n, l) in enumerate(features):
        coefficients = radial_coefficients(n, l)
        radial[f, : len(coefficients)] = coefficients
        terms.extend((f, l, m) for m in range(l + 1))
    term = np.array(terms, dtype=np.int64).reshape(-1, 3)
    norm = np.array([harmonic_norm(l, m) for _, l, m in terms])
    scale = norm * norm * np.where(term[:, 2] == 0, 1.0, 2.0)
    sum_terms = np.zeros((len(terms), len(features)))
    sum_terms[np.arange(len(terms)), term[:, 0]] = 1.0
    return Basis(
        nmax,
        np.array([n for n, _ in features], dtype=np.int64),
        np.array([l for _, l in features], dtype=np.int64),
        radial,
        term[:, 0].copy(),
        term[:, 1].copy(),
        term[:, 2].copy(),
        norm,
        scale,
        sum_terms,
    )
