"""Training methods: what `training.method` selects, and how a method plugs into `train`.

A training method decides two things of a run and nothing else:

- the training model built from the backbone and the head of the config
  (`build_model(config, backbone, head) -> keras.Model`). The model has an
  `embedding_model` property: the network that the run evaluates, checkpoints and
  exports (the backbone for plain classification, the student for distillation, the
  gallery network for DCQ). Its `compile(optimizer=..., jit_compile=...)` supplies its
  own loss, and every state it needs to resume (pools, counters, teachers' inputs) is a
  variable of the model, so that the step-level backups restore it;
- optionally, how the training batches are made (`adapt_data(config, training_data,
  global_batch) -> TrainingData`), for methods that read more than `(image, label)`:
  two images per identity, precomputed teacher embeddings, ages, landmarks.

Methods are named by `"module:function"` strings and imported when selected: the
methods live in their own subpackages (`keras_face.distillation`, ...), which import
`keras_face.training`, so this registry cannot import them first.

Example:
    ```python
    method = keras_face.training.training_method("classification")
    model = method.build_model(config, backbone, head)
    ```
"""

import dataclasses
import difflib
import importlib

from keras_face.errors import ConfigError
from keras_face.training.face_training_model import FaceTrainingModel


@dataclasses.dataclass(frozen=True)
class TrainingMethod:
    """One value of `training.method`.

    Args:
        name: str. The config value.
        model: str. `"module:function"` of `build_model(config, backbone, head)`,
            returning an uncompiled `keras.Model` with an `embedding_model` property.
        data: str or `None`. `"module:function"` of `adapt_data(config, training_data,
            global_batch)`, returning the `TrainingData` of the method. Defaults to
            `None` (the `((images, labels), labels)` batches of classification).
        doc: str. One line for the option table. Defaults to `""`.

    Example:
        ```python
        keras_face.training.TrainingMethod(
            "classification", model="keras_face.training.training_methods:build_classifier")
        ```
    """

    name: str
    model: str
    data: str = None
    doc: str = ""

    @staticmethod
    def _resolve(target):
        module_name, _, attribute = target.partition(":")
        return getattr(importlib.import_module(module_name), attribute)

    def build_model(self, config, backbone, head):
        """The training model of this method (see the module docstring)."""
        return self._resolve(self.model)(config, backbone, head)

    def adapt_data(self, config, training_data, global_batch):
        """The training data of this method; `training_data` itself without `data`."""
        if self.data is None:
            return training_data
        return self._resolve(self.data)(config, training_data, global_batch)


def build_classifier(config, backbone, head):
    """Classification: `FaceTrainingModel(backbone, head)`, the default method.

    Args:
        config: dict. A validated configuration (unused: the head carries the margin).
        backbone: `keras.Model` from images to embeddings.
        head: a margin head or `keras_face.training.SoftmaxHead`.

    Returns:
        A `keras_face.training.FaceTrainingModel`.

    Example:
        ```python
        model = keras_face.training.build_classifier(config, backbone, head)
        ```
    """
    return FaceTrainingModel(backbone, head)


TRAINING_METHODS = {
    method.name: method
    for method in (
        TrainingMethod(
            "classification",
            model="keras_face.training.training_methods:build_classifier",
            doc="Backbone + margin head trained with softmax cross-entropy.",
        ),
        TrainingMethod(
            "distillation",
            model="keras_face.distillation.distillation_method:build_distillation_model",
            data="keras_face.distillation.distillation_method:adapt_distillation_data",
            doc="A student trained with its margin head and a teacher's embeddings "
            "(distillation.*).",
        ),
        TrainingMethod(
            "f2c",
            model="keras_face.class_pools.pool_training:build_pool_model",
            data="keras_face.class_pools.pool_training:adapt_pool_data",
            doc="F2C: probe net against a dynamic class pool of gallery features, no "
            "classifier kernel (pool.*).",
        ),
        TrainingMethod(
            "dcq",
            model="keras_face.class_pools.pool_training:build_pool_model",
            data="keras_face.class_pools.pool_training:adapt_pool_data",
            doc="DCQ: CosFace over a dynamic class queue of gallery features (pool.*).",
        ),
        TrainingMethod(
            "age_invariant",
            model="keras_face.age_invariant.age_invariant_method:build_age_invariant_model",
            data="keras_face.age_invariant.age_invariant_method:adapt_age_data",
            doc="MTLFace: attention decomposition + age loss + cross-age adversary (age.*).",
        ),
        TrainingMethod(
            "occlusion_adversarial",
            model="keras_face.occlusion.occlusion_method:build_occlusion_model",
            data="keras_face.occlusion.occlusion_method:adapt_occlusion_data",
            doc="Clean loss + loss under the mask an adversary picks (occlusion.*).",
        ),
    )
}


def training_method(name):
    """The `TrainingMethod` called `name`.

    Args:
        name: str. A key of `TRAINING_METHODS`.

    Returns:
        `TrainingMethod`.

    Raises:
        ConfigError: an unknown name (with the closest known one).

    Example:
        ```python
        keras_face.training.training_method("classification").name
        ```
    """
    if name not in TRAINING_METHODS:
        close = difflib.get_close_matches(str(name), list(TRAINING_METHODS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"Unknown training method; expected one of {', '.join(TRAINING_METHODS)}.{hint} "
            f"Received: training.method={name!r}"
        )
    return TRAINING_METHODS[name]
