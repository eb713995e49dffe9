"""The distillation training model: a student trained with a margin head and a teacher."""

import warnings

import keras
from keras import ops

from keras_face.distillation.embedding_distillation import EmbeddingDistillation
from keras_face.models import check_embedding_backbone
from keras_face.training import FaceTrainingModel


def check_teacher(teacher, backbone):
    """Check that a teacher model fits a student backbone; freeze it.

    The teacher must take the student's images (same input shape) and return one
    embedding per image `(batch, D)`. It is set to `trainable = False`; a teacher that had
    trainable weights is frozen with a warning.

    Args:
        teacher: `keras.Model` from images to embeddings.
        backbone: the student `keras.Model` from images to embeddings.

    Returns:
        int: the teacher's embedding dimension `D`.

    Raises:
        ValueError: the input shapes differ or the teacher's output is not `(batch, D)`;
            the message names both shapes.

    Example:
        ```python
        teacher_dim = keras_face.distillation.check_teacher(teacher, student_backbone)
        ```
    """
    if not isinstance(teacher, keras.Model) or not teacher.inputs:
        raise ValueError(
            "The teacher must be a built keras.Model from images to embeddings. "
            f"Received: teacher={teacher!r}"
        )
    teacher_input = tuple(teacher.inputs[0].shape[1:])
    student_input = tuple(backbone.inputs[0].shape[1:])
    if teacher_input != student_input:
        raise ValueError(
            "The teacher and the student must take the same images. Received: teacher input "
            f"shape={tuple(teacher.inputs[0].shape)}, student input "
            f"shape={tuple(backbone.inputs[0].shape)}"
        )
    output_shape = tuple(teacher.outputs[0].shape)
    if len(teacher.outputs) != 1 or len(output_shape) != 2:
        raise ValueError(
            "The teacher must return one embedding per image, (batch, dim). Received: teacher "
            f"output shapes={[tuple(output.shape) for output in teacher.outputs]}"
        )
    if teacher.trainable_weights:
        warnings.warn(
            f"The teacher {teacher.name!r} had {len(teacher.trainable_weights)} trainable "
            "weights; it is frozen (trainable=False, batch norm in inference mode) for "
            "distillation.",
            stacklevel=3,
        )
    teacher.trainable = False
    return int(output_shape[-1])


class _MeanOfValues(keras.losses.Loss):
    """`mean(y_pred)`: per-sample values reduced (and scaled for replicas) as a loss."""

    def call(self, y_true, y_pred):
        return y_pred


@keras.saving.register_keras_serializable(package="keras_face")
class DistillationTrainingModel(FaceTrainingModel):
    """Trains a student backbone with a margin head and an embedding-distillation loss.

    The objective is VarGFaceNet's `L = L_ArcFace + alpha * L_s`: the head's
    cross-entropy (the loss of `compile`, as in `FaceTrainingModel`) plus
    `weight * mean(loss(teacher, student))`, computed by an `EmbeddingDistillation` layer
    (logged as `distillation_loss`, unweighted, and `teacher_cosine`). The model's
    outputs are `{"logits", "distillation_loss", "teacher_cosine"}` (the last two per
    image); `compute_loss` adds the weighted mean to the head's loss. The teacher is
    either:

    - **online**: a `keras.Model` from images to embeddings, frozen (`trainable = False`)
      and called with `training=False`, so its batch-norm statistics never change. Feed
      `((images, labels), labels)` (`keras_face.training.make_training_dataset`);
    - **offline** (`teacher=None`, `teacher_dim=D`): its embeddings are precomputed once
      (`precompute_teacher_embeddings`) and fed with the images:
      `((images, labels, teacher_embeddings), labels)` from `make_distillation_dataset`,
      which feeds the flipped-image embedding with a flipped image.

    It is a `FaceTrainingModel` (same `compile` defaults, `fit`, MirroredStrategy and
    mixed-precision behaviour); `embedding_model` is the student backbone alone, which is
    what is evaluated, saved and exported.

    Keras's `keras.distillation.Distiller` is not used: it weighs the student and
    distillation losses convexly (`w * L_student + (1 - w) * L_distill`), which reproduces
    `L_arc + 7 L_s` only up to a global factor 1/8 (a different effective learning
    rate), and it expects teacher and student to take the same inputs and produce
    comparable outputs, while the student here is `[image, label] -> logits`.

    Args:
        backbone: the student, `keras.Model` from images to embeddings.
        head: a `keras_face.heads` head called as `head([embeddings, labels])`.
        teacher: `keras.Model` from the same images to embeddings, or `None` for offline
            teacher embeddings. Defaults to `None`.
        teacher_dim: int. Dimension of the offline teacher embeddings (required with
            `teacher=None`, ignored otherwise). Defaults to `None`.
        loss: str. See `EmbeddingDistillation`. Defaults to `"normalized_l2"` (Eq. 5).
        weight: float. alpha. Defaults to `7.0` (the paper; Keras_insightface's best
            setting is `64.0`).
        projection: `None` or `"dense"` (a bias-free map of the student to the teacher's
            dimension, for the loss only). Defaults to `None`.
        **kwargs: other keyword arguments of `keras.Model` (`name`, ...).

    Example:
        ```python
        teacher = keras.saving.load_model("teacher_embedding_model.keras")
        student = keras_face.models.vargfacenet(embedding_size=128)
        model = keras_face.distillation.DistillationTrainingModel(
            student, keras_face.heads.ArcFace(num_classes), teacher=teacher, weight=7.0)
        model.compile(optimizer=keras_face.training.L2SGD(0.1, momentum=0.9))
        model.fit(dataset, epochs=8)  # ((images, labels), labels) batches
        model.embedding_model.save("student.keras")
        ```

    References:
        - [Yan et al., VarGFaceNet, ICCV workshops 2019](https://arxiv.org/abs/1910.04985)
    """

    def __init__(
        self,
        backbone,
        head,
        teacher=None,
        teacher_dim=None,
        loss="normalized_l2",
        weight=7.0,
        projection=None,
        **kwargs,
    ):
        check_embedding_backbone(backbone)
        image_spec = backbone.inputs[0]
        image = keras.Input(shape=tuple(image_spec.shape[1:]), dtype=image_spec.dtype, name="image")
        label = keras.Input(shape=(), dtype="int32", name="label")
        if teacher is None:
            if teacher_dim is None or int(teacher_dim) < 1:
                raise ValueError(
                    "Without a teacher model the teacher embeddings are an input: pass their "
                    f"dimension as teacher_dim. Received: teacher=None, teacher_dim={teacher_dim!r}"
                )
            teacher_dim = int(teacher_dim)
            teacher_input = keras.Input(shape=(teacher_dim,), name="teacher_embedding")
            teacher_embedding = teacher_input
            inputs = [image, label, teacher_input]
        else:
            teacher_dim = check_teacher(teacher, backbone)
            # training=False: batch norm in inference mode, its moving statistics untouched.
            teacher_embedding = teacher(image, training=False)
            inputs = [image, label]
        student = backbone(image)
        distillation = EmbeddingDistillation(
            loss=loss,
            weight=weight,
            projection=projection,
            return_loss_terms=True,
            name="distillation",
        )
        try:
            student, per_sample_loss, cosine = distillation([student, teacher_embedding])
        except ValueError as error:
            raise ValueError(
                f"{error} (student {backbone.name!r}, teacher "
                f"{teacher.name if teacher is not None else 'embeddings'!r})"
            ) from error
        logits = head([student, label])
        outputs = {
            "logits": logits,
            "distillation_loss": per_sample_loss,
            "teacher_cosine": cosine,
        }
        kwargs.setdefault("name", "distillation_training_model")
        # The functional constructor of FaceTrainingModel's base: the graph differs.
        super(FaceTrainingModel, self).__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.backbone = backbone
        self.head = head
        self.teacher = teacher
        self.teacher_dim = teacher_dim
        self.distillation = distillation
        self.distillation_tracker = keras.metrics.Mean(name="distillation_loss")
        self.cosine_tracker = keras.metrics.Mean(name="teacher_cosine")
        # A keras Loss reduces the per-sample values to their mean and scales the mean
        # for the replicas of a tf.distribute strategy, as the classification loss.
        self._mean_of_values = _MeanOfValues(name="distillation_mean")
        self.check_strategy_support()

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # The head's loss (compiled) and the layers' added losses, then
        # weight * mean(distillation loss): VarGFaceNet's L_ArcFace + alpha * L_s.
        loss = super().compute_loss(
            x=x, y=y, y_pred=y_pred["logits"], sample_weight=sample_weight, training=training
        )
        per_sample = y_pred["distillation_loss"]
        self.distillation_tracker.update_state(per_sample)
        self.cosine_tracker.update_state(y_pred["teacher_cosine"])
        distillation = self.distillation.weight * self._mean_of_values(per_sample, per_sample)
        return distillation if loss is None else loss + ops.cast(distillation, loss.dtype)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, y_pred["logits"], sample_weight=sample_weight)

    @property
    def offline(self):
        """bool. Whether the teacher embeddings are an input (no teacher model)."""
        return self.teacher is None

    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "head": keras.saving.serialize_keras_object(self.head),
            "teacher": (
                None if self.teacher is None else keras.saving.serialize_keras_object(self.teacher)
            ),
            "teacher_dim": self.teacher_dim,
            "loss": self.distillation.loss,
            "weight": self.distillation.weight,
            "projection": self.distillation.projection,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("backbone", "head", "teacher"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(
                    config[key], custom_objects=custom_objects
                )
        backbone = config.pop("backbone")
        head = config.pop("head")
        return cls(backbone, head, **config)
