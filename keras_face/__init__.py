"""keras_face: deep face recognition with Keras 3.

`keras_face.heads`, `keras_face.models` and `keras_face.uncertainty` use only Keras and run
on the TensorFlow, JAX and PyTorch backends. `keras_face.data`, `keras_face.evaluation` and
`keras_face.training` use TensorFlow (tf.data, tf.distribute, export) and are imported on
first use, so that `import keras_face` works on a machine without TensorFlow.
"""

import importlib

# Imported eagerly: they use only Keras (no TensorFlow needed).
from keras_face import heads  # noqa: F401
from keras_face import models  # noqa: F401
from keras_face import uncertainty  # noqa: F401

__version__ = "0.1.0"

_LAZY_SUBMODULES = ("data", "evaluation", "training", "cli", "errors")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        module = importlib.import_module(f"keras_face.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'keras_face' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY_SUBMODULES))
