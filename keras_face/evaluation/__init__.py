"""Evaluation: embeddings, the LFW-style 10-fold protocol, ROC / TAR@FAR, IJB-B/C, plots.

- `extract_embeddings(model, images, batch_size=64, flip=True)`: insightface's flip test.
- `verify(embeddings, issame, n_folds=10)`: accuracy, VAL@FAR=1e-3 and TAR@FAR, with the
  numbers of insightface's `verification.py`.
- `read_ijb_meta`, `ijb_image_features`, `evaluate_ijb`: IJB-B/C 1:1 templates.
- `plot_roc`, `plot_score_distribution`: matplotlib figures.
- `VerificationCallback`: the protocol during `fit`, best model saved.
- `evaluate_pairs`, `VerificationSummary`: one model on one pair set, as `keras-face eval`
  and the training run report it.
- `error_versus_discard`, `spearman_correlation`, `plot_error_versus_discard`: quality-score
  evaluation (EDC, ISO/IEC 29794-1).
"""

from keras_face.evaluation.embeddings import extract_embeddings
from keras_face.evaluation.embeddings import l2_normalize
from keras_face.evaluation.ijb import IJBMeta
from keras_face.evaluation.ijb import evaluate_ijb
from keras_face.evaluation.ijb import ijb_image_features
from keras_face.evaluation.ijb import image_to_template_features
from keras_face.evaluation.ijb import read_ijb_meta
from keras_face.evaluation.ijb import template_pair_scores
from keras_face.evaluation.plots import plot_roc
from keras_face.evaluation.plots import plot_score_distribution
from keras_face.evaluation.quality import ErrorVersusDiscard
from keras_face.evaluation.quality import error_versus_discard
from keras_face.evaluation.quality import fixed_fmr_threshold
from keras_face.evaluation.quality import pair_quality
from keras_face.evaluation.quality import plot_error_versus_discard
from keras_face.evaluation.quality import spearman_correlation
from keras_face.evaluation.roc import DEFAULT_FARS
from keras_face.evaluation.roc import area_under_curve
from keras_face.evaluation.roc import roc_curve
from keras_face.evaluation.roc import tar_at_far
from keras_face.evaluation.verification import ACCURACY_THRESHOLDS
from keras_face.evaluation.verification import VAL_THRESHOLDS
from keras_face.evaluation.verification import calculate_roc
from keras_face.evaluation.verification import calculate_val
from keras_face.evaluation.verification import kfold_splits
from keras_face.evaluation.verification import pair_distances
from keras_face.evaluation.verification import verify
from keras_face.evaluation.verification_callback import VerificationCallback
from keras_face.evaluation.verification_summary import TABLE_COLUMNS as VERIFICATION_TABLE_COLUMNS
from keras_face.evaluation.verification_summary import VerificationSummary
from keras_face.evaluation.verification_summary import evaluate_pairs

__all__ = [
    "ACCURACY_THRESHOLDS",
    "DEFAULT_FARS",
    "ErrorVersusDiscard",
    "IJBMeta",
    "VAL_THRESHOLDS",
    "VERIFICATION_TABLE_COLUMNS",
    "VerificationCallback",
    "VerificationSummary",
    "area_under_curve",
    "calculate_roc",
    "calculate_val",
    "evaluate_ijb",
    "error_versus_discard",
    "evaluate_pairs",
    "extract_embeddings",
    "fixed_fmr_threshold",
    "ijb_image_features",
    "image_to_template_features",
    "kfold_splits",
    "l2_normalize",
    "pair_distances",
    "pair_quality",
    "plot_error_versus_discard",
    "plot_roc",
    "plot_score_distribution",
    "read_ijb_meta",
    "roc_curve",
    "spearman_correlation",
    "tar_at_far",
    "template_pair_scores",
    "verify",
]
