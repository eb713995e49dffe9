"""Sub-center ArcFace: K sub-centres per class, and the dataset-cleaning helper."""

import math
import typing

import keras
import numpy as np
from keras import ops
from tqdm.auto import tqdm

from keras_face.heads.arc_face import ArcFace


class SubCenterOutliers(typing.NamedTuple):
    """Result of `SubCenterArcFace.find_outliers`.

    Attributes:
        dominant_sub_centers: int32 array `(num_classes,)`. Per class, the sub-centre
            closest to the largest number of its samples; `-1` for classes without
            samples.
        outlier_mask: bool array `(num_samples,)`. `True` where a sample is not within
            `threshold_degrees` of its class's dominant sub-centre (the samples
            insightface's `drop.py` removes).
        angles: float32 array `(num_samples,)`. Angle in degrees between each sample
            and its class's dominant sub-centre.
    """

    dominant_sub_centers: np.ndarray
    outlier_mask: np.ndarray
    angles: np.ndarray


@keras.saving.register_keras_serializable(package="keras_face")
class SubCenterArcFace(ArcFace):
    """Sub-center ArcFace head: ArcFace on the closest of `K` sub-centres of each class.

    Each class owns `K` centres; the kernel has shape `(embedding_dim, num_classes * K)`,
    class-major (class `j` owns columns `j*K ... j*K + K - 1`, as insightface and
    pytorch-metric-learning). For every class the cosine is the largest over its
    sub-centres, taken before the margin:

    `c_j = max_k cos(theta_(j,k))`, then `z_y = s * cos(theta_y + m)` and
    `z_j = s * c_j` exactly as `ArcFace` (same `fallback` and `gradient` options).
    Only the closest sub-centre of each class gets a gradient.

    After training, `find_outliers` finds each class's dominant sub-centre over a whole
    dataset and the samples too far from it, for cleaning the dataset before retraining
    a plain ArcFace (the paper's step 2).

    Args:
        num_classes: int. Number of identities.
        scale: float. The scale `s`. Defaults to `64.0`.
        margin: float. Additive angular margin `m` in radians. Defaults to `0.5`.
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

    hyperparameters = ArcFace.hyperparameters + ("sub_centers",)

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
            **kwargs,
        )
        if (
            isinstance(sub_centers, bool)
            or not isinstance(sub_centers, (int, np.integer))
            or sub_centers < 1
        ):
            raise ValueError(
                f"sub_centers must be a positive integer. Received: sub_centers={sub_centers!r}"
            )
        self.sub_centers = int(sub_centers)
        self.columns_per_class = self.sub_centers

    def cosine_matrix(self, normalized_embeddings):
        cosine = self.column_cosines(normalized_embeddings)
        cosine = ops.reshape(cosine, (-1, self.num_classes, self.sub_centers))
        # A running maximum over the K slices rather than `ops.max`, which refuses an
        # empty batch on TensorFlow and PyTorch.
        closest = cosine[:, :, 0]
        for k in range(1, self.sub_centers):
            closest = ops.maximum(closest, cosine[:, :, k])
        return closest

    def find_outliers(
        self, embeddings, labels, threshold_degrees=75.0, batch_size=4096, verbose=False
    ):
        """Dominant sub-centre of every class and the samples far from it, over a dataset.

        For each sample the closest sub-centre of its own class is found; a class's
        dominant sub-centre is the one closest to most of its samples (ties: the lowest
        index). A sample is an outlier unless its cosine with the dominant sub-centre is
        above `cos(threshold_degrees)`, as insightface's `drop.py` (which keeps
        `sim > cos_thresh`). All of `embeddings` is used, not one batch
        (pytorch-metric-learning's `get_outliers` decides per batch).

        Args:
            embeddings: array `(num_samples, embedding_dim)`, any norm (normalised here;
                a zero embedding has cosine 0).
            labels: integer array `(num_samples,)` or `(num_samples, 1)`.
            threshold_degrees: float. Largest kept angle. Defaults to `75.0`
                (insightface `drop.py --threshold 75`).
            batch_size: int. Samples processed at once. Defaults to `4096`.
            verbose: bool. Show a progress bar. Defaults to `False`.

        Returns:
            A `SubCenterOutliers(dominant_sub_centers, outlier_mask, angles)`.

        Example:
            ```python
            outliers = head.find_outliers(embeddings, labels)
            clean_images = images[~outliers.outlier_mask]
            ```
        """
        if not self.built:
            raise ValueError(
                "find_outliers needs the trained sub-centres: call the head on a batch "
                f"(or load a trained model) first. Received: head {self.name!r}, not built"
            )
        threshold_degrees = float(threshold_degrees)
        if not 0.0 <= threshold_degrees <= 180.0:
            raise ValueError(
                "threshold_degrees must be in [0, 180]. "
                f"Received: threshold_degrees={threshold_degrees}"
            )
        embeddings = np.asarray(embeddings)
        labels = np.asarray(labels)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embedding_dim:
            raise ValueError(
                f"embeddings must have shape (num_samples, {self.embedding_dim}). "
                f"Received: embeddings shape={embeddings.shape}"
            )
        if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
            raise ValueError(
                f"labels must have shape ({embeddings.shape[0]},). "
                f"Received: labels shape={labels.shape}"
            )
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"labels must be integer class ids. Received: labels dtype={labels.dtype}"
            )
        labels = labels.astype(np.int64)
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if bad.size:
            raise ValueError(
                f"every label must be in [0, num_classes) with num_classes="
                f"{self.num_classes}. Received: labels containing "
                f"{', '.join(str(v) for v in bad[:8])}"
            )
        # (num_classes, K, embedding_dim) unit sub-centres, class-major like the kernel.
        kernel = ops.convert_to_numpy(self.kernel).astype(np.float64)
        centres = kernel.T.reshape(self.num_classes, self.sub_centers, self.embedding_dim)
        centres /= np.maximum(np.linalg.norm(centres, axis=-1, keepdims=True), 1e-12)

        num_samples = embeddings.shape[0]
        sub_center_cosines = np.zeros((num_samples, self.sub_centers), np.float64)
        starts = range(0, num_samples, batch_size)
        for start in tqdm(starts, desc="sub-centre cosines", disable=not verbose):
            stop = min(start + batch_size, num_samples)
            # float64: norms from 1e-30 to 1e30 stay exact.
            chunk = embeddings[start:stop].astype(np.float64)
            chunk /= np.maximum(np.linalg.norm(chunk, axis=1, keepdims=True), 1e-12)
            sub_center_cosines[start:stop] = np.einsum(
                "nd,nkd->nk", chunk, centres[labels[start:stop]]
            )
        sub_center_cosines = np.clip(sub_center_cosines, -1.0, 1.0)

        counts = np.zeros((self.num_classes, self.sub_centers), np.int64)
        np.add.at(counts, (labels, np.argmax(sub_center_cosines, axis=1)), 1)
        dominant = np.where(counts.sum(axis=1) > 0, np.argmax(counts, axis=1), -1)
        dominant_cosine = sub_center_cosines[np.arange(num_samples), dominant[labels]]
        outlier_mask = ~(dominant_cosine > math.cos(math.radians(threshold_degrees)))
        angles = np.degrees(np.arccos(dominant_cosine))
        return SubCenterOutliers(
            dominant_sub_centers=dominant.astype(np.int32),
            outlier_mask=outlier_mask,
            angles=angles.astype(np.float32),
        )
