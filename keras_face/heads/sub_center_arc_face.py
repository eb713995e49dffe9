"""Sub-center ArcFace: ArcFace with K sub-centres per class, by its familiar name.

Sub-centres belong to the classifier half of every head (`CosineClassifier`,
`sub_centers=K`); this module keeps the paper's name and defaults, and re-exports the
dataset-cleaning result `SubCenterOutliers`.
"""

import keras

from keras_face.heads.arc_face import ArcFace
from keras_face.heads.cosine_classifier import SubCenterOutliers

__all__ = ["SubCenterArcFace", "SubCenterOutliers"]


@keras.saving.register_keras_serializable(package="keras_face")
class SubCenterArcFace(ArcFace):
    """Sub-center ArcFace head: ArcFace on the closest of `K` sub-centres of each class.

    Each class owns `K` centres; the kernel has shape `(embedding_dim, num_classes * K)`,
    class-major (class `j` owns columns `j*K ... j*K + K - 1`, as insightface and
    pytorch-metric-learning). For every class the cosine is the largest over its
    sub-centres, taken before the margin:

    `c_j = max_k cos(theta_(j,k))`, then `z_y = s * cos(theta_y + m)` and
    `z_j = s * c_j` exactly as `ArcFace` (same `fallback` and `gradient` options).
    Only the closest sub-centre of each class gets a gradient. It is exactly
    `ArcFace(num_classes, sub_centers=K, ...)`; any other head takes `sub_centers` too.

    After training, `find_outliers` finds each class's dominant sub-centre over a whole
    dataset and the samples too far from it, for cleaning the dataset before retraining
    a plain ArcFace (the paper's step 2).

    Args:
        num_classes: int. Number of identities.
        scale: float. The scale `s`. Defaults to `64.0`.
        margin: float. Additive angular margin `m` in radians, in `[0, pi)`. Defaults to `0.5`.
        sub_centers: int. Number of sub-centres `K` per class. Defaults to `3`
            (insightface `sample_config.py`, `loss_K = 3`; pytorch-metric-learning).
        fallback: str. Target beyond `pi - m`, see `ArcFace`. Defaults to `"cosface"`.
        gradient: str. `"exact"` or `"detached"`, see `ArcFace`. Defaults to `"exact"`.
        kernel_initializer: initializer of the sub-centres, shape
            `(embedding_dim, num_classes * sub_centers)`. Defaults to
            `RandomNormal(stddev=0.01)`.
        kernel_regularizer: optional regularizer of the sub-centres. Defaults to `None`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        head = keras_face.heads.SubCenterArcFace(num_classes=10_000, sub_centers=3)
        logits = head([embeddings, labels], training=True)
        # After training: clean the dataset.
        outliers = head.find_outliers(all_embeddings, all_labels, threshold_degrees=75)
        keep = ~outliers.outlier_mask
        ```

    References:
        - [Deng et al., Sub-center ArcFace: Boosting Face Recognition by Large-scale
          Noisy Web Faces, ECCV 2020](https://www.ecva.net/papers/eccv_2020/papers_ECCV/html/1445_ECCV_2020_paper.php)
    """

    def __init__(
        self,
        num_classes,
        scale=64.0,
        margin=0.5,
        sub_centers=3,
        fallback="cosface",
        gradient="exact",
        kernel_initializer=None,
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(
            num_classes,
            scale=scale,
            margin=margin,
            fallback=fallback,
            gradient=gradient,
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            sub_centers=sub_centers,
            **kwargs,
        )
