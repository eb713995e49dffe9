"""ONNX export of the grouped-convolution backbones, run with onnxruntime.

`keras.layers.Conv2D(groups=...)` ran as an XLA-compiled function on TensorFlow, which
tf2onnx cannot convert; `keras_face.models.Conv2D` is made of depthwise/dense
convolutions, slices and additions, which it can.
"""

import os

import keras
import numpy as np
import pytest

from keras_face import models
from tests.models.backbone_testing import randomize_weights

pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
export = pytest.importorskip("keras_face.training.export")

if keras.backend.backend() != "tensorflow":
    pytest.skip("ONNX export goes through TensorFlow", allow_module_level=True)


@pytest.mark.parametrize(
    "family", ["mobilefacenet_mbf", pytest.param("vargfacenet", marks=pytest.mark.slow)]
)
def test_onnx_export_matches_keras(family, tmp_path):
    keras.utils.set_random_seed(0)
    backbone = models.get(family, input_shape=(32, 32, 3), embedding_size=32)
    randomize_weights(backbone)
    assert any(isinstance(layer, models.Conv2D) and layer.groups > 1 for layer in backbone.layers)
    path = os.path.join(tmp_path, f"{family}.onnx")
    export.export_embedding_model(backbone, path, format="onnx")
    onnx.checker.check_model(onnx.load(path))
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(backbone(images, training=False))
    exported = export.run_exported(path, images)
    scale = float(np.max(np.abs(expected)))
    assert scale > 0.1
    np.testing.assert_allclose(exported, expected, rtol=1e-4, atol=1e-4 * scale)
