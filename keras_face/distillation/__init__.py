"""Knowledge distillation of face embeddings: VarGFaceNet's angular / L2 feature distillation.

A small student (MobileFaceNet, VarGFaceNet) is trained with its margin head and a loss
that pulls its L2-normalised embedding to a large teacher's: `L = L_ArcFace + alpha * L_s`
with `L_s = mean ||t/|t| - s/|s|||^2 = mean(2 - 2 cos)` and alpha = 7 (Yan et al., ICCV
workshops 2019), repeated for a second generation initialised from the first.

- Losses (`keras.ops`, every backend), per sample: `normalized_l2_distillation` (Eq. 5),
  `angular_distillation` (Eq. 4), `cosine_distillation`, `euclidean_distillation`,
  `teacher_student_cosine`; `EmbeddingDistillation`, the layer that adds
  `weight * mean(loss)` while training.
- Training (TensorFlow data pipeline): `DistillationTrainingModel` (online frozen teacher or
  offline embeddings), `precompute_teacher_embeddings` / `TeacherEmbeddings` /
  `load_teacher_embeddings`, `make_distillation_dataset`, `recursive_distillation`.
- `training.method: distillation` in a configuration: `build_distillation_model`,
  `adapt_distillation_data`, `train_generations`.

This package imports `keras_face.training` (TensorFlow), so `import keras_face` imports it
on first use of `keras_face.distillation`.
"""

from keras_face.distillation.distillation_dataset import make_distillation_dataset
from keras_face.distillation.distillation_losses import DISTILLATION_LOSSES
from keras_face.distillation.distillation_losses import angular_distillation
from keras_face.distillation.distillation_losses import cosine_distillation
from keras_face.distillation.distillation_losses import euclidean_distillation
from keras_face.distillation.distillation_losses import get_distillation_loss
from keras_face.distillation.distillation_losses import normalized_l2_distillation
from keras_face.distillation.distillation_losses import teacher_student_cosine
from keras_face.distillation.distillation_method import adapt_distillation_data
from keras_face.distillation.distillation_method import build_distillation_model
from keras_face.distillation.distillation_method import train_generations
from keras_face.distillation.distillation_training_model import DistillationTrainingModel
from keras_face.distillation.distillation_training_model import check_teacher
from keras_face.distillation.embedding_distillation import EmbeddingDistillation
from keras_face.distillation.recursive_distillation import RECURSIVE_TEACHERS
from keras_face.distillation.recursive_distillation import copy_student_weights
from keras_face.distillation.recursive_distillation import frozen_copy
from keras_face.distillation.recursive_distillation import recursive_distillation
from keras_face.distillation.teacher_embeddings import TeacherEmbeddings
from keras_face.distillation.teacher_embeddings import check_teacher_embeddings
from keras_face.distillation.teacher_embeddings import load_teacher_embeddings
from keras_face.distillation.teacher_embeddings import precompute_teacher_embeddings

__all__ = [
    "DISTILLATION_LOSSES",
    "RECURSIVE_TEACHERS",
    "DistillationTrainingModel",
    "EmbeddingDistillation",
    "TeacherEmbeddings",
    "adapt_distillation_data",
    "angular_distillation",
    "build_distillation_model",
    "check_teacher",
    "check_teacher_embeddings",
    "copy_student_weights",
    "cosine_distillation",
    "euclidean_distillation",
    "frozen_copy",
    "get_distillation_loss",
    "load_teacher_embeddings",
    "make_distillation_dataset",
    "normalized_l2_distillation",
    "precompute_teacher_embeddings",
    "recursive_distillation",
    "teacher_student_cosine",
    "train_generations",
]
