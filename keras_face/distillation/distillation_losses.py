"""Embedding distillation losses, per sample, in `keras.ops` (TensorFlow, JAX, PyTorch).

Each function takes the teacher and the student embeddings of the same images, `(B, D)`
each, and returns one value per image, `(B,)`. They are computed in float32 whatever the
inputs' dtype. The normalised forms use the heads' overflow-safe L2 normaliser
(`keras_face.heads.CosineClassifier.normalize`, epsilon 1e-12): a zero embedding gives a
finite loss and a finite gradient.

With `cos` the cosine of the teacher and student embeddings:

| name | value | source |
|---|---|---|
| `"normalized_l2"` | `||t/|t| - s/|s|||^2 = 2 - 2 cos` | VarGFaceNet Eq. 5 (trained with) |
| `"angular"` | `(1 - cos)^2` | VarGFaceNet Eq. 4 |
| `"cosine"` | `1 - cos` | Keras_insightface `distiller_loss_cosine` |
| `"euclidean"` | `sum((s - t)^2)`, unnormalised | Keras_insightface `distiller_loss_euclidean` |

A weight `w` on `"cosine"` equals a weight `w / 2` on `"normalized_l2"`: Keras_insightface's
`distill: 128` is VarGFaceNet's alpha = 64, and the paper's alpha = 7 is 14 on `1 - cos`.
"""

from keras import ops

from keras_face.heads.cosine_classifier import CosineClassifier


def _as_float32_pair(teacher, student):
    teacher = ops.cast(teacher, "float32")
    student = ops.cast(student, "float32")
    if len(teacher.shape) != 2 or len(student.shape) != 2 or teacher.shape[-1] != student.shape[-1]:
        raise ValueError(
            "Teacher and student embeddings must both be (batch, dim) with the same dim. "
            f"Received: teacher shape={tuple(teacher.shape)}, student shape={tuple(student.shape)}"
        )
    return teacher, student


def teacher_student_cosine(teacher, student):
    """Per-sample cosine of teacher and student embeddings, `(B,)`, in float32.

    Args:
        teacher: tensor `(B, D)`. Teacher embeddings (any norm).
        student: tensor `(B, D)`. Student embeddings of the same images (any norm).

    Returns:
        float32 tensor `(B,)`; 0 where either embedding is zero.

    Example:
        ```python
        keras_face.distillation.teacher_student_cosine([[3.0, 4.0]], [[4.0, 3.0]])  # [0.96]
        ```
    """
    teacher, student = _as_float32_pair(teacher, student)
    teacher_unit, _ = CosineClassifier.normalize(teacher)
    student_unit, _ = CosineClassifier.normalize(student)
    return ops.sum(teacher_unit * student_unit, axis=-1)


def normalized_l2_distillation(teacher, student):
    """VarGFaceNet's Eq. 5: squared distance of the L2-normalised embeddings, `2 - 2 cos`.

    The form the VarGFaceNet authors trained with ("l2_norm of teacher and student, then
    an L2 loss"; the first author confirms in zma-c-137/VarGFaceNet#3 that it is the cosine
    distance after normalisation). Its mean over the batch is `L_s`, added to ArcFace
    with weight alpha = 7 in the paper.

    Args:
        teacher: tensor `(B, D)`. Teacher embeddings (any norm).
        student: tensor `(B, D)`. Student embeddings of the same images (any norm).

    Returns:
        float32 tensor `(B,)` in `[0, 4]`.

    Example:
        ```python
        keras_face.distillation.normalized_l2_distillation(
            [[3.0, 4.0], [1.0, 0.0]], [[4.0, 3.0], [0.0, 2.0]])  # [0.08, 2.0]
        ```

    References:
        - [Yan et al., VarGFaceNet, ICCV workshops 2019](https://arxiv.org/abs/1910.04985)
    """
    return 2.0 - 2.0 * teacher_student_cosine(teacher, student)


def angular_distillation(teacher, student):
    """VarGFaceNet's Eq. 4, the angular distillation loss: `(1 - cos)^2`.

    Args:
        teacher: tensor `(B, D)`. Teacher embeddings (any norm).
        student: tensor `(B, D)`. Student embeddings of the same images (any norm).

    Returns:
        float32 tensor `(B,)` in `[0, 4]`.

    Example:
        ```python
        keras_face.distillation.angular_distillation(
            [[3.0, 4.0], [1.0, 0.0]], [[4.0, 3.0], [0.0, 2.0]])  # [0.0016, 1.0]
        ```

    References:
        - [Yan et al., VarGFaceNet, ICCV workshops 2019](https://arxiv.org/abs/1910.04985)
    """
    return ops.square(1.0 - teacher_student_cosine(teacher, student))


def cosine_distillation(teacher, student):
    """Cosine distance `1 - cos` (Keras_insightface's `distiller_loss_cosine`).

    Keras_insightface divides by `norm + 1e-5` and replaces non-finite teacher entries;
    this function uses the exact normaliser (so `1 - 0.96` is `0.04`, where
    Keras_insightface gives `0.04000384`) and leaves non-finite values to the dataset
    checks (`keras_face.distillation.check_teacher_embeddings`).

    Args:
        teacher: tensor `(B, D)`. Teacher embeddings (any norm).
        student: tensor `(B, D)`. Student embeddings of the same images (any norm).

    Returns:
        float32 tensor `(B,)` in `[0, 2]`.

    Example:
        ```python
        keras_face.distillation.cosine_distillation([[3.0, 4.0]], [[4.0, 3.0]])  # [0.04]
        ```
    """
    return 1.0 - teacher_student_cosine(teacher, student)


def euclidean_distillation(teacher, student):
    """Raw squared Euclidean distance `sum((s - t)^2)` (Keras_insightface), unnormalised.

    It depends on the embeddings' norms, which a margin head leaves free: the VarGFaceNet
    issue tracker (#10) reports a loss of 0.0038 beside a cross-entropy of 12 that needed
    a weight of 2000. Prefer `normalized_l2_distillation`.

    Args:
        teacher: tensor `(B, D)`. Teacher embeddings.
        student: tensor `(B, D)`. Student embeddings of the same images.

    Returns:
        float32 tensor `(B,)`.

    Example:
        ```python
        keras_face.distillation.euclidean_distillation([[3.0, 4.0]], [[4.0, 3.0]])  # [2.0]
        ```
    """
    teacher, student = _as_float32_pair(teacher, student)
    return ops.sum(ops.square(student - teacher), axis=-1)


DISTILLATION_LOSSES = {
    "normalized_l2": normalized_l2_distillation,
    "angular": angular_distillation,
    "cosine": cosine_distillation,
    "euclidean": euclidean_distillation,
}


def get_distillation_loss(name):
    """The per-sample distillation loss function called `name`.

    Args:
        name: str. A key of `DISTILLATION_LOSSES`: `"normalized_l2"` (Eq. 5),
            `"angular"` (Eq. 4), `"cosine"` or `"euclidean"`.

    Returns:
        callable `(teacher, student) -> (B,)`.

    Example:
        ```python
        loss = keras_face.distillation.get_distillation_loss("normalized_l2")
        ```
    """
    if name not in DISTILLATION_LOSSES:
        raise ValueError(
            f"Unknown distillation loss; expected one of {list(DISTILLATION_LOSSES)}. "
            f"Received: loss={name!r}"
        )
    return DISTILLATION_LOSSES[name]
