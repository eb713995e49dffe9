"""Age-invariant face recognition: MTLFace's attention feature decomposition and adversary.

- `AttentionFeatureDecomposition`: a feature map into identity and age parts (channel
  and spatial attention over `SpatialPyramidPooling`);
- `AgeEstimationHead`, `dex_expectation`, `age_loss`, `age_groups`: MTLFace's age
  estimation (expected age over 101 bins + age-group classification);
- `AgeInvariantTrainingModel`: identity loss + weighted age loss + weighted cross-age
  adversarial loss through `keras_face.layers.GradientReversal`;
- `IdentityConditionalModule`, `task_router_masks`: the age-group-conditioned module of
  MTLFace's face-age synthesis, at tutorial level.

The layers use only Keras (`keras.ops`); the training model is built on
`keras_face.training` (TensorFlow for `tf.distribute`).
"""

from keras_face.age_invariant.age_estimation_head import AGE_GROUP_THRESHOLDS
from keras_face.age_invariant.age_estimation_head import AgeEstimationHead
from keras_face.age_invariant.age_estimation_head import age_groups
from keras_face.age_invariant.age_estimation_head import age_loss
from keras_face.age_invariant.age_estimation_head import check_ages
from keras_face.age_invariant.age_estimation_head import dex_expectation
from keras_face.age_invariant.age_invariant_method import adapt_age_data
from keras_face.age_invariant.age_invariant_method import build_age_invariant_model
from keras_face.age_invariant.age_invariant_training_model import AgeInvariantTrainingModel
from keras_face.age_invariant.attention_feature_decomposition import AttentionFeatureDecomposition
from keras_face.age_invariant.identity_conditional_module import IdentityConditionalModule
from keras_face.age_invariant.identity_conditional_module import task_router_layout
from keras_face.age_invariant.identity_conditional_module import task_router_masks
from keras_face.age_invariant.spatial_pyramid_pooling import SpatialPyramidPooling
from keras_face.age_invariant.spatial_pyramid_pooling import adaptive_bins

__all__ = [
    "AGE_GROUP_THRESHOLDS",
    "AgeEstimationHead",
    "AgeInvariantTrainingModel",
    "AttentionFeatureDecomposition",
    "IdentityConditionalModule",
    "SpatialPyramidPooling",
    "adapt_age_data",
    "adaptive_bins",
    "age_groups",
    "age_loss",
    "build_age_invariant_model",
    "check_ages",
    "dex_expectation",
    "task_router_layout",
    "task_router_masks",
]
