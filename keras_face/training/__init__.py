"""Training: model assembly, optimizers and schedules, distribution, callbacks, export.

- `FaceTrainingModel` / `build_training_model`: `[image, label] -> logits`, with the
  backbone as the (shared) embedding model; `TrainingModel`, the base of every training
  model (what `fit` needs under a `tf.distribute` strategy).
- `L2SGD`, `build_optimizer`, `WarmupPolynomialDecay`, `WarmupPiecewiseConstantDecay`,
  `build_schedule`: the references' optimizers and schedules.
- `get_strategy`, `check_global_batch_size`, `distribute_dataset`,
  `configure_cpu_replicas`: `tf.distribute` on one or several GPUs or machines.
- `BackupAndRestore` (step-level, exact resume), `EmbeddingModelCheckpoint`,
  `StopOnNaN`, `LearningRateLogger`: callbacks.
- `export_embedding_model`, `run_exported`, `check_exported`, `ExportError`: SavedModel,
  TFLite, ONNX, each file validated in its runtime.
- `load_config`, `CONFIG_SCHEMA`, `ConfigOption`: configurations (one schema holds every
  option's default, type, bound and doc) and `default_config_yaml`,
  `config_options_markdown` generated from it.
- `training_method`, `TrainingMethod`, `TRAINING_METHODS`: what `training.method`
  selects (classification, distillation, ...) and how a method plugs into `train`.
- `train` and its steps, in order: `prepare_run`, `load_training_data`,
  `count_steps_per_epoch`, `compile_training_model`, `start_run_folder`, `build_backup`,
  `build_callbacks`, `fit`, `collect_results`, `evaluate`, `write_run_folder`.

Uses TensorFlow (`tf.distribute`, `tf.data`, export); imported lazily by `keras_face`.
"""

from keras_face.training.backup_and_restore import BackupAndRestore
from keras_face.training.backup_and_restore import read_backup_state
from keras_face.training.config import DEFAULT_CONFIG
from keras_face.training.config import ConfigError
from keras_face.training.config import load_config
from keras_face.training.config_schema import ARGUMENT_SECTIONS
from keras_face.training.config_schema import CONFIG_SCHEMA
from keras_face.training.config_schema import ArgumentSection
from keras_face.training.config_schema import ConfigOption
from keras_face.training.config_schema import build_default_config
from keras_face.training.config_schema import config_options_markdown
from keras_face.training.config_schema import default_config_yaml
from keras_face.training.datasets import as_training_pairs
from keras_face.training.datasets import make_training_dataset
from keras_face.training.embedding_model_checkpoint import EmbeddingModelCheckpoint
from keras_face.training.export import EXPORT_FORMATS
from keras_face.training.export import ExportError
from keras_face.training.export import check_exported
from keras_face.training.export import export_embedding_model
from keras_face.training.export import run_exported
from keras_face.training.face_training_model import FaceTrainingModel
from keras_face.training.face_training_model import build_training_model
from keras_face.training.l2_sgd import L2SGD
from keras_face.training.learning_rate_logger import LearningRateLogger
from keras_face.training.optimizers import build_optimizer
from keras_face.training.optimizers import build_schedule
from keras_face.training.precision import dtype_policy_scope
from keras_face.training.run_folder import collect_results
from keras_face.training.run_folder import read_history
from keras_face.training.run_folder import summary_line
from keras_face.training.run_folder import write_run_folder
from keras_face.training.schedules import WarmupPiecewiseConstantDecay
from keras_face.training.schedules import WarmupPolynomialDecay
from keras_face.training.softmax_head import SoftmaxHead
from keras_face.training.stop_on_nan import StopOnNaN
from keras_face.training.stop_on_nan import TrainingDivergedError
from keras_face.training.strategy import check_global_batch_size
from keras_face.training.strategy import configure_cpu_replicas
from keras_face.training.strategy import distribute_dataset
from keras_face.training.strategy import get_strategy
from keras_face.training.trainer import RESUME_KEYS
from keras_face.training.trainer import RunSetup
from keras_face.training.trainer import TrainingInterrupted
from keras_face.training.trainer import build_backbone
from keras_face.training.trainer import build_backup
from keras_face.training.trainer import build_callbacks
from keras_face.training.trainer import build_head
from keras_face.training.trainer import check_batch_norm_batch
from keras_face.training.trainer import check_resume
from keras_face.training.trainer import compile_training_model
from keras_face.training.trainer import default_output_dir
from keras_face.training.trainer import evaluate
from keras_face.training.trainer import fit
from keras_face.training.trainer import prepare_run
from keras_face.training.trainer import start_run_folder
from keras_face.training.trainer import train
from keras_face.training.training_curves import plot_training_curves
from keras_face.training.training_data import TrainingData
from keras_face.training.training_data import count_steps_per_epoch
from keras_face.training.training_data import load_training_data
from keras_face.training.training_methods import TRAINING_METHODS
from keras_face.training.training_methods import TrainingMethod
from keras_face.training.training_methods import build_classifier
from keras_face.training.training_methods import training_method
from keras_face.training.training_model import TrainingModel

__all__ = [
    "ARGUMENT_SECTIONS",
    "ArgumentSection",
    "BackupAndRestore",
    "CONFIG_SCHEMA",
    "ConfigError",
    "ConfigOption",
    "DEFAULT_CONFIG",
    "EXPORT_FORMATS",
    "EmbeddingModelCheckpoint",
    "ExportError",
    "FaceTrainingModel",
    "L2SGD",
    "LearningRateLogger",
    "RESUME_KEYS",
    "RunSetup",
    "SoftmaxHead",
    "StopOnNaN",
    "TRAINING_METHODS",
    "TrainingData",
    "TrainingDivergedError",
    "TrainingInterrupted",
    "TrainingMethod",
    "TrainingModel",
    "WarmupPiecewiseConstantDecay",
    "WarmupPolynomialDecay",
    "as_training_pairs",
    "build_backbone",
    "build_backup",
    "build_classifier",
    "build_callbacks",
    "build_default_config",
    "build_head",
    "build_optimizer",
    "build_schedule",
    "build_training_model",
    "check_batch_norm_batch",
    "check_exported",
    "check_global_batch_size",
    "check_resume",
    "collect_results",
    "compile_training_model",
    "config_options_markdown",
    "configure_cpu_replicas",
    "count_steps_per_epoch",
    "default_config_yaml",
    "default_output_dir",
    "distribute_dataset",
    "dtype_policy_scope",
    "evaluate",
    "export_embedding_model",
    "fit",
    "get_strategy",
    "load_config",
    "load_training_data",
    "make_training_dataset",
    "plot_training_curves",
    "prepare_run",
    "read_backup_state",
    "read_history",
    "start_run_folder",
    "run_exported",
    "summary_line",
    "train",
    "training_method",
    "write_run_folder",
]
