import keras
import numpy as np
import pytest

from keras_face import training


def arcface_torch_poly_lr(update, base_lr, max_steps, warmup_steps, power=2):
    """insightface arcface_torch PolyScheduler as its training loop applies it.

    The scheduler primes itself with the value at 0, then `.step()` runs after every
    optimizer update, so update `k` (0-based) uses the closed form at `max(k - 1, 0)`.
    """
    t = max(update - 1, 0)
    if t < warmup_steps:
        return base_lr * t / warmup_steps
    return base_lr * (1 - (t - warmup_steps) / (max_steps - warmup_steps)) ** power


def test_poly_decay_values():
    schedule = training.WarmupPolynomialDecay(0.1, total_steps=100, warmup_steps=10, power=2)
    steps = np.arange(0, 120)
    values = np.array([float(schedule(step)) for step in steps])
    expected = np.where(
        steps < 10,
        0.1 * steps / 10,
        0.1 * np.clip(1 - (steps - 10) / 90, 0, 1) ** 2,
    )
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-9)
    assert values[0] == 0.0 and values[10] == pytest.approx(0.1)
    assert values[100] == 0.0 and values[119] == 0.0


def test_poly_decay_is_arcface_torch_one_step_earlier():
    schedule = training.WarmupPolynomialDecay(0.1, total_steps=50, warmup_steps=5)
    for update in range(1, 50):
        reference = arcface_torch_poly_lr(update + 1, 0.1, 50, 5)
        assert float(schedule(update)) == pytest.approx(reference, rel=1e-6, abs=1e-9)


def test_poly_decay_without_warmup_starts_at_base():
    schedule = training.WarmupPolynomialDecay(0.1, total_steps=20)
    assert float(schedule(0)) == pytest.approx(0.1)
    assert float(schedule(10)) == pytest.approx(0.1 * 0.25)


def test_piecewise_arcface_paper():
    schedule = training.WarmupPiecewiseConstantDecay(0.1, boundaries=[20_000, 28_000])
    assert float(schedule(0)) == pytest.approx(0.1)
    assert float(schedule(19_999)) == pytest.approx(0.1)
    assert float(schedule(20_000)) == pytest.approx(0.01)
    assert float(schedule(27_999)) == pytest.approx(0.01)
    assert float(schedule(28_000)) == pytest.approx(0.001)


def test_piecewise_with_warmup():
    schedule = training.WarmupPiecewiseConstantDecay(0.2, [30], decay_factor=0.5, warmup_steps=10)
    assert float(schedule(5)) == pytest.approx(0.1)
    assert float(schedule(10)) == pytest.approx(0.2)
    assert float(schedule(30)) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "schedule",
    [
        training.WarmupPolynomialDecay(0.1, total_steps=100, warmup_steps=10, power=2.0),
        training.WarmupPiecewiseConstantDecay(0.1, [10, 20], decay_factor=0.1, warmup_steps=3),
    ],
)
def test_schedule_serialization(schedule):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    for step in (0, 5, 15, 50):
        assert float(restored(step)) == pytest.approx(float(schedule(step)))


def test_schedule_errors():
    with pytest.raises(ValueError, match="total_steps must be larger than warmup_steps"):
        training.WarmupPolynomialDecay(0.1, total_steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="strictly increasing"):
        training.WarmupPiecewiseConstantDecay(0.1, [20, 10])
    with pytest.raises(ValueError, match="learning_rate"):
        training.WarmupPolynomialDecay(-0.1, total_steps=10)


def test_build_schedule_from_epochs():
    schedule = training.build_schedule(
        0.1, steps_per_epoch=100, epochs=20, name="poly", warmup_epochs=2
    )
    assert schedule.total_steps == 2000 and schedule.warmup_steps == 200
    piecewise = training.build_schedule(0.1, 100, 30, name="piecewise", decay_epochs=[10, 20])
    assert piecewise.boundaries == [1000, 2000]
    steps = training.build_schedule(0.1, 100, 30, name="piecewise", decay_steps=[20_000, 28_000])
    assert steps.boundaries == [20_000, 28_000]
    assert training.build_schedule(0.1, 100, 3, name="constant") == 0.1
    with pytest.raises(ValueError, match="decay_epochs"):
        training.build_schedule(0.1, 100, 30, name="piecewise")
    with pytest.raises(ValueError, match="steps_per_epoch"):
        training.build_schedule(0.1, 0, 30)
