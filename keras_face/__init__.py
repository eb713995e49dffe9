"""keras_face: deep face recognition with Keras 3.

`keras_face.heads`, `keras_face.models`, `keras_face.layers` and `keras_face.uncertainty` use
only Keras and run on the TensorFlow, JAX and PyTorch backends. `keras_face.data`,
`keras_face.evaluation` and `keras_face.training` use TensorFlow (tf.data, tf.distribute,
export), and so do the training methods built on it (`keras_face.distillation`,
`keras_face.class_pools`, `keras_face.age_invariant`, `keras_face.occlusion`), whose layers
use only Keras.

Every submodule is imported on first use (`keras_face.heads.ArcFace` imports
`keras_face.heads` then), so that `import keras_face` and the `keras-face` command start
in a fraction of a second: importing Keras imports its backend, TensorFlow by default,
which takes seconds. The package's layers are registered with Keras when their module is
imported: load a saved `.keras` model with `keras_face.load_model(path)` (or call
`keras_face.register_serializables()`, or import the module that defines its layers, e.g.
`import keras_face.models`, before `keras.saving.load_model`).
"""

import importlib

__version__ = "0.1.0"

_LAZY_SUBMODULES = (
    "heads",
    "models",
    "layers",
    "uncertainty",
    "data",
    "evaluation",
    "training",
    "distillation",
    "class_pools",
    "age_invariant",
    "occlusion",
    "cli",
    "errors",
    "runtime",
)


# The subpackages that define (and register with Keras) the package's layers and models.
_SERIALIZABLE_SUBMODULES = (
    "heads",
    "models",
    "layers",
    "uncertainty",
    "training",
    "distillation",
    "class_pools",
    "age_invariant",
    "occlusion",
)


def register_serializables():
    """Import every subpackage that defines a Keras layer or model of keras_face.

    Keras finds a saved layer's class only once its module is imported (the package's
    layers are registered with `keras.saving.register_keras_serializable` on import).
    After this call `keras.saving.load_model` reads any `.keras` file keras_face wrote.

    Example:
        ```python
        keras_face.register_serializables()
        model = keras.saving.load_model("embedding_model.keras")
        ```
    """
    for name in _SERIALIZABLE_SUBMODULES:
        __getattr__(name)


def load_model(path, **kwargs):
    """`keras.saving.load_model` for a `.keras` file of keras_face (in a fresh process too).

    Args:
        path: str. The `.keras` file.
        **kwargs: other arguments of `keras.saving.load_model` (`compile`, ...).

    Returns:
        The `keras.Model`.

    Example:
        ```python
        backbone = keras_face.load_model("runs/arcface/embedding_model.keras")
        ```
    """
    register_serializables()
    return importlib.import_module("keras").saving.load_model(path, **kwargs)


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        module = importlib.import_module(f"keras_face.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'keras_face' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY_SUBMODULES))


__all__ = ["load_model", "register_serializables", *_LAZY_SUBMODULES]
