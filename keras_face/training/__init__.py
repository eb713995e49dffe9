"""Training: model assembly, optimizers and schedules, distribution, callbacks, export.

- `FaceTrainingModel` / `build_training_model`: `[image, label] -> logits`, with the
  backbone as the (shared) embedding model.
- `L2SGD`, `build_optimizer`, `WarmupPolynomialDecay`, `WarmupPiecewiseConstantDecay`,
  `build_schedule`: the references' optimizers and schedules.
- `get_strategy`, `check_global_batch_size`, `distribute_dataset`,
  `configure_cpu_replicas`: `tf.distribute` on one or several GPUs or machines.
- `BackupAndRestore` (step-level, exact resume), `EmbeddingModelCheckpoint`,
  `StopOnNaN`, `LearningRateLogger`: callbacks.
- `export_embedding_model`, `run_exported`: SavedModel, TFLite, ONNX.
- `load_config`, `train`: configurations and the `keras-face train` job.

Uses TensorFlow (`tf.distribute`, `tf.data`, export); imported lazily by `keras_face`.
"""

from keras_face.training.backup_and_restore import BackupAndRestore
from keras_face.training.backup_and_restore import read_backup_state
from keras_face.training.config import DEFAULT_CONFIG
from keras_face.training.config import ConfigError
from keras_face.training.config import load_config
from keras_face.training.datasets import as_training_pairs
from keras_face.training.datasets import make_training_dataset
from keras_face.training.embedding_model_checkpoint import EmbeddingModelCheckpoint
from keras_face.training.export import EXPORT_FORMATS
from keras_face.training.export import export_embedding_model
from keras_face.training.export import run_exported
from keras_face.training.face_training_model import FaceTrainingModel
from keras_face.training.face_training_model import build_training_model
from keras_face.training.l2_sgd import L2SGD
from keras_face.training.learning_rate_logger import LearningRateLogger
from keras_face.training.optimizers import build_optimizer
from keras_face.training.optimizers import build_schedule
from keras_face.training.precision import dtype_policy_scope
from keras_face.training.schedules import WarmupPiecewiseConstantDecay
from keras_face.training.schedules import WarmupPolynomialDecay
from keras_face.training.softmax_head import SoftmaxHead
from keras_face.training.stop_on_nan import StopOnNaN
from keras_face.training.stop_on_nan import TrainingDivergedError
from keras_face.training.strategy import check_global_batch_size
from keras_face.training.strategy import configure_cpu_replicas
from keras_face.training.strategy import distribute_dataset
from keras_face.training.strategy import get_strategy
from keras_face.training.trainer import train
from keras_face.training.training_curves import plot_training_curves

__all__ = [
    "BackupAndRestore",
    "ConfigError",
    "DEFAULT_CONFIG",
    "EXPORT_FORMATS",
    "EmbeddingModelCheckpoint",
    "FaceTrainingModel",
    "L2SGD",
    "LearningRateLogger",
    "SoftmaxHead",
    "StopOnNaN",
    "TrainingDivergedError",
    "WarmupPiecewiseConstantDecay",
    "WarmupPolynomialDecay",
    "as_training_pairs",
    "build_optimizer",
    "build_schedule",
    "build_training_model",
    "check_global_batch_size",
    "configure_cpu_replicas",
    "distribute_dataset",
    "dtype_policy_scope",
    "export_embedding_model",
    "get_strategy",
    "load_config",
    "make_training_dataset",
    "plot_training_curves",
    "read_backup_state",
    "run_exported",
    "train",
]
