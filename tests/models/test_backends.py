"""The backbones on the JAX and PyTorch backends, each in a subprocess of its own.

The smallest model of each family is built by this process (TensorFlow) and, by the same
factory, in a subprocess running another Keras backend; given this process's weights it
must give the same embeddings there. The subprocess also checks that TensorFlow was
never imported (models/ must run without it).
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from tests.models.backbone_testing import SMALL_BACKBONES
from tests.models.backbone_testing import SMALL_EMBEDDING_SIZE
from tests.models.backbone_testing import randomize_weights
from tests.models.backbone_testing import synthetic_identities

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent(
    """
    import sys
    import keras
    import numpy as np
    from keras_face import models

    assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
    embedding_size = int(sys.argv[2])
    images = np.load(sys.argv[3])
    for path in sys.argv[4:]:
        family = path.rsplit("/", 1)[-1]
        model = models.get(family, input_shape=images.shape[1:], embedding_size=embedding_size)
        weights = np.load(path + "_weights.npz")
        model.set_weights([weights[f"arr_{i}"] for i in range(len(weights.files))])
        embeddings = model(images, training=False)
        assert keras.backend.standardize_dtype(embeddings.dtype) == "float32"
        embeddings = keras.ops.convert_to_numpy(embeddings)
        expected = np.load(path + ".npy")
        scale = float(np.max(np.abs(expected)))
        np.testing.assert_allclose(embeddings, expected, rtol=1e-4, atol=1e-4 * scale)
    assert "tensorflow" not in sys.modules, "TensorFlow was imported"
    print("backend ok")
    """
)


# VarGFaceNet's ~600 weights of many shapes make the first JAX build and call slow (one
# XLA compilation per initializer shape and per op), so it runs with the slow tests.
CASES = [
    pytest.param(backend, family, marks=[pytest.mark.slow] if family == "vargfacenet" else [])
    for backend in ("jax", "torch")
    for family in sorted(SMALL_BACKBONES)
]


@pytest.fixture(scope="module")
def tensorflow_reference(tmp_path_factory):
    """Per family (built on first use): weights and embeddings from this TF process."""
    folder = tmp_path_factory.mktemp("backends")
    images, _ = synthetic_identities(2, 1)
    image_path = os.path.join(folder, "images.npy")
    np.save(image_path, images)
    paths = {}

    def prepare(family):
        if family not in paths:
            keras.utils.set_random_seed(0)
            backbone = SMALL_BACKBONES[family]()
            randomize_weights(backbone)
            path = os.path.join(folder, family)
            np.savez(path + "_weights.npz", *backbone.get_weights())
            embeddings = backbone(images, training=False)
            np.save(path + ".npy", keras.ops.convert_to_numpy(embeddings))
            paths[family] = path
        return image_path, paths[family]

    return prepare


@pytest.mark.parametrize("backend, family", CASES)
def test_smallest_model_runs_on_another_backend(backend, family, tensorflow_reference):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    image_path, path = tensorflow_reference(family)
    environment = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": ROOT}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, backend, str(SMALL_EMBEDDING_SIZE), image_path, path],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "backend ok" in result.stdout
