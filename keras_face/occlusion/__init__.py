"""Occlusion-robust recognition: mask dictionaries, occlusion layer, adversarial training.

- masks (`keras_face.occlusion.occlusion_masks`): `landmark_masks`, `half_masks`,
  `random_half_masks`, `grid_masks` (FROM's patterns), `mask_to_feature_grid`,
  `mirror_landmarks`;
- `ApplyOcclusion`: `x * (1 - m) + fill * m`;
- `OcclusionAdversarialModel`: the recogniser trained on clean images and on the mask an
  adversary picks (worst of the family, a learned generator imitating the successful
  attacks, or random as the baseline), in image or feature space;
- `occlusion_sensitivity`: the loss increase per occluded grid cell;
- `occluded_pairs`: verification pairs whose probe is re-rendered with an occluder.

Built on `keras_face.training` (TensorFlow for `tf.distribute`); the layer and the masks
use only Keras and NumPy.
"""

from keras_face.occlusion.apply_occlusion import ApplyOcclusion
from keras_face.occlusion.occluded_pairs import OCCLUDER_KINDS
from keras_face.occlusion.occluded_pairs import occluded_pairs
from keras_face.occlusion.occlusion_adversarial_model import OcclusionAdversarialModel
from keras_face.occlusion.occlusion_adversarial_model import imitation_loss
from keras_face.occlusion.occlusion_masks import GRID_PATTERN_COUNTS
from keras_face.occlusion.occlusion_masks import HALF_MASK_NAMES
from keras_face.occlusion.occlusion_masks import LANDMARK_MASK_NAMES
from keras_face.occlusion.occlusion_masks import MASK_FAMILIES
from keras_face.occlusion.occlusion_masks import grid_cell_masks
from keras_face.occlusion.occlusion_masks import grid_masks
from keras_face.occlusion.occlusion_masks import half_masks
from keras_face.occlusion.occlusion_masks import landmark_box_masks
from keras_face.occlusion.occlusion_masks import landmark_masks
from keras_face.occlusion.occlusion_masks import mask_family
from keras_face.occlusion.occlusion_masks import mask_to_feature_grid
from keras_face.occlusion.occlusion_masks import mirror_landmarks
from keras_face.occlusion.occlusion_masks import random_half_masks
from keras_face.occlusion.occlusion_method import adapt_occlusion_data
from keras_face.occlusion.occlusion_method import build_occlusion_model
from keras_face.occlusion.occlusion_sensitivity import occlusion_sensitivity

__all__ = [
    "GRID_PATTERN_COUNTS",
    "HALF_MASK_NAMES",
    "LANDMARK_MASK_NAMES",
    "MASK_FAMILIES",
    "OCCLUDER_KINDS",
    "ApplyOcclusion",
    "OcclusionAdversarialModel",
    "adapt_occlusion_data",
    "build_occlusion_model",
    "grid_cell_masks",
    "grid_masks",
    "half_masks",
    "imitation_loss",
    "landmark_box_masks",
    "landmark_masks",
    "mask_family",
    "mask_to_feature_grid",
    "mirror_landmarks",
    "occluded_pairs",
    "occlusion_sensitivity",
    "random_half_masks",
]
