import numpy as np
import pytest

import keras_face
from keras_face.heads import CosFace
from keras_face.heads import am_softmax
from tests.heads import checks
from tests.heads import edge_cases
from tests.heads import numpy_reference as ref
from tests.layer_testing import run_layer_test


def cos_reference(scale=64.0, margin=0.35):
    return lambda c, labels: ref.cos_face(c, labels, scale, margin)


def test_matches_numpy_reference_on_edge_cases():
    cases = edge_cases.edge_cases()
    layer = edge_cases.set_kernel(CosFace(5), cases.kernel)
    checks.check_outputs(layer, cases, cos_reference(), 64.0)
    checks.check_outputs(
        layer, cases, lambda c, labels: ref.plain(c, labels, 64.0), 64.0, training=False
    )


def test_gradients_finite_and_match_central_differences():
    cases = edge_cases.edge_cases()
    layer = edge_cases.set_kernel(CosFace(5, scale=30.0, margin=0.4), cases.kernel)
    checks.check_gradients(layer, cases, cos_reference(30.0, 0.4))


def test_am_softmax_is_cos_face_with_scale_30():
    head = am_softmax(5)
    assert isinstance(head, CosFace)
    assert (head.scale, head.margin) == (30.0, 0.35)
    by_name = keras_face.heads.get("AM-Softmax", 5, margin=0.3)
    assert isinstance(by_name, CosFace) and (by_name.scale, by_name.margin) == (30.0, 0.3)
    cases = edge_cases.edge_cases()
    head = edge_cases.set_kernel(head, cases.kernel)
    checks.check_outputs(head, cases, cos_reference(30.0), 30.0)


def test_layer_battery():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(8, 16)).astype("float32")
    labels = rng.integers(0, 5, size=(8,)).astype("int32")
    run_layer_test(
        CosFace,
        {"num_classes": 5, "scale": 30.0, "margin": 0.4},
        [embeddings, labels],
        fit_targets=labels,
        expected_output_shape=(8, 5),
        training_for_outputs=True,
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="margin=-0.1"):
        CosFace(5, margin=-0.1)
