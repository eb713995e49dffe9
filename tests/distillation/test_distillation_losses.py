"""Distillation losses and layer on every backend: the worked numbers of the specification."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_face.distillation import DISTILLATION_LOSSES
from keras_face.distillation import EmbeddingDistillation
from keras_face.distillation import angular_distillation
from keras_face.distillation import cosine_distillation
from keras_face.distillation import euclidean_distillation
from keras_face.distillation import get_distillation_loss
from keras_face.distillation import normalized_l2_distillation
from keras_face.distillation import teacher_student_cosine
from tests.layer_testing import run_layer_test
from tests.uncertainty.backend_gradients import gradient

# seed-methods.md §2.7: cos = [0.96, 0].
TEACHER = np.array([[3.0, 4.0], [1.0, 0.0]], dtype=np.float32)
STUDENT = np.array([[4.0, 3.0], [0.0, 2.0]], dtype=np.float32)


def _numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def _reference(teacher, student):
    """Straight NumPy from the definitions (VarGFaceNet Eq. 4 and 5, Keras_insightface)."""
    teacher_unit = teacher / np.linalg.norm(teacher, axis=1, keepdims=True)
    student_unit = student / np.linalg.norm(student, axis=1, keepdims=True)
    cosine = np.sum(teacher_unit * student_unit, axis=1)
    return {
        "normalized_l2": np.sum((teacher_unit - student_unit) ** 2, axis=1),
        "angular": (1 - cosine) ** 2,
        "cosine": 1 - cosine,
        "euclidean": np.sum((student - teacher) ** 2, axis=1),
    }


def test_worked_numbers():
    np.testing.assert_allclose(
        _numpy(teacher_student_cosine(TEACHER, STUDENT)), [0.96, 0.0], atol=1e-7
    )
    normalized = _numpy(normalized_l2_distillation(TEACHER, STUDENT))
    np.testing.assert_allclose(normalized, [0.08, 2.0], atol=1e-6)
    assert normalized.mean() == pytest.approx(1.04, abs=1e-6)
    angular = _numpy(angular_distillation(TEACHER, STUDENT))
    np.testing.assert_allclose(angular, [0.0016, 1.0], atol=1e-6)
    assert angular.mean() == pytest.approx(0.5008, abs=1e-6)
    cosine = _numpy(cosine_distillation(TEACHER, STUDENT))
    np.testing.assert_allclose(cosine, [0.04, 1.0], atol=1e-6)
    # Keras_insightface's +1e-5 on the norms gives 0.04000384: within 4e-6 of the exact value.
    np.testing.assert_allclose(cosine, [0.04000384, 1.0], atol=5e-6)
    np.testing.assert_allclose(_numpy(euclidean_distillation(TEACHER, STUDENT)), [2.0, 5.0])
    for values in (normalized, angular, cosine):
        assert values.dtype == np.float32 and values.shape == (2,)


def test_gradient_of_eq5():
    def mean_loss(student):
        return ops.mean(normalized_l2_distillation(ops.convert_to_tensor(TEACHER), student))

    grad = gradient(mean_loss, STUDENT)
    np.testing.assert_allclose(grad, [[0.0336, -0.0448], [-0.5, 0.0]], atol=1e-6)
    # and by central finite differences in float64
    step = 1e-6
    numeric = np.zeros_like(STUDENT, dtype=np.float64)
    for index in np.ndindex(STUDENT.shape):
        shifted = [STUDENT.astype(np.float64) for _ in range(2)]
        shifted[0][index] += step
        shifted[1][index] -= step
        values = [
            _reference(TEACHER.astype(np.float64), s)["normalized_l2"].mean() for s in shifted
        ]
        numeric[index] = (values[0] - values[1]) / (2 * step)
    np.testing.assert_allclose(grad, numeric, atol=1e-5)


@pytest.mark.parametrize("name", sorted(DISTILLATION_LOSSES))
def test_against_numpy_reference(name):
    rng = np.random.default_rng(3)
    teacher = rng.normal(size=(16, 12)).astype(np.float32) * 10
    student = rng.normal(size=(16, 12)).astype(np.float32)
    student[0] = teacher[0] * 0.1  # cos = 1
    student[1] = -teacher[1]  # cos = -1
    values = _numpy(get_distillation_loss(name)(teacher, student))
    np.testing.assert_allclose(values, _reference(teacher, student)[name], rtol=2e-5, atol=2e-5)


def test_scale_invariance_and_zero_student():
    np.testing.assert_allclose(
        _numpy(normalized_l2_distillation(3 * TEACHER, 5 * STUDENT)),
        _numpy(normalized_l2_distillation(TEACHER, STUDENT)),
        atol=1e-6,
    )
    student = STUDENT.copy()
    student[1] = 0.0

    def mean_loss(values):
        return ops.mean(normalized_l2_distillation(ops.convert_to_tensor(TEACHER), values))

    loss = _numpy(normalized_l2_distillation(TEACHER, student))
    assert np.all(np.isfinite(loss)) and loss[1] == pytest.approx(2.0)  # no direction: cos 0
    assert np.all(np.isfinite(gradient(mean_loss, student)))


def test_unknown_loss_and_shapes():
    with pytest.raises(ValueError, match="Received: loss='l1'"):
        get_distillation_loss("l1")
    with pytest.raises(ValueError, match=r"teacher shape=\(2, 2\), student shape=\(2, 3\)"):
        normalized_l2_distillation(TEACHER, np.zeros((2, 3), np.float32))


def test_layer_adds_weight_times_mean_when_training_only():
    layer = EmbeddingDistillation("normalized_l2", weight=7.0)
    output = layer([STUDENT, TEACHER], training=True)
    np.testing.assert_array_equal(_numpy(output), STUDENT)  # returned unchanged
    assert len(layer.losses) == 1
    assert float(_numpy(layer.losses[0])) == pytest.approx(7.0 * 1.04, rel=1e-6)
    assert float(_numpy(layer.loss_tracker.result())) == pytest.approx(1.04, rel=1e-6)
    assert float(_numpy(layer.cosine_tracker.result())) == pytest.approx(0.48, rel=1e-6)
    inference = EmbeddingDistillation("angular", weight=64.0)
    inference([STUDENT, TEACHER], training=False)
    assert inference.losses == []
    angular = EmbeddingDistillation("angular", weight=64.0)
    angular([STUDENT, TEACHER], training=True)
    assert float(_numpy(angular.losses[0])) == pytest.approx(64.0 * 0.5008, rel=1e-6)


def test_layer_in_a_model_adds_its_loss():
    student_in = keras.Input((2,))
    teacher_in = keras.Input((2,))
    output = EmbeddingDistillation(weight=2.0)([student_in, teacher_in])
    model = keras.Model([student_in, teacher_in], output)
    model([STUDENT, TEACHER], training=True)
    assert float(_numpy(ops.sum(model.losses))) == pytest.approx(2.0 * 1.04, rel=1e-6)


def test_layer_contract_same_dimension():
    rng = np.random.default_rng(0)
    student = rng.normal(size=(4, 6)).astype(np.float32)
    teacher = rng.normal(size=(4, 6)).astype(np.float32)
    run_layer_test(
        EmbeddingDistillation,
        {"loss": "angular", "weight": 3.0},
        [student, teacher],
        expected_output_shape=(4, 6),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        run_mixed_precision=False,  # the output is the input, in its own dtype
    )


def test_layer_contract_with_projection():
    rng = np.random.default_rng(1)
    student = rng.normal(size=(4, 6)).astype(np.float32)
    teacher = rng.normal(size=(4, 10)).astype(np.float32)
    layer = run_layer_test(
        EmbeddingDistillation,
        {"loss": "normalized_l2", "weight": 7.0, "projection": "dense"},
        [student, teacher],
        expected_output_shape=(4, 6),
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
        run_mixed_precision=False,
    )
    assert tuple(layer.projection_layer.kernel.shape) == (6, 10)
    # the loss is taken on the projected student
    fresh = EmbeddingDistillation("normalized_l2", weight=1.0, projection="dense")
    fresh([student, teacher], training=True)
    projected = student @ _numpy(fresh.projection_layer.kernel)
    expected = _reference(teacher, projected)["normalized_l2"].mean()
    assert float(_numpy(fresh.losses[0])) == pytest.approx(expected, rel=1e-5)


def test_layer_bad_arguments():
    with pytest.raises(
        ValueError, match=r"Received: student shape=\(None, 6\), teacher shape=\(None, 10\)"
    ):
        EmbeddingDistillation()([keras.Input((6,)), keras.Input((10,))])
    with pytest.raises(ValueError, match="Received: weight=-1.0"):
        EmbeddingDistillation(weight=-1)
    with pytest.raises(ValueError, match="Received: projection='linear'"):
        EmbeddingDistillation(projection="linear")
    with pytest.raises(ValueError, match="Received: loss='kl'"):
        EmbeddingDistillation(loss="kl")


def test_layer_returning_loss_terms_adds_nothing():
    layer = EmbeddingDistillation("angular", weight=7.0, return_loss_terms=True)
    student, per_sample, cosine = layer([STUDENT, TEACHER], training=True)
    assert layer.losses == [] and layer.metrics == []
    np.testing.assert_array_equal(_numpy(student), STUDENT)
    np.testing.assert_allclose(_numpy(per_sample), [0.0016, 1.0], atol=1e-6)
    np.testing.assert_allclose(_numpy(cosine), [0.96, 0.0], atol=1e-6)
    restored = EmbeddingDistillation.from_config(layer.get_config())
    assert restored.return_loss_terms and restored.weight == 7.0 and restored.loss == "angular"
