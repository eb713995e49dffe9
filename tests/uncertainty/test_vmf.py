"""vMF math against the golden numbers of spec section 1.8 (mpmath, `ref_scf.py`)."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_face.uncertainty import kappa_for_cosine
from keras_face.uncertainty import log_bessel_iv
from keras_face.uncertainty import log_vmf_normalizer
from keras_face.uncertainty import mutual_likelihood_score
from keras_face.uncertainty import pool_vmf
from keras_face.uncertainty import vmf_dirac_kl
from keras_face.uncertainty import vmf_mean_resultant
from tests.uncertainty.backend_gradients import gradient
from tests.uncertainty.backend_gradients import gradient_function

# log C_d(kappa), mpmath at 50 digits (ref_scf.py sections 1 and 8).
LOG_C_512 = {
    1.0: 867.967127,
    10.0: 867.870465,
    100.0: 858.379265,
    255.0: 810.514281,
    1000.0: 327.709187,
    1e4: -8113.084402,
    1e5: -97527.700009,
    1e6: -996939.682131,
}
LOG_C_128 = {
    1.0: 127.049550,
    10.0: 126.663996,
    63.0: 112.988002,
    100.0: 95.061469,
    1000.0: -676.078023,
    1e4: -9531.650133,
}
# A_d(kappa) = I_256 / I_255 at d = 512 (ref_scf.py section 3).
MEAN_RESULTANT_512 = {
    10.0: 0.0195238340,
    341.0: 0.4999410457,
    1000.0: 0.7765309329,
    1e5: 0.9974482513,
}
KAPPA_STAR = {
    512: {0.5: 341.1, 0.7: 701.8, 0.9: 2421.0, 0.3: 168.7, 0.95: 4979.5, 0.99: 25422.1},
    128: {0.3: 42.14, 0.5: 85.07, 0.7: 174.78, 0.9: 602.08},
}


def _numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


@pytest.mark.parametrize("dim, table", [(512, LOG_C_512), (128, LOG_C_128)])
def test_log_normalizer_golden(dim, table):
    kappa = np.array(list(table), dtype=np.float32)
    got = _numpy(log_vmf_normalizer(kappa, dim))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, list(table.values()), rtol=1e-6)


def test_log_normalizer_limits_and_radius():
    # kappa -> 0: -log |S^511| = log Gamma(256) - log 2 - 256 log pi.
    surface = math.lgamma(256) - math.log(2) - 256 * math.log(math.pi)
    assert float(_numpy(log_vmf_normalizer(np.float32(0.0), 512))) == pytest.approx(
        surface, rel=1e-6
    )
    assert float(_numpy(log_vmf_normalizer(np.float32(1e-6), 512))) == pytest.approx(
        surface, rel=1e-6
    )
    with_radius = float(_numpy(log_vmf_normalizer(np.float32(1000.0), 512, radius=64.0)))
    assert with_radius == pytest.approx(327.709187 - 511 * math.log(64.0), rel=1e-6)


def test_log_bessel_iv_golden():
    got = _numpy(log_bessel_iv(255.0, np.array([1.0, 100.0, 1000.0, 1e5], np.float32)))
    np.testing.assert_allclose(
        got, [-1338.463656, -154.557397, 963.271880, 99992.999474], rtol=1e-6
    )


@pytest.mark.parametrize("dim", [16, 64, 128, 512])
def test_no_nan_or_inf_from_tiny_to_huge_kappa(dim):
    kappa = np.logspace(-6, 9, 61).astype(np.float32)
    for function in (
        lambda k: log_vmf_normalizer(k, dim),
        lambda k: vmf_mean_resultant(k, dim),
        lambda k: vmf_dirac_kl(ops.ones_like(k), k, dim),
        lambda k: vmf_dirac_kl(-ops.ones_like(k), k, dim),
    ):
        assert np.all(np.isfinite(_numpy(function(kappa))))
        assert np.all(np.isfinite(gradient(function, kappa)))
    values = _numpy(vmf_mean_resultant(kappa, dim))
    assert np.all(np.diff(values) >= 0) and values[0] >= 0 and values[-1] <= 1


def test_gradient_is_minus_mean_resultant():
    kappa = np.array(list(MEAN_RESULTANT_512), dtype=np.float32)
    expected = np.array(list(MEAN_RESULTANT_512.values()))
    got = -gradient(lambda k: log_vmf_normalizer(k, 512), kappa)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(_numpy(vmf_mean_resultant(kappa, 512)), expected, atol=1e-6, rtol=0)
    # The closed form equals the backend's derivative everywhere, also at d = 16 and 128.
    grid = np.logspace(-3, 7, 31).astype(np.float32)
    for dim in (16, 128):
        closed = _numpy(vmf_mean_resultant(grid, dim))
        autodiff = -gradient(lambda k, d=dim: log_vmf_normalizer(k, d), grid)
        np.testing.assert_allclose(autodiff, closed, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dim", [512, 128])
def test_kappa_for_cosine_golden(dim):
    cosines = np.array(list(KAPPA_STAR[dim]), dtype=np.float32)
    got = _numpy(kappa_for_cosine(cosines, dim))
    # The references are printed to 1 (d = 512) or 2 (d = 128) decimals.
    half_digit = 0.05 if dim == 512 else 0.005
    np.testing.assert_allclose(got, list(KAPPA_STAR[dim].values()), rtol=1e-5, atol=half_digit)
    # It inverts A_d.
    np.testing.assert_allclose(_numpy(vmf_mean_resultant(got, dim)), cosines, atol=2e-6)
    edges = _numpy(kappa_for_cosine(np.array([-1.0, 0.0, 1.0], np.float32), dim))
    assert edges[0] == 0.0 and edges[1] == 0.0 and np.isinf(edges[2])


@pytest.mark.parametrize("dim", [512, 128])
def test_adam_on_the_loss_reaches_kappa_star(dim):
    """200 Adam steps on log kappa minimise the loss at kappa* (spec 1.8, item 3)."""
    cosines = np.array(list(KAPPA_STAR[dim])[:4], dtype=np.float32)
    expected = np.array(list(KAPPA_STAR[dim].values())[:4])

    def loss_of_log_kappa(log_kappa):
        return vmf_dirac_kl(ops.convert_to_tensor(cosines), ops.exp(log_kappa), dim)

    log_kappa = np.full(cosines.shape, math.log(50.0), np.float32)
    first = np.zeros_like(log_kappa)
    second = np.zeros_like(log_kappa)
    rate, beta1, beta2 = 0.1, 0.9, 0.999
    loss_gradient = gradient_function(loss_of_log_kappa)
    for step in range(1, 201):
        # Adam with a learning rate halved every 40 steps.
        grad = loss_gradient(log_kappa)
        first = beta1 * first + (1 - beta1) * grad
        second = beta2 * second + (1 - beta2) * grad**2
        update = (first / (1 - beta1**step)) / (np.sqrt(second / (1 - beta2**step)) + 1e-8)
        log_kappa = (log_kappa - rate * 0.5 ** (step // 40) * update).astype(np.float32)
    np.testing.assert_allclose(np.exp(log_kappa), expected, rtol=0.01)


def _vectors_with_cosine(cosine, dim, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal(dim)
    other = rng.standard_normal(dim)
    other -= other @ mu / (mu @ mu) * mu
    mu /= np.linalg.norm(mu)
    other /= np.linalg.norm(other)
    return mu, cosine * mu + math.sqrt(1 - cosine**2) * other


def test_loss_anchors():
    """Spec 1.8 item 4: d = 512, r = 64, the authors' constant; rtol 1e-6."""
    cosine = np.array([0.9, 0.5, 0.0, -0.3], np.float32)
    kappa = np.array([2000.0, 300.0, 50.0, 1e5], np.float32)
    got = _numpy(vmf_dirac_kl(cosine, kappa, 512, radius=64.0))
    np.testing.assert_allclose(
        got, [840.656845, 1188.540055, 1263.809989, 129657.048148], rtol=1e-6
    )
    without = _numpy(vmf_dirac_kl(cosine, kappa, 512, radius=64.0, authors_constant=False))
    # float32: the ulp of 1.3e5 is 0.008.
    np.testing.assert_allclose(got - without, 512 * math.log(64.0), rtol=0, atol=0.01)


def test_mutual_likelihood_anchors():
    """Spec 1.8 item 5 (unit sphere, d = 512)."""
    mu, half = _vectors_with_cosine(0.5, 512)
    mu_a = np.stack([mu, mu, mu]).astype(np.float32)
    mu_b = np.stack([3.0 * mu, mu, half]).astype(np.float32)  # norms do not matter
    kappa_a = np.array([1000.0, 1000.0, 1000.0], np.float32)
    kappa_b = np.array([1000.0, 100.0, 1000.0], np.float32)
    got = _numpy(mutual_likelihood_score(mu_a, kappa_a, mu_b, kappa_b))
    np.testing.assert_allclose(got, [1166.727081, 936.943296, 933.024873], rtol=1e-6)
    symmetric = _numpy(mutual_likelihood_score(mu_b, kappa_b, mu_a, kappa_a))
    np.testing.assert_allclose(symmetric, got, rtol=1e-6)
    shifted = _numpy(mutual_likelihood_score(mu_a, kappa_a, mu_b, kappa_b, radius=64.0))
    np.testing.assert_allclose(got - shifted, 511 * math.log(64.0), rtol=1e-5)


def test_pooling():
    # The vectors of ref_scf.py (seed 0): pooling mu0 (kappa 900) and mu1 (kappa 100).
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((4, 512))
    mus = (mu[:2] / np.linalg.norm(mu[:2], axis=-1, keepdims=True)).astype(np.float32)
    direction, kappa = pool_vmf(mus, np.array([900.0, 100.0], np.float32))
    assert float(_numpy(kappa)) == pytest.approx(910.213480, rel=1e-6)
    assert float(_numpy(direction) @ mus[0]) == pytest.approx(0.993960, abs=1e-6)
    # Orthogonal directions: sqrt(900^2 + 100^2); batched along axis 1.
    eye = np.eye(512, dtype=np.float32)[:2]
    batch = np.stack([eye, eye[::-1]])  # (2 templates, 2 images, 512)
    direction, kappa = pool_vmf(
        batch, np.array([[900.0, 100.0], [900.0, 100.0]], np.float32), axis=1
    )
    np.testing.assert_allclose(_numpy(kappa), [905.5385, 905.5385], rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(_numpy(direction), axis=-1), [1.0, 1.0], rtol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="dim=8"):
        log_vmf_normalizer(np.float32(10.0), 8)
    with pytest.raises(ValueError, match="dim=15"):
        kappa_for_cosine(0.5, 15)
    with pytest.raises(ValueError, match="order=2.5"):
        log_bessel_iv(2.5, np.float32(1.0))
    with pytest.raises(ValueError, match="radius=-1.0"):
        vmf_dirac_kl(np.float32(0.5), np.float32(10.0), 128, radius=-1.0)
    mu = np.ones((2, 32), np.float32)
    with pytest.raises(ValueError, match="kappa_b"):
        mutual_likelihood_score(mu, np.ones(2, np.float32), mu, np.array([1.0, 0.0], np.float32))
    with pytest.raises(ValueError, match="mu_a"):
        bad = mu.copy()
        bad[0, 3] = np.nan
        mutual_likelihood_score(bad, np.ones(2, np.float32), mu, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="kappas"):
        pool_vmf(mu, np.array([-1.0, 1.0], np.float32))
    with pytest.raises(ValueError, match="mus"):
        pool_vmf(np.full((2, 32), np.inf, np.float32), np.ones(2, np.float32))


def test_runs_in_a_compiled_function():
    """Inside jit / tf.function the value checks step aside and the math still runs."""
    if keras.backend.backend() == "torch":
        pytest.skip("no graph compilation needed on torch")
    inputs = keras.Input((32,))
    kappa_input = keras.Input(())
    score = keras.layers.Lambda(lambda t: mutual_likelihood_score(t[0], t[1], t[0], t[1]))(
        [inputs, kappa_input]
    )
    model = keras.Model([inputs, kappa_input], score)
    mu = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    kappa = np.array([10.0, 20.0, 30.0, 40.0], np.float32)
    compiled = model.predict([mu, kappa], verbose=0)
    eager = _numpy(mutual_likelihood_score(mu, kappa, mu, kappa))
    np.testing.assert_allclose(compiled, eager, rtol=1e-6)
