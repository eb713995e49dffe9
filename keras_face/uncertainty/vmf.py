"""The von Mises-Fisher distribution on the sphere, computed stably in float32 `keras.ops`.

The density of a vMF on the unit sphere `S^(d-1)` with mean direction `mu` and concentration
`kappa` is `C_d(kappa) exp(kappa mu^T z)`, with

`C_d(kappa) = kappa^nu / ((2 pi)^(nu + 1) I_nu(kappa))`, `nu = d/2 - 1`,

where `I_nu` is the modified Bessel function of the first kind. Neither `I_nu` nor its
exponentially scaled form can be evaluated in float32 (or float64) over the range that
face embeddings need: at `d = 512`, `I_255(kappa)` underflows below `kappa ~ 13` and
overflows above `kappa ~ 757` in float64. This module evaluates `log C_d` with the uniform
(Debye) asymptotic expansion of `I_nu` for large order, written so that `nu log kappa`
cancels analytically. With `s = sqrt(nu^2 + kappa^2)` and `t = nu / s`:

`log C_d(kappa) = nu log(nu + s) - s + (1/2) log s - (nu + 1/2) log(2 pi) - log S(t)`,
`S(t) = sum_(k=0..4) u_k(t) / nu^k`

(Abramowitz and Stegun 9.7.7). It is finite for every `kappa >= 0` (at `kappa = 0` it is
Stirling's series of `-log |S^(d-1)|`), accurate to about 1e-6 nats at `d = 16` and to
1e-9 for `d >= 64`, and its float32 evaluation stays within 5e-7 relative error from
`kappa = 1e-6` to `1e9`. Orders below 7 (`d < 16`) are refused: the series is not accurate
enough there.

The mean resultant length `A_d(kappa) = I_(nu+1)(kappa) / I_nu(kappa) = -d/dkappa log C_d`
is computed from the closed-form derivative of the same expansion, without subtracting
two large logarithms.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_face.heads import MarginHead

# Smallest Bessel order for which the 4-term Debye series is accurate to ~1e-6 nats.
MIN_ORDER = 7
MIN_DIM = 2 * MIN_ORDER + 2
# log kappa above this would make kappa^2 overflow float32 in sqrt(nu^2 + kappa^2).
MAX_LOG_KAPPA = 40.0

# Coefficients of the Debye polynomials u_k(t) = t^k * P_k(t^2) (A&S 9.3.9, 9.3.10),
# as (P_k coefficients in increasing powers of t^2, denominator).
_DEBYE_POLYNOMIALS = (
    ((3.0, -5.0), 24.0),
    ((81.0, -462.0, 385.0), 1152.0),
    ((30375.0, -369603.0, 765765.0, -425425.0), 414720.0),
    ((4465125.0, -94121676.0, 349922430.0, -446185740.0, 185910725.0), 39813120.0),
)


def _polynomial(coefficients, x):
    """`sum_i c_i x^i` (Horner) and its derivative in `x`."""
    value = ops.zeros_like(x) + coefficients[-1]
    derivative = ops.zeros_like(x)
    for coefficient in reversed(coefficients[:-1]):
        derivative = derivative * x + value
        value = value * x + coefficient
    return value, derivative


def _debye_series(t, order, terms):
    """`S(t) = sum_k u_k(t) / nu^k` and `dS/dt`, for `t` in (0, 1]."""
    t2 = ops.square(t)
    series = ops.ones_like(t)
    series_derivative = ops.zeros_like(t)
    t_power = ops.ones_like(t)
    for k, (coefficients, denominator) in enumerate(_DEBYE_POLYNOMIALS[:terms], start=1):
        polynomial, polynomial_derivative = _polynomial(coefficients, t2)
        factor = 1.0 / (denominator * order**k)
        # u_k = t^k P(t^2); du_k/dt = k t^(k-1) P + 2 t^(k+1) P'.
        derivative = k * t_power * polynomial + 2.0 * t_power * t2 * polynomial_derivative
        t_power = t_power * t
        series = series + factor * t_power * polynomial
        series_derivative = series_derivative + factor * derivative
    return series, series_derivative


def validate_dim(dim):
    """Return `dim` as an int, refusing dimensions outside the stable formula's range."""
    if isinstance(dim, bool) or not isinstance(dim, int) and not hasattr(dim, "__index__"):
        raise ValueError(f"dim must be an integer. Received: dim={dim!r}")
    dim = int(dim)
    if dim < MIN_DIM:
        raise ValueError(
            f"The stable vMF normaliser needs dim >= {MIN_DIM} (Bessel order d/2 - 1 >= "
            f"{MIN_ORDER}); below that the Debye series is not accurate. Received: dim={dim}"
        )
    return dim


def _validate_order(order):
    order = float(order)
    if not math.isfinite(order) or order < MIN_ORDER:
        raise ValueError(
            f"The Debye expansion needs an order >= {MIN_ORDER}. Received: order={order}"
        )
    return order


def _validate_terms(terms):
    if isinstance(terms, bool) or not isinstance(terms, int) or not 0 <= terms <= 4:
        raise ValueError(f"terms must be an integer from 0 to 4. Received: terms={terms!r}")
    return terms


def _debye_parts(kappa, order, terms):
    """`s`, `t`, `S(t)` and `dS/dt` for float32 `kappa`."""
    s = ops.sqrt(order * order + ops.square(kappa))
    t = order / s
    series, series_derivative = _debye_series(t, order, terms)
    return s, t, series, series_derivative


def log_bessel_iv(order, x, terms=4):
    """Logarithm of the modified Bessel function `I_nu(x)`, by the Debye expansion.

    `log I_nu(x) = s + nu log(x / (nu + s)) - (1/2) log(2 pi s) + log S(nu / s)` with
    `s = sqrt(nu^2 + x^2)` (Abramowitz and Stegun 9.7.7). Finite for `x > 0`; `-inf` at
    `x = 0`.

    Args:
        order: float. The order `nu`, at least 7.
        x: float tensor of non-negative arguments.
        terms: int. Number of correction terms of the series, 0 to 4. Defaults to `4`.

    Returns:
        float32 tensor, the shape of `x`.

    Example:
        ```python
        keras_face.uncertainty.log_bessel_iv(255.0, [100.0, 1000.0])  # -154.557, 963.272
        ```

    References:
        - [Abramowitz and Stegun, Handbook of Mathematical Functions, 9.7.7](https://personal.math.ubc.ca/~cbm/aands/page_378.htm)
    """
    order = _validate_order(order)
    terms = _validate_terms(terms)
    x = ops.cast(x, "float32")
    s, _, series, _ = _debye_parts(x, order, terms)
    return (
        s
        + order * (ops.log(x) - ops.log(order + s))
        - 0.5 * ops.log(2.0 * math.pi * s)
        + ops.log(series)
    )


def log_vmf_normalizer(kappa, dim, radius=None, terms=4):
    """Log normalising constant `log C_d(kappa)` of a von Mises-Fisher distribution.

    On the unit sphere `S^(d-1)`, `C_d(kappa) = kappa^nu / ((2 pi)^(nu+1) I_nu(kappa))`
    with `nu = d/2 - 1`, evaluated as the Debye expansion in which `nu log kappa` cancels
    (see the module docstring): finite and accurate in float32 from `kappa = 0` to
    `1e9`, with finite gradients. On the sphere of radius `r` (SCF's `r`-radius vMF),
    `log C_d - (d - 1) log r`.

    Args:
        kappa: float tensor of concentrations, `>= 0`.
        dim: int. Dimension `d` of the embedding space, at least 16.
        radius: float. Radius `r` of the sphere. Defaults to `None` (unit sphere).
        terms: int. Number of correction terms of the Debye series, 0 to 4.
            Defaults to `4`.

    Returns:
        float32 tensor, the shape of `kappa`.

    Example:
        ```python
        keras_face.uncertainty.log_vmf_normalizer([1.0, 1000.0], dim=512)  # 867.967, 327.709
        ```

    References:
        - [Li et al., Spherical Confidence Learning for Face Recognition, CVPR 2021](https://openaccess.thecvf.com/content/CVPR2021/html/Li_Spherical_Confidence_Learning_for_Face_Recognition_CVPR_2021_paper.html)
        - [Abramowitz and Stegun, Handbook of Mathematical Functions, 9.7.7](https://personal.math.ubc.ca/~cbm/aands/page_378.htm)
    """
    dim = validate_dim(dim)
    terms = _validate_terms(terms)
    order = dim / 2.0 - 1.0
    kappa = ops.cast(kappa, "float32")
    s, _, series, _ = _debye_parts(kappa, order, terms)
    value = (
        order * ops.log(order + s)
        - s
        + 0.5 * ops.log(s)
        - (order + 0.5) * math.log(2.0 * math.pi)
        - ops.log(series)
    )
    if radius is not None:
        value = value - (dim - 1) * math.log(_validate_radius(radius))
    return value


def _validate_radius(radius):
    radius = float(radius)
    if not math.isfinite(radius) or radius <= 0:
        raise ValueError(f"radius must be a finite positive number. Received: radius={radius}")
    return radius


def vmf_mean_resultant(kappa, dim, terms=4):
    """Mean resultant length `A_d(kappa) = I_(d/2)(kappa) / I_(d/2-1)(kappa)`.

    `A_d = E[mu^T z]` is the expected cosine between a vMF sample and its mean direction,
    and `-d/dkappa log C_d(kappa)`. It is computed as the closed-form derivative of the
    Debye expansion of `log C_d`:

    `A_d(kappa) = kappa / (nu + s) - (kappa / s^2) (1/2 + t S'(t) / S(t))`,

    in which no two large numbers are subtracted, so it is accurate in float32 at every
    `kappa` (about `kappa / d` near 0, `1 - (d - 1) / (2 kappa)` for large `kappa`).

    Args:
        kappa: float tensor of concentrations, `>= 0`.
        dim: int. Dimension `d`, at least 16.
        terms: int. Number of correction terms of the Debye series, 0 to 4.
            Defaults to `4`.

    Returns:
        float32 tensor in [0, 1), the shape of `kappa`.

    Example:
        ```python
        keras_face.uncertainty.vmf_mean_resultant([341.1, 1000.0], dim=512)  # 0.5, 0.7765
        ```
    """
    dim = validate_dim(dim)
    terms = _validate_terms(terms)
    order = dim / 2.0 - 1.0
    kappa = ops.cast(kappa, "float32")
    s, t, series, series_derivative = _debye_parts(kappa, order, terms)
    correction = 0.5 + t * series_derivative / series
    return kappa / (order + s) - kappa / ops.square(s) * correction


def kappa_for_cosine(cosine, dim, steps=30):
    """The concentration `kappa*` with `A_d(kappa*) = cosine`: the optimum of the SCF loss.

    The SCF loss `-kappa cos - log C_d(kappa)` has derivative `A_d(kappa) - cos` in
    `kappa`, so its minimum sits where the mean resultant length equals the cosine between
    the embedding and its class centre. Solved by `steps` Newton steps from Banerjee's
    approximation `kappa_0 = c (d - c^2) / (1 - c^2)`, with the derivative
    `nu / (s (nu + s)) + (nu^2 - kappa^2) / (2 s^4)` of the leading terms (exact to
    `O(1 / nu^2)`, free of the cancellation of `1 - A^2 - (d - 1) A / kappa`), each step
    kept within a factor 4. `kappa* = 0` for `cosine <= 0` (the loss then decreases to
    `kappa = 0`) and `inf` for `cosine >= 1`.

    Args:
        cosine: float tensor of cosines in [-1, 1].
        dim: int. Dimension `d`, at least 16.
        steps: int. Newton steps. Defaults to `30`.

    Returns:
        float32 tensor, the shape of `cosine`.

    Example:
        ```python
        kappa = keras_face.uncertainty.kappa_for_cosine([0.5, 0.9], dim=512)  # 341.1, 2421.0
        ```

    References:
        - [Banerjee et al., Clustering on the Unit Hypersphere using von Mises-Fisher
          Distributions, JMLR 2005](https://www.jmlr.org/papers/v6/banerjee05a.html)
    """
    dim = validate_dim(dim)
    order = dim / 2.0 - 1.0
    cosine = ops.cast(cosine, "float32")
    inside = ops.logical_and(cosine > 0.0, cosine < 1.0)
    c = ops.where(inside, cosine, 0.5)
    kappa = c * (dim - ops.square(c)) / (1.0 - ops.square(c))
    for _ in range(int(steps)):
        s = ops.sqrt(order * order + ops.square(kappa))
        slope = order / (s * (order + s)) + (order * order - ops.square(kappa)) / (
            2.0 * ops.square(ops.square(s))
        )
        step = (vmf_mean_resultant(kappa, dim) - c) / slope
        kappa = ops.clip(kappa - step, 0.25 * kappa, 4.0 * kappa)
    kappa = ops.where(inside, kappa, 0.0)
    return ops.where(cosine >= 1.0, float("inf"), kappa)


def mutual_likelihood_score(mu_a, kappa_a, mu_b, kappa_b, radius=None):
    """Mutual likelihood score of two vMF embeddings: `log int q_a(z) q_b(z) dz`.

    For vMFs on the unit sphere the integral has the closed form

    `MLS = log C_d(kappa_a) + log C_d(kappa_b) - log C_d(||kappa_a mu_a + kappa_b mu_b||)`

    (`- (d - 1) log r` on the sphere of radius `r`). Higher means more likely the same
    identity; unlike the cosine it discounts pairs in which either image is uncertain.

    Args:
        mu_a: float tensor `(..., d)` of embeddings (normalised here).
        kappa_a: float tensor `(...)` of their concentrations, `> 0`.
        mu_b: float tensor `(..., d)`.
        kappa_b: float tensor `(...)`.
        radius: float. Radius of the sphere. Defaults to `None` (unit sphere).

    Returns:
        float32 tensor `(...)`.

    Example:
        ```python
        scores = keras_face.uncertainty.mutual_likelihood_score(
            embeddings_a, kappa_a, embeddings_b, kappa_b)
        ```

    References:
        - [Li et al., Spherical Confidence Learning for Face Recognition, CVPR 2021](https://openaccess.thecvf.com/content/CVPR2021/html/Li_Spherical_Confidence_Learning_for_Face_Recognition_CVPR_2021_paper.html)
        - [Shi and Jain, Probabilistic Face Embeddings, ICCV 2019](https://arxiv.org/abs/1904.09658)
    """
    check_values("mu_a", mu_a)
    check_values("mu_b", mu_b)
    check_values("kappa_a", kappa_a, positive=True)
    check_values("kappa_b", kappa_b, positive=True)
    mu_a = unit_vectors(mu_a)
    mu_b = unit_vectors(mu_b)
    dim = validate_dim(mu_a.shape[-1])
    kappa_a = ops.cast(kappa_a, "float32")
    kappa_b = ops.cast(kappa_b, "float32")
    combined = ops.sqrt(
        ops.maximum(
            ops.sum(ops.square(kappa_a[..., None] * mu_a + kappa_b[..., None] * mu_b), axis=-1),
            0.0,
        )
    )
    score = (
        log_vmf_normalizer(kappa_a, dim)
        + log_vmf_normalizer(kappa_b, dim)
        - log_vmf_normalizer(combined, dim)
    )
    if radius is not None:
        score = score - (dim - 1) * math.log(_validate_radius(radius))
    return score


def pool_vmf(mus, kappas, axis=0):
    """Pool vMF embeddings into one (a template): the product of the densities.

    The product of vMFs with directions `mu_i` and concentrations `kappa_i` is a vMF with
    direction `normalize(sum_i kappa_i mu_i)` and concentration `||sum_i kappa_i mu_i||`:
    each image counts in proportion to its confidence, and the template is at most as
    confident as the sum of its images.

    Args:
        mus: float tensor `(..., n, d)` of embeddings along `axis` (normalised here).
        kappas: float tensor `(..., n)` of concentrations, `> 0`.
        axis: int. The axis of `kappas` that holds the images (`axis` of `mus` counted the
            same way, the last axis of `mus` being the embedding). Defaults to `0`.

    Returns:
        `(direction, kappa)`: unit float32 tensor `(..., d)` and float32 tensor `(...)`.

    Example:
        ```python
        direction, kappa = keras_face.uncertainty.pool_vmf(template_embeddings, template_kappas)
        ```

    References:
        - [Li et al., Spherical Confidence Learning for Face Recognition, CVPR 2021](https://openaccess.thecvf.com/content/CVPR2021/html/Li_Spherical_Confidence_Learning_for_Face_Recognition_CVPR_2021_paper.html)
    """
    check_values("mus", mus)
    check_values("kappas", kappas, positive=True)
    mus = unit_vectors(mus)
    kappas = ops.cast(kappas, "float32")
    rank = len(kappas.shape)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise ValueError(f"axis must index an axis of kappas (rank {rank}). Received: axis={axis}")
    total = ops.sum(ops.expand_dims(kappas, -1) * mus, axis=axis)
    direction, kappa = unit_vectors(total, return_norms=True)
    return direction, kappa


def unit_vectors(x, return_norms=False):
    """Rows of `x` scaled to unit L2 norm in float32 (zero rows stay zero).

    Uses the margin heads' normaliser (`keras_face.heads.MarginHead.normalize`), exact
    for norms from 1e-30 to 1e30.

    Args:
        x: float tensor `(..., d)`.
        return_norms: bool. Also return the norms `(...)`. Defaults to `False`.

    Returns:
        The unit float32 tensor, or `(unit, norms)`.

    Example:
        ```python
        directions = keras_face.uncertainty.unit_vectors(embeddings)
        ```
    """
    normalized, norms = _normalize(ops.cast(x, "float32"))
    if return_norms:
        return normalized, norms
    return normalized


def _normalize(x):
    # The one normaliser of the package (heads are Keras-only like this package).
    return MarginHead.normalize(x)


def concrete_values(x):
    """`x` as a NumPy array when its values are known now, else `None`.

    Inside a compiled function (a TensorFlow graph, a JAX trace) or a symbolic Keras call
    the values do not exist yet; the checks that use this run in eager calls only.
    """
    if isinstance(x, keras.KerasTensor):
        return None
    try:
        return np.asarray(ops.convert_to_numpy(x))
    # What "no values yet" raises: a symbolic TensorFlow tensor NotImplementedError or
    # AttributeError (no `.numpy()` in a graph), a JAX tracer TypeError
    # (TracerArrayConversionError), a PyTorch tensor under `torch.func`/compile
    # RuntimeError, and other traced objects ValueError.
    except (TypeError, ValueError, NotImplementedError, RuntimeError, AttributeError):
        return None


def check_values(name, x, positive=False):
    """Raise a `ValueError` naming `name` if `x` holds NaN or inf (or values `<= 0`).

    Args:
        name: str. The argument name used in the message.
        x: tensor or array. Checked when its values are known (eager calls).
        positive: bool. Also refuse values `<= 0`. Defaults to `False`.

    Returns:
        `x`, unchanged.
    """
    values = concrete_values(x)
    if values is None:
        return x
    bad = ~np.isfinite(values)
    if positive:
        bad |= ~(values > 0)
    if np.any(bad):
        shown = ", ".join(str(v) for v in values[bad].reshape(-1)[:4])
        kind = "finite and > 0" if positive else "finite"
        raise ValueError(
            f"{name} must be {kind}; {int(np.sum(bad))} of {values.size} values are not. "
            f"Received: {name} containing {shown}"
        )
    return x
