"""Training: model assembly, optimizers and schedules, distribution, callbacks, export."""

from keras_face.training.face_training_model import FaceTrainingModel
from keras_face.training.face_training_model import build_training_model
from keras_face.training.l2_sgd import L2SGD
from keras_face.training.optimizers import build_optimizer
from keras_face.training.optimizers import build_schedule
from keras_face.training.precision import dtype_policy_scope
from keras_face.training.schedules import WarmupPiecewiseConstantDecay
from keras_face.training.schedules import WarmupPolynomialDecay
from keras_face.training.softmax_head import SoftmaxHead
from keras_face.training.strategy import check_global_batch_size
from keras_face.training.strategy import configure_cpu_replicas
from keras_face.training.strategy import distribute_dataset
from keras_face.training.strategy import get_strategy
