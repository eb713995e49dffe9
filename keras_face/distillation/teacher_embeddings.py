"""Offline teachers: embeddings of every training image (and its mirror) computed once."""

import dataclasses
import os

import numpy as np

EMBEDDINGS_KEY = "embeddings"
FLIPPED_KEY = "flipped_embeddings"
TEACHER_KEY = "teacher"


@dataclasses.dataclass(frozen=True)
class TeacherEmbeddings:
    """A teacher's embeddings of the training images, in the images' order.

    Args:
        embeddings: float32 array `(N, D)`: the teacher's embedding of image `i`.
        flipped_embeddings: float32 array `(N, D)`: of image `i` flipped left-right (fed
            when the pipeline flips the image).
        teacher: str. What produced them (a model name or path), recorded in the file.
            Defaults to `""`.

    Example:
        ```python
        teacher_embeddings = keras_face.distillation.precompute_teacher_embeddings(
            teacher, faces.images)
        teacher_embeddings.save("teacher.npz")
        ```
    """

    embeddings: np.ndarray
    flipped_embeddings: np.ndarray
    teacher: str = ""

    def __post_init__(self):
        embeddings = np.asarray(self.embeddings, dtype=np.float32)
        flipped = np.asarray(self.flipped_embeddings, dtype=np.float32)
        check_teacher_embeddings(embeddings, flipped)
        object.__setattr__(self, "embeddings", embeddings)
        object.__setattr__(self, "flipped_embeddings", flipped)
        object.__setattr__(self, "teacher", str(self.teacher))

    @property
    def num_images(self):
        """int. Number of images (rows)."""
        return int(self.embeddings.shape[0])

    @property
    def dim(self):
        """int. Embedding dimension of the teacher."""
        return int(self.embeddings.shape[1])

    def save(self, path):
        """Write an `.npz` file (`embeddings`, `flipped_embeddings`, `teacher`).

        Args:
            path: str. Destination, ending in `.npz`.
        """
        path = os.fspath(path)
        if not path.endswith(".npz"):
            raise ValueError(f"Teacher embeddings are saved as .npz. Received: path={path!r}")
        np.savez(
            path,
            **{
                EMBEDDINGS_KEY: self.embeddings,
                FLIPPED_KEY: self.flipped_embeddings,
                TEACHER_KEY: np.array(self.teacher),
            },
        )


def check_teacher_embeddings(embeddings, flipped_embeddings, num_images=None, dim=None):
    """Raise a `ValueError` naming the problem unless the teacher embeddings are usable.

    Checked: both arrays are `(N, D)` with the same shape, every value is finite (no
    silent replacement, unlike Keras_insightface's `1/sqrt(D)`), no row is zero, and,
    when given, `N == num_images` and `D == dim`.

    Args:
        embeddings: array `(N, D)`.
        flipped_embeddings: array `(N, D)`.
        num_images: int. The number of training images. Defaults to `None` (unchecked).
        dim: int. The dimension the student (or its projection) expects. Defaults to
            `None` (unchecked).

    Example:
        ```python
        keras_face.distillation.check_teacher_embeddings(t, t_flip, num_images=len(images))
        ```
    """
    embeddings = np.asarray(embeddings)
    flipped_embeddings = np.asarray(flipped_embeddings)
    if embeddings.ndim != 2 or flipped_embeddings.shape != embeddings.shape:
        raise ValueError(
            "Teacher embeddings and flipped embeddings must both be (num_images, dim). "
            f"Received: embeddings shape={embeddings.shape}, flipped_embeddings "
            f"shape={flipped_embeddings.shape}"
        )
    for name, values in (("embeddings", embeddings), ("flipped_embeddings", flipped_embeddings)):
        finite = np.isfinite(values)
        if not finite.all():
            rows = np.flatnonzero(~finite.all(axis=1))
            raise ValueError(
                f"Teacher {name} hold non-finite values in {rows.size} rows (first rows: "
                f"{rows[:5].tolist()}). Recompute them; they are not replaced. "
                f"Received: {name} with {int((~finite).sum())} non-finite values"
            )
        zero = np.flatnonzero(~np.any(values != 0, axis=1))
        if zero.size:
            raise ValueError(
                f"Teacher {name} have zero rows, which have no direction to distil. "
                f"Received: zero rows {zero[:5].tolist()} (of {zero.size})"
            )
    if num_images is not None and embeddings.shape[0] != int(num_images):
        raise ValueError(
            f"The teacher embeddings have {embeddings.shape[0]} rows but there are "
            f"{int(num_images)} training images; row i must be the embedding of image i. "
            f"Received: embeddings shape={embeddings.shape}, num_images={int(num_images)}"
        )
    if dim is not None and embeddings.shape[1] != int(dim):
        raise ValueError(
            f"The teacher embeddings have dimension {embeddings.shape[1]} but {int(dim)} is "
            f"expected. Received: embeddings shape={embeddings.shape}, expected "
            f"shape=(num_images, {int(dim)})"
        )


def precompute_teacher_embeddings(teacher, images, batch_size=256, name=None):
    """Run a teacher once over the training images and their mirror images.

    The teacher is called in inference mode (`predict`). Use the result with
    `make_distillation_dataset` and an offline `DistillationTrainingModel`: the students
    of a tutorial or a sweep then pay for the teacher once.

    Args:
        teacher: `keras.Model` from images to embeddings.
        images: uint8 array `(N, H, W, 3)`, raw RGB (as the training pipeline feeds it).
        batch_size: int. Batch of the teacher's `predict`. Defaults to `256`.
        name: str. Recorded as `teacher`. Defaults to `None` (`teacher.name`).

    Returns:
        `TeacherEmbeddings`.

    Raises:
        ValueError: the teacher's embeddings are non-finite or zero.

    Example:
        ```python
        teacher_embeddings = keras_face.distillation.precompute_teacher_embeddings(
            teacher, faces.images)
        ```
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C). Received: images.shape={images.shape}")
    expected = tuple(teacher.inputs[0].shape[1:])
    if tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"The teacher takes images of shape {expected} but the images are "
            f"{tuple(images.shape[1:])}. Received: images.shape={images.shape}, teacher input "
            f"shape={tuple(teacher.inputs[0].shape)}"
        )
    images = images.astype("float32")
    embeddings = teacher.predict(images, batch_size=batch_size, verbose=0)
    flipped = teacher.predict(images[:, :, ::-1], batch_size=batch_size, verbose=0)
    return TeacherEmbeddings(
        np.asarray(embeddings, np.float32),
        np.asarray(flipped, np.float32),
        teacher=teacher.name if name is None else name,
    )


def load_teacher_embeddings(path, num_images=None, dim=None):
    """Read an `.npz` written by `TeacherEmbeddings.save` and check it.

    Args:
        path: str. The file.
        num_images: int. The number of training images. Defaults to `None` (unchecked).
        dim: int. The expected dimension. Defaults to `None` (unchecked).

    Returns:
        `TeacherEmbeddings`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: missing arrays, non-finite values or shapes that do not fit.

    Example:
        ```python
        teacher_embeddings = keras_face.distillation.load_teacher_embeddings("teacher.npz")
        ```
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Teacher embeddings file not found. Received: path={path!r}")
    with np.load(path) as file:
        missing = [key for key in (EMBEDDINGS_KEY, FLIPPED_KEY) if key not in file]
        if missing:
            raise ValueError(
                f"A teacher embeddings file holds `{EMBEDDINGS_KEY}` and `{FLIPPED_KEY}`. "
                f"Received: path={path!r} without {missing}"
            )
        embeddings = file[EMBEDDINGS_KEY]
        flipped = file[FLIPPED_KEY]
        teacher = str(file[TEACHER_KEY]) if TEACHER_KEY in file else path
    check_teacher_embeddings(embeddings, flipped, num_images=num_images, dim=dim)
    return TeacherEmbeddings(embeddings, flipped, teacher=teacher)
