"""Uncertainty of face embeddings: SCF's von Mises-Fisher confidence, on every Keras backend.

Spherical confidence learning (SCF, Li et al., CVPR 2021) gives every image a von
Mises-Fisher distribution on the sphere around its (frozen) embedding, whose concentration
`kappa` is the confidence; it is learnt by a small head on a frozen backbone and frozen
class centres. This package is Keras-only (`keras.ops`), like `keras_face.heads`.

- vMF math, stable in float32 from `kappa = 1e-6` to `1e9` and `d >= 16`:
  `log_vmf_normalizer` (log C_d), `vmf_mean_resultant` (A_d), `kappa_for_cosine`
  (the loss's optimum), `log_bessel_iv`, `mutual_likelihood_score`, `pool_vmf`.
- Training: `SphericalConfidenceHead` (MLP or conv), `vmf_dirac_kl` (the loss),
  `SCFTrainingModel`, `class_centres_from_head`, `target_cosine`, `ClassCentreCosine`.
- Deployment: `embedding_and_confidence_model` (images -> embedding and kappa),
  `feature_and_embedding_model`, `scf_pair_scores`; `quality_scores` (norm and kappa of
  each image) and `embedding_output_model` (the embedding alone, for verification).
"""

from keras_face.uncertainty.class_centre_cosine import ClassCentreCosine
from keras_face.uncertainty.class_centre_cosine import class_centres_from_head
from keras_face.uncertainty.class_centre_cosine import target_cosine
from keras_face.uncertainty.embedding_and_confidence import embedding_and_confidence_model
from keras_face.uncertainty.embedding_and_confidence import embedding_output_model
from keras_face.uncertainty.embedding_and_confidence import feature_and_embedding_model
from keras_face.uncertainty.embedding_and_confidence import quality_scores
from keras_face.uncertainty.embedding_and_confidence import scf_pair_scores
from keras_face.uncertainty.scf_loss import vmf_dirac_kl
from keras_face.uncertainty.scf_training_model import SCFTrainingModel
from keras_face.uncertainty.spherical_confidence_head import SphericalConfidenceHead
from keras_face.uncertainty.vmf import MIN_DIM
from keras_face.uncertainty.vmf import kappa_for_cosine
from keras_face.uncertainty.vmf import log_bessel_iv
from keras_face.uncertainty.vmf import log_vmf_normalizer
from keras_face.uncertainty.vmf import mutual_likelihood_score
from keras_face.uncertainty.vmf import pool_vmf
from keras_face.uncertainty.vmf import unit_vectors
from keras_face.uncertainty.vmf import vmf_mean_resultant

__all__ = [
    "MIN_DIM",
    "ClassCentreCosine",
    "SCFTrainingModel",
    "SphericalConfidenceHead",
    "class_centres_from_head",
    "embedding_and_confidence_model",
    "embedding_output_model",
    "feature_and_embedding_model",
    "kappa_for_cosine",
    "log_bessel_iv",
    "log_vmf_normalizer",
    "mutual_likelihood_score",
    "pool_vmf",
    "quality_scores",
    "scf_pair_scores",
    "target_cosine",
    "unit_vectors",
    "vmf_dirac_kl",
    "vmf_mean_resultant",
]
