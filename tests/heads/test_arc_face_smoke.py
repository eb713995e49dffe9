import numpy as np

from keras_face.heads import ArcFace
from tests.layer_testing import run_layer_test


def test_arc_face_layer_battery():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(8, 16)).astype("float32")
    labels = rng.integers(0, 5, size=(8,)).astype("int32")
    run_layer_test(
        ArcFace,
        {"num_classes": 5, "margin": 0.4},
        [embeddings, labels],
        fit_targets=labels,
        expected_output_shape=(8, 5),
        training_for_outputs=True,
    )
