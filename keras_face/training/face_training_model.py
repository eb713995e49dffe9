"""The training model: backbone + head, inputs `[image, label]`, output logits."""

import keras

from keras_face.heads.backend_ops import in_xla_compilation
from keras_face.models import check_embedding_backbone
from keras_face.training.training_model import TrainingModel


@keras.saving.register_keras_serializable(package="keras_face")
class FaceTrainingModel(TrainingModel):
    """Functional model `[image, label] -> logits` over a backbone and a margin head.

    The backbone (images to embeddings) is a sub-model: `model.embedding_model` *is* the
    backbone, so it shares every weight with the training model and is what gets saved
    and exported for deployment. The head receives the labels as a second input because
    the margin is applied to the target class only; it returns float32 logits for
    `SparseCategoricalCrossentropy(from_logits=True)` (the default loss of `compile`).
    Losses that a head adds itself (MagFace's feature-norm regulariser) are part of
    `model.losses` and added to the training loss by `fit`.

    Feed it `((images, labels), labels)`: `keras_face.training.make_training_dataset`
    builds such datasets.

    Args:
        backbone: `keras.Model` from images `(batch, H, W, C)` to embeddings `(batch, D)`.
        head: a `keras_face.heads` head (or `keras_face.training.SoftmaxHead`), called as
            `head([embeddings, labels])`.
        **kwargs: other keyword arguments of `keras.Model` (`name`, ...).

    Example:
        ```python
        backbone = keras_face.models.iresnet50(embedding_size=512)
        head = keras_face.heads.ArcFace(num_classes=10_572)
        model = keras_face.training.FaceTrainingModel(backbone, head)
        model.compile(optimizer=keras_face.training.L2SGD(0.1))
        model.fit(dataset, epochs=20)
        model.embedding_model.save("embedding.keras")
        ```
    """

    def __init__(self, backbone, head, **kwargs):
        check_embedding_backbone(backbone)
        num_classes = getattr(head, "num_classes", None)
        if num_classes is not None and num_classes < 2:
            # A one-class head still draws target-logit curves (tutorial 1); trained, its
            # softmax cross-entropy is identically 0 and nothing is learned.
            raise ValueError(
                f"A training model needs a head over at least 2 classes: with one class the "
                "softmax cross-entropy is identically 0 and nothing trains. "
                f"Received: num_classes={num_classes}"
            )
        image_spec = backbone.inputs[0]
        image = keras.Input(shape=tuple(image_spec.shape[1:]), dtype=image_spec.dtype, name="image")
        label = keras.Input(shape=(), dtype="int32", name="label")
        embeddings = backbone(image)
        logits = head([embeddings, label])
        kwargs.setdefault("name", "face_training_model")
        super().__init__(inputs=[image, label], outputs=logits, **kwargs)
        self.backbone = backbone
        self.head = head
        self.check_strategy_support()

    @property
    def embedding_model(self):
        """The backbone: images to embeddings, sharing the training model's weights."""
        return self.backbone

    def compile(self, optimizer="sgd", loss=None, metrics=None, **kwargs):
        """`keras.Model.compile` with the face-recognition defaults.

        Args:
            optimizer: optimizer or its name. Defaults to `"sgd"`.
            loss: Defaults to `SparseCategoricalCrossentropy(from_logits=True)`.
            metrics: Defaults to `[SparseCategoricalAccuracy("accuracy")]` (on the
                margin logits while training, so below the closed-set accuracy).
            **kwargs: other arguments of `keras.Model.compile` (`jit_compile`, ...).
        """
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics is None:
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def train_step(self, *args, **kwargs):
        # The loss and metrics of a training step see the head's training logits: with a
        # head that samples classes (`keras_face.heads.PartialFC`) their labels are the
        # columns of the sampled classes (`head.remap_labels`, read after the head's call
        # in the same step). Evaluation steps see the whole `(batch, num_classes)` logits.
        self._remapping_labels = True
        try:
            return super().train_step(*args, **kwargs)
        finally:
            self._remapping_labels = False

    def _training_labels(self, y):
        remap = getattr(self.head, "remap_labels", None)
        if remap is None or not getattr(self, "_remapping_labels", False):
            return y
        if keras.backend.backend() == "jax" and getattr(self.head, "samples", False):
            # Keras (3.15) updates the metrics of a JAX step outside the step's variable
            # state (only the metrics' variables are mapped), where the sampled classes
            # cannot be read: fail clearly instead of scoring the wrong columns.
            raise ValueError(
                "Training a FaceTrainingModel whose head samples classes "
                "(keras_face.heads.PartialFC or ClassShardedClassifier with sample_rate < 1) "
                "needs the TensorFlow or PyTorch backend; on JAX train it with a custom step "
                "over `stateless_call` (docs: class-sharded classifier). Received: backend=jax"
            )
        return remap(y)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        labels = self._training_labels(y)
        if in_xla_compilation() and y_pred.shape[-1] is not None:
            # Inside XLA a head cannot raise on a label outside [0, C): it keeps the logits
            # finite, stops the gradient of the row and counts it (LabelRangeCheck raises
            # after the batch). Clipped for the loss too, the loss stays finite. Valid
            # labels are unchanged; outside XLA a bad label raises (never clipped).
            labels = keras.ops.clip(labels, 0, y_pred.shape[-1] - 1)
        return super().compute_loss(
            x=x,
            y=labels,
            y_pred=y_pred,
            sample_weight=sample_weight,
            training=training,
        )

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, self._training_labels(y), y_pred, sample_weight)

    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "head": keras.saving.serialize_keras_object(self.head),
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        backbone = keras.saving.deserialize_keras_object(
            config.pop("backbone"), custom_objects=custom_objects
        )
        head = keras.saving.deserialize_keras_object(
            config.pop("head"), custom_objects=custom_objects
        )
        return cls(backbone, head, **config)


def build_training_model(backbone, head, name="face_training_model"):
    """Assemble `[image, label] -> logits` from a backbone and a head (`FaceTrainingModel`).

    Args:
        backbone: `keras.Model` from images to embeddings.
        head: margin head, e.g. `keras_face.heads.ArcFace(num_classes)`.
        name: str. Model name. Defaults to `"face_training_model"`.

    Returns:
        A `FaceTrainingModel`; its `embedding_model` is `backbone`.

    Example:
        ```python
        model = keras_face.training.build_training_model(
            keras_face.models.iresnet18(), keras_face.heads.ArcFace(1000))
        ```
    """
    return FaceTrainingModel(backbone, head, name=name)
