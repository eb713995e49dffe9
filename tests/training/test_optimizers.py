import keras
import numpy as np
import pytest

from keras_face import training

STEPS = 6


def quadratic_gradient(w):
    """Gradient of 0.5 * ||A w - b||^2 with fixed A, b: a different gradient every step."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 3))
    b = rng.normal(size=(4,))
    return a.T @ (a @ w - b)


def run_keras(optimizer, steps=STEPS, start=(0.5, -1.0, 2.0)):
    variable = keras.Variable(np.array(start, dtype="float32"), name="w")
    trajectory = []
    for _ in range(steps):
        gradient = quadratic_gradient(np.asarray(variable).astype("float64")).astype("float32")
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(gradient), variable)])
        trajectory.append(np.asarray(variable).copy())
    return np.array(trajectory)


def numpy_torch_sgd(
    lr, momentum, weight_decay, nesterov=False, steps=STEPS, start=(0.5, -1.0, 2.0)
):
    """torch.optim.SGD (dampening 0) transcribed from its documentation."""
    w = np.array(start, dtype="float64")
    buffer = None
    trajectory = []
    for _ in range(steps):
        g = quadratic_gradient(w) + weight_decay * w
        if momentum:
            buffer = g if buffer is None else momentum * buffer + g
            g = g + momentum * buffer if nesterov else buffer
        w = w - lr * g
        trajectory.append(w.copy())
    return np.array(trajectory)


@pytest.mark.parametrize("nesterov", [False, True])
def test_l2_sgd_is_pytorch_sgd(nesterov):
    keras_path = run_keras(training.L2SGD(0.1, momentum=0.9, l2=5e-2, nesterov=nesterov))
    reference = numpy_torch_sgd(0.1, 0.9, 5e-2, nesterov=nesterov)
    np.testing.assert_allclose(keras_path, reference, rtol=1e-5, atol=1e-6)


def test_l2_sgd_matches_torch_optim_sgd():
    torch = pytest.importorskip("torch")
    weight = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64))
    optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.9, weight_decay=5e-2)
    reference = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        weight.grad = torch.tensor(quadratic_gradient(weight.detach().numpy()))
        optimizer.step()
        reference.append(weight.detach().numpy().copy())
    keras_path = run_keras(training.L2SGD(0.1, momentum=0.9, l2=5e-2))
    np.testing.assert_allclose(keras_path, np.array(reference), rtol=1e-5, atol=1e-6)


def test_coupled_and_decoupled_decay_agree_without_momentum_only():
    coupled = run_keras(training.build_optimizer("sgd", 0.1, momentum=0.0, weight_decay=5e-2))
    decoupled = run_keras(
        training.build_optimizer(
            "sgd", 0.1, momentum=0.0, weight_decay=5e-2, weight_decay_mode="decoupled"
        )
    )
    np.testing.assert_allclose(coupled, decoupled, rtol=1e-5, atol=1e-6)
    coupled = run_keras(training.build_optimizer("sgd", 0.1, momentum=0.9, weight_decay=5e-2))
    decoupled = run_keras(
        training.build_optimizer(
            "sgd", 0.1, momentum=0.9, weight_decay=5e-2, weight_decay_mode="decoupled"
        )
    )
    # With momentum the L2 term accumulates in the buffer: the paths part.
    assert np.abs(coupled[-1] - decoupled[-1]).max() > 1e-3


def test_l2_sgd_without_decay_is_keras_sgd_at_constant_rate():
    ours = run_keras(training.L2SGD(0.05, momentum=0.9, l2=0.0))
    keras_sgd = run_keras(keras.optimizers.SGD(0.05, momentum=0.9))
    np.testing.assert_allclose(ours, keras_sgd, rtol=1e-5, atol=1e-6)


def test_exclude_from_weight_decay():
    optimizer = training.build_optimizer(
        "sgd", 0.1, momentum=0.0, weight_decay=0.5, exclude_from_weight_decay=["w"]
    )
    plain = run_keras(keras.optimizers.SGD(0.1))
    np.testing.assert_allclose(run_keras(optimizer), plain, rtol=1e-6)


def test_global_clipnorm():
    optimizer = training.build_optimizer(
        "sgd", 1.0, momentum=0.0, weight_decay=0.0, global_clipnorm=0.01
    )
    path = run_keras(optimizer, steps=1)
    assert np.linalg.norm(path[0] - np.array([0.5, -1.0, 2.0])) == pytest.approx(0.01, rel=1e-4)


def test_adamw_is_decoupled():
    optimizer = training.build_optimizer("adamw", 1e-3, weight_decay=0.1)
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert optimizer.weight_decay == pytest.approx(0.1)
    assert optimizer.epsilon == pytest.approx(1e-8)
    with pytest.raises(ValueError, match="decoupled by definition"):
        training.build_optimizer("adamw", 1e-3, weight_decay_mode="l2")


def test_build_optimizer_kinds_and_errors():
    assert isinstance(training.build_optimizer("sgd"), training.L2SGD)
    decoupled = training.build_optimizer("sgd", weight_decay_mode="decoupled")
    # Keras' own SGD (on PyTorch a backend subclass of it), not the coupled L2SGD.
    assert isinstance(decoupled, keras.optimizers.SGD)
    assert not isinstance(decoupled, training.L2SGD)
    assert decoupled.weight_decay == pytest.approx(5e-4)
    with pytest.raises(ValueError, match="Received: name='adam'"):
        training.build_optimizer("adam")
    with pytest.raises(ValueError, match="either clipnorm or global_clipnorm"):
        training.build_optimizer("sgd", clipnorm=1.0, global_clipnorm=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        training.L2SGD(0.1, weight_decay=1e-4)


def test_l2_sgd_serialization():
    optimizer = training.L2SGD(
        training.WarmupPolynomialDecay(0.1, total_steps=10), momentum=0.8, l2=1e-3, nesterov=True
    )
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(optimizer))
    assert isinstance(restored, training.L2SGD)
    assert restored.l2 == pytest.approx(1e-3) and restored.momentum == pytest.approx(0.8)
    assert restored.nesterov is True
    assert isinstance(restored._learning_rate, training.WarmupPolynomialDecay)
