"""The distillation layer: adds `weight * mean(loss(teacher, student))` while training."""

import math

import keras
from keras import ops

from keras_face.distillation.distillation_losses import DISTILLATION_LOSSES
from keras_face.distillation.distillation_losses import get_distillation_loss
from keras_face.distillation.distillation_losses import teacher_student_cosine

PROJECTIONS = (None, "dense")


@keras.saving.register_keras_serializable(package="keras_face")
class EmbeddingDistillation(keras.layers.Layer):
    """Pulls the student's embedding to the teacher's: `add_loss(weight * mean(loss))`.

    Called as `layer([student_embedding, teacher_embedding])`, it returns the student
    embedding unchanged. When training it adds `weight * mean(loss(teacher, student))` to
    the layer's losses (so `model.fit` adds it to the classification loss, the objective
    `L = L_ArcFace + alpha * L_s` of VarGFaceNet) and updates two mean metrics that `fit`
    logs: `distillation_loss` (the unweighted batch mean) and `teacher_cosine` (the mean
    teacher-student cosine). At inference nothing is added.

    The teacher receives no gradient (`stop_gradient`). When the student and teacher
    dimensions differ, `projection="dense"` maps the student to the teacher's dimension
    with a bias-free `Dense` (Keras_insightface's `distill_map`), used only for the loss:
    the returned and deployed embedding is the raw student. Without a projection,
    different dimensions are an error.

    The metrics are updated on TensorFlow and PyTorch; JAX's stateless `fit` step keeps
    the loss but drops metric updates made inside a layer.

    With `return_loss_terms=True` the layer adds nothing and returns
    `[student, per_sample_loss, cosine]` instead, for a model that adds the loss itself
    in `compute_loss` (`DistillationTrainingModel` does). Under a `tf.distribute`
    strategy that is required: the replicas run the model in parallel threads over the
    same layer objects, and a layer's list of added losses is shared by them (with two
    CPU replicas a replica reads the other's loss too, so the logged loss is wrong).

    Args:
        loss: str. `"normalized_l2"` (Eq. 5, `2 - 2 cos`), `"angular"` (Eq. 4,
            `(1 - cos)^2`), `"cosine"` (`1 - cos`) or `"euclidean"` (raw). Defaults to
            `"normalized_l2"`.
        weight: float. alpha, the weight of the mean loss. Defaults to `7.0` (the paper).
        projection: `None` or `"dense"`. Defaults to `None`.
        kernel_initializer: initializer of the projection. Defaults to
            `"glorot_uniform"`.
        return_loss_terms: bool. Return `[student, per_sample_loss, cosine]` (both
            `(B,)`, float32, computed in training and inference) and add nothing.
            Defaults to `False`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        layer = keras_face.distillation.EmbeddingDistillation("normalized_l2", weight=7.0)
        student = layer([student_embeddings, teacher_embeddings], training=True)
        ```

    References:
        - [Yan et al., VarGFaceNet, ICCV workshops 2019](https://arxiv.org/abs/1910.04985)
    """

    def __init__(
        self,
        loss="normalized_l2",
        weight=7.0,
        projection=None,
        kernel_initializer="glorot_uniform",
        return_loss_terms=False,
        **kwargs,
    ):
        # The inputs keep their dtype: under a mixed policy the teacher's float32
        # embeddings are not rounded to float16 (the losses compute in float32).
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if loss not in DISTILLATION_LOSSES:
            raise ValueError(
                f"Unknown distillation loss; expected one of {list(DISTILLATION_LOSSES)}. "
                f"Received: loss={loss!r}"
            )
        weight = float(weight)
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight must be a finite number >= 0. Received: weight={weight}")
        if projection not in PROJECTIONS:
            raise ValueError(
                f"projection must be one of {list(PROJECTIONS)}. "
                f"Received: projection={projection!r}"
            )
        self.loss = loss
        self.weight = weight
        self.projection = projection
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.return_loss_terms = bool(return_loss_terms)
        self.loss_function = get_distillation_loss(loss)
        self.projection_layer = None
        if not self.return_loss_terms:
            # With return_loss_terms the model that adds the loss logs these.
            self.loss_tracker = keras.metrics.Mean(name="distillation_loss")
            self.cosine_tracker = keras.metrics.Mean(name="teacher_cosine")

    def build(self, input_shape):
        student_shape, teacher_shape = input_shape
        student_dim, teacher_dim = student_shape[-1], teacher_shape[-1]
        if student_dim != teacher_dim:
            if self.projection is None:
                raise ValueError(
                    "The student and teacher embeddings have different dimensions; pass "
                    "projection='dense' to map the student to the teacher's dimension for "
                    f"the loss. Received: student shape={tuple(student_shape)}, teacher "
                    f"shape={tuple(teacher_shape)}"
                )
            self.projection_layer = keras.layers.Dense(
                teacher_dim,
                use_bias=False,
                kernel_initializer=self.kernel_initializer,
                dtype=self.dtype_policy,
                name="projection",
            )
            self.projection_layer.build(tuple(student_shape))

    def projected(self, student):
        """The student embedding in the teacher's dimension (itself without projection)."""
        if self.projection_layer is None:
            return student
        return self.projection_layer(student)

    def loss_terms(self, student, teacher):
        """Per-sample loss and cosine `(B,)` of the (projected) student and the teacher."""
        teacher = ops.stop_gradient(teacher)
        projected = self.projected(student)
        return self.loss_function(teacher, projected), teacher_student_cosine(teacher, projected)

    def call(self, inputs, training=None):
        student, teacher = inputs
        if self.return_loss_terms:
            per_sample, cosine = self.loss_terms(student, teacher)
            return [student, per_sample, cosine]
        if training:
            per_sample, cosine = self.loss_terms(student, teacher)
            mean_loss = ops.mean(per_sample)
            self.add_loss(self.weight * mean_loss)
            self.loss_tracker.update_state(mean_loss)
            self.cosine_tracker.update_state(cosine)
        return student

    def compute_output_shape(self, input_shape):
        student_shape = tuple(input_shape[0])
        if self.return_loss_terms:
            return [student_shape, student_shape[:1], student_shape[:1]]
        return student_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "loss": self.loss,
                "weight": self.weight,
                "projection": self.projection,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "return_loss_terms": self.return_loss_terms,
            }
        )
        return config
