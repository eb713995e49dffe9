"""Every private Keras and TensorFlow name that keras_face relies on, in one place.

`FaceTrainingModel` works around three gaps of `model.fit` under a `tf.distribute`
strategy, and the resumable `BackupAndRestore` skips finished epochs with the hook that
`keras.callbacks.BackupAndRestore` uses. These need names that are not public API:

- `Model._maybe_symbolic_build(iterator=, data_batch=)`: the hook the TensorFlow trainer
  calls before `fit`, `evaluate`, `train_on_batch` and `test_on_batch` to build the
  metrics and the loss under a strategy. `FaceTrainingModel` overrides it
  (`SYMBOLIC_BUILD_HOOK`).
- `Model._symbolic_build(data_batch=)`: builds the model, the compiled metrics and loss
  and the optimizer from a batch of symbolic tensors (`symbolic_build`).
- `Model._distribute_strategy` (TensorFlow trainer only): the strategy whose scope the
  model was created in, `None` outside any; the public `distribute_strategy` falls back to
  the current strategy (`distribute_strategy_of`).
- `Layer._flatten_layers(include_self=, recursive=)`: every nested layer once, including
  those of sub-models (`nested_layers`).
- `Model._initial_epoch`: `fit` starts from it when a callback sets it in
  `on_train_begin` (`set_initial_epoch`).
- `MultiWorkerMirroredStrategy.extended._in_multi_worker_mode()`: the test by which Keras
  averages a step's logs across workers with `strategy.reduce("MEAN", value, axis=0)`
  (`in_multi_worker_mode`).

Each is pinned by a test in `tests/training/test_keras_compat.py` that fails when a Keras
or TensorFlow upgrade removes it or changes what it does, and `check_keras_version` warns
(`KerasCompatibilityWarning`) when the installed Keras is outside the versions they were
verified on (`VERIFIED_KERAS_VERSIONS`).
"""

import functools
import warnings

import keras
import tensorflow as tf

# (major, minor) versions of Keras on which every internal above was verified.
VERIFIED_KERAS_VERSIONS = ((3, 15),)

# The Keras hook that `FaceTrainingModel` overrides (the TensorFlow trainer calls it).
SYMBOLIC_BUILD_HOOK = "_maybe_symbolic_build"


class KerasCompatibilityWarning(UserWarning):
    """The installed Keras is not a version on which the internals used were verified.

    Example:
        ```python
        import warnings

        warnings.simplefilter("error", keras_face.training.keras_compat.KerasCompatibilityWarning)
        ```
    """


def parse_version(version):
    """`(major, minor, patch)` of a version string such as `"3.15.1"` or `"3.16.0.dev2025"`.

    Args:
        version: str. A Keras version string.

    Returns:
        tuple of three ints (a missing or non-numeric part counts as 0).

    Example:
        ```python
        keras_face.training.keras_compat.parse_version("3.15.1")  # (3, 15, 1)
        ```
    """
    numbers = []
    for part in str(version).split(".")[:3]:
        digits = ""
        for character in part:
            if not character.isdigit():
                break
            digits += character
        numbers.append(int(digits) if digits else 0)
    while len(numbers) < 3:
        numbers.append(0)
    return tuple(numbers)


def is_verified_keras_version(version=None):
    """Whether a Keras version is one of `VERIFIED_KERAS_VERSIONS`.

    Args:
        version: str. A Keras version. Defaults to the installed `keras.__version__`.

    Returns:
        bool.

    Example:
        ```python
        keras_face.training.keras_compat.is_verified_keras_version("3.15.1")  # True
        ```
    """
    version = keras.__version__ if version is None else version
    return parse_version(version)[:2] in VERIFIED_KERAS_VERSIONS


def check_keras_version(version=None):
    """Warn once if a Keras version is outside the versions the internals were verified on.

    Args:
        version: str. A Keras version. Defaults to the installed `keras.__version__`.

    Returns:
        bool. Whether the version is verified.

    Example:
        ```python
        keras_face.training.keras_compat.check_keras_version()
        ```
    """
    version = keras.__version__ if version is None else str(version)
    verified = is_verified_keras_version(version)
    if not verified:
        _warn_unverified(version)
    return verified


@functools.cache
def _warn_unverified(version):
    verified = ", ".join(f"{major}.{minor}" for major, minor in VERIFIED_KERAS_VERSIONS)
    warnings.warn(
        "keras_face's FaceTrainingModel relies on Keras internals under a tf.distribute "
        f"strategy that were verified on Keras {verified} only; run "
        "tests/training/test_keras_compat.py to check this version. "
        f"Received: keras.__version__={version!r}",
        KerasCompatibilityWarning,
        stacklevel=3,
    )


def distribute_strategy_of(model):
    """The `tf.distribute` strategy whose scope `model` was created in, or `None`.

    Unlike the public `model.distribute_strategy`, which falls back to the current
    (default) strategy, this tells a model created outside any strategy apart. Only the
    TensorFlow trainer has the attribute: on the JAX and PyTorch backends it is `None`.

    Args:
        model: `keras.Model`.

    Returns:
        A `tf.distribute.Strategy` or `None`.

    Example:
        ```python
        with keras_face.training.get_strategy("mirrored").scope():
            model = keras_face.training.build_training_model(backbone, head)
        keras_face.training.keras_compat.distribute_strategy_of(model)  # MirroredStrategy
        ```
    """
    if keras.backend.backend() != "tensorflow":
        return None
    return model._distribute_strategy


def symbolic_build(model, data_batch):
    """Build a model's state, compiled metrics and loss and optimizer from symbolic inputs.

    What Keras does itself before the first step, here from the shapes and dtypes of
    `data_batch` rather than from a real batch.

    Args:
        model: a compiled `keras.Model`.
        data_batch: `(x, y)` or `(x, y, sample_weight)` of `keras.KerasTensor`s (or
            arrays, whose shapes and dtypes are used).

    Example:
        ```python
        image, label = model.inputs
        keras_face.training.keras_compat.symbolic_build(model, ((image, label), label))
        ```
    """
    model._symbolic_build(data_batch=data_batch)


def nested_layers(layer):
    """Every layer inside `layer` (recursively, through sub-models), each once, not itself.

    Args:
        layer: `keras.layers.Layer` or `keras.Model`.

    Returns:
        list of layers.

    Example:
        ```python
        batch_norms = [
            sublayer
            for sublayer in keras_face.training.keras_compat.nested_layers(model)
            if isinstance(sublayer, keras.layers.BatchNormalization)
        ]
        ```
    """
    return layer._flatten_layers(include_self=False, recursive=True)


def set_initial_epoch(model, epoch):
    """Make the running `model.fit` start from `epoch` (call it from `on_train_begin`).

    The hook of `keras.callbacks.BackupAndRestore`: `fit` reads it after the callbacks'
    `on_train_begin`. `None` restores the `initial_epoch` argument of `fit`.

    Args:
        model: `keras.Model`.
        epoch: int or `None`.

    Example:
        ```python
        class ResumeAtEpoch(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                keras_face.training.keras_compat.set_initial_epoch(self.model, 3)
        ```
    """
    model._initial_epoch = epoch


def in_multi_worker_mode(strategy):
    """Whether Keras averages a step's logs across workers (multi-worker MWMS).

    True for a `MultiWorkerMirroredStrategy` over more than one worker. Keras then
    averages every log value with `strategy.reduce("MEAN", value, axis=0)`, which fails
    on scalars (tensorflow#72388).

    Args:
        strategy: a `tf.distribute.Strategy` or `None`.

    Returns:
        bool.

    Example:
        ```python
        keras_face.training.keras_compat.in_multi_worker_mode(tf.distribute.get_strategy())
        ```
    """
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        strategy.extended._in_multi_worker_mode()
    )
