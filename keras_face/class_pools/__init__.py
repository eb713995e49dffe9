"""Classifier-free pools: F²C's dynamic class pool and DCQ's dynamic class queue.

Both replace the `(D, C)` classifier by a pool of K << C gallery features: a probe
network P is trained against class weights that a gallery network G (P's moving
average) writes from the current batches.

- `ClassPool`: the pool state layer (FIFO queue for DCQ, dual-row LRU pool for F²C).
- `ProbeGalleryModel`: P, G and G's moving average, shared by both models.
- `F2CTrainingModel`, `DCQTrainingModel`: the training models (their `embedding_model`
  is P for F²C and G for DCQ, as their authors evaluate).
- `PrecomputedLoss`: the loss of models that output their own loss contributions.
- `make_dual_loader_dataset` (F²C: identity pairs + instances) and `make_pair_dataset`
  (DCQ: query/key pairs): the `tf.data` pipelines.
- `train_pool_model`: train either on in-memory images for a few epochs and time it.

Uses TensorFlow (`tf.data`, `tf.distribute`); imported lazily by `keras_face`.
"""

from keras_face.class_pools.class_pool import ClassPool
from keras_face.class_pools.dcq_training_model import DCQTrainingModel
from keras_face.class_pools.f2c_training_model import F2CTrainingModel
from keras_face.class_pools.f2c_training_model import default_hard_negatives
from keras_face.class_pools.pool_datasets import make_dual_loader_dataset
from keras_face.class_pools.pool_datasets import make_pair_dataset
from keras_face.class_pools.pool_training import adapt_pool_data
from keras_face.class_pools.pool_training import build_pool_model
from keras_face.class_pools.pool_training import pool_size_for
from keras_face.class_pools.pool_training import train_pool_model
from keras_face.class_pools.precomputed_loss import PrecomputedLoss
from keras_face.class_pools.probe_gallery import ProbeGalleryModel

__all__ = [
    "ClassPool",
    "DCQTrainingModel",
    "F2CTrainingModel",
    "PrecomputedLoss",
    "ProbeGalleryModel",
    "adapt_pool_data",
    "build_pool_model",
    "default_hard_negatives",
    "make_dual_loader_dataset",
    "make_pair_dataset",
    "pool_size_for",
    "train_pool_model",
]
