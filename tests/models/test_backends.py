"""The backbones on the JAX and PyTorch backends.

Run on the TensorFlow backend (plain `pytest`), the smallest model of each family is
built here and, by the same factory, in a subprocess running JAX or PyTorch; given this
process's weights it must give the same embeddings there, and the subprocess checks that
TensorFlow was never imported (models/ must run without it).

Run on JAX or PyTorch (as CI does with `KERAS_BACKEND=jax pytest tests/models/test_backends.py`),
the same models run in this process and are compared with the PyTorch re-implementation
of `tests/models/torch_reference.py`; the subprocess cases are skipped there.
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

CURRENT_BACKEND = keras.backend.backend()
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
    if CURRENT_BACKEND != "tensorflow":
        pytest.skip("started from the TensorFlow backend only (this run tests its own)")
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
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "backend ok" in result.stdout


@pytest.mark.parametrize(
    "family",
    [
        pytest.param(family, marks=[pytest.mark.slow] if family == "vargfacenet" else [])
        for family in sorted(SMALL_BACKBONES)
    ],
)
def test_smallest_model_on_the_current_backend(family):
    if CURRENT_BACKEND == "tensorflow":
        pytest.skip("the TensorFlow backend is covered by the family tests")
    torch_reference = pytest.importorskip("tests.models.torch_reference")
    keras.utils.set_random_seed(0)
    backbone = SMALL_BACKBONES[family]()
    randomize_weights(backbone)
    images, _ = synthetic_identities(2, 1)
    embeddings = backbone(images, training=False)
    assert keras.backend.standardize_dtype(embeddings.dtype) == "float32"
    embeddings = keras.ops.convert_to_numpy(embeddings)
    reference = {
        "iresnet18": lambda: torch_reference.iresnet_forward(backbone, images, (2, 2, 2, 2)),
        "mobilefacenet": lambda: torch_reference.mobilefacenet_forward(backbone, images, 1),
        "vargfacenet": lambda: torch_reference.vargfacenet_forward(backbone, images),
    }[family]().numpy()
    np.testing.assert_allclose(
        embeddings, reference, rtol=1e-3, atol=1e-3 * np.max(np.abs(reference))
    )
