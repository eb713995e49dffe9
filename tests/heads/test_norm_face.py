import keras
import numpy as np
import pytest

import keras_face
from keras_face.heads import NormFace
from tests.heads import checks
from tests.heads import edge_cases
from tests.heads import numpy_reference as ref
from tests.layer_testing import run_layer_test


def plain(scale):
    return lambda c, labels: ref.plain(c, labels, scale)


@pytest.mark.parametrize("trainable_scale, scale", [(True, 10.0), (False, 20.0)])
def test_matches_numpy_reference_on_edge_cases(trainable_scale, scale):
    cases = edge_cases.edge_cases()
    layer = edge_cases.set_kernel(
        NormFace(5, scale=scale, trainable_scale=trainable_scale), cases.kernel
    )
    checks.check_outputs(layer, cases, plain(scale), scale)
    checks.check_outputs(layer, cases, plain(scale), scale, training=False)


@pytest.mark.parametrize("trainable_scale", [True, False])
def test_gradients_finite_and_match_central_differences(trainable_scale):
    cases = edge_cases.edge_cases()
    layer = edge_cases.set_kernel(NormFace(5, trainable_scale=trainable_scale), cases.kernel)
    grad_vars = checks.check_gradients(layer, cases, plain(10.0)).variables
    if trainable_scale:
        # d/ds sum(R * s * c) = sum(R * c), with the weights R of check_gradients.
        weights = np.random.default_rng(0).normal(size=(len(cases.labels), 5))
        cosines = ref.cosine_matrix(cases.embeddings, cases.kernel)
        np.testing.assert_allclose(
            grad_vars[layer.scale_variable.path], np.sum(weights * cosines), rtol=1e-5
        )
        assert sorted(grad_vars) == sorted([layer.kernel.path, layer.scale_variable.path])
    else:
        assert list(grad_vars) == [layer.kernel.path]


def test_learned_scale_is_kept_above_min_scale():
    cases = edge_cases.edge_cases()
    layer = edge_cases.set_kernel(NormFace(5, min_scale=0.5), cases.kernel)
    layer.scale_variable.assign(0.001)
    cosines = ref.cosine_matrix(cases.embeddings, cases.kernel)
    # Forward: max(s, min_scale).
    ref.assert_matches_reference(
        checks.outputs(layer, cases.embeddings, cases.labels, True),
        lambda c: ref.plain(c, cases.labels, 0.5),
        cosines,
        0.5,
    )


def test_optimizer_step_projects_the_scale_onto_min_scale():
    # Labels on the least similar class: the loss falls as s falls, and a huge step
    # would send s below zero; the constraint puts it back at min_scale.
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(16, 8)).astype("float32")
    head = NormFace(5, scale=10.0, min_scale=0.01)
    head.build([(None, 8), (None,)])
    cosines = ref.cosine_matrix(embeddings, keras.ops.convert_to_numpy(head.kernel))
    labels = np.argmin(cosines, axis=1).astype("int32")
    x = keras.Input((8,))
    y = keras.Input((), dtype="int32")
    model = keras.Model([x, y], head([x, y]))
    model.compile(
        optimizer=keras.optimizers.SGD(1e4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit([embeddings, labels], labels, epochs=1, batch_size=16, verbose=0)
    assert float(keras.ops.convert_to_numpy(head.scale_variable)) == pytest.approx(0.01)


def test_layer_battery():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(8, 16)).astype("float32")
    labels = rng.integers(0, 5, size=(8,)).astype("int32")
    layer = run_layer_test(
        NormFace,
        {"num_classes": 5, "scale": 12.0, "trainable_scale": True, "min_scale": 0.1},
        [embeddings, labels],
        fit_targets=labels,
        expected_output_shape=(8, 5),
        training_for_outputs=True,
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
    )
    assert len(layer.trainable_weights) == 2


def test_fixed_scale_config_and_weights():
    layer = NormFace.from_config(NormFace(5, scale=20.0, trainable_scale=False).get_config())
    assert (layer.scale, layer.trainable_scale) == (20.0, False)
    layer.build([(None, 16), (None,)])
    assert [w.path for w in layer.weights] == [layer.kernel.path]


def test_get_and_bad_arguments():
    head = keras_face.heads.get("norm_face", 7, trainable_scale=False)
    assert isinstance(head, NormFace) and head.get_config()["scale"] == 10.0
    with pytest.raises(ValueError, match="scale=0.001"):
        NormFace(5, scale=0.001, min_scale=0.01)
    with pytest.raises(ValueError, match="min_scale=0.0"):
        NormFace(5, min_scale=0.0)
