"""The classifier half of every margin head: the class cosines of L2-normalised embeddings.

`CosineClassifier` owns what a margin never needs to know about: the class-centre kernel,
its column norms, and which columns exist and how they make a class (`sub_centers`: K
columns per class, the class cosine being the largest of the K, as Sub-center ArcFace).
It maps embeddings to the `(batch, num_classes)` matrix of class cosines. The margin half
(`keras_face.heads.MarginHead` and the heads built on it) takes that matrix and states
only how the target logit is formed and, if it has any, its state.

The heads extend this layer rather than holding one as a sub-layer, so that the kernel
stays the head's own weight: `head.kernel`, saved at the same place in `.keras` files and
checkpoints as before the split. Code that selects columns (a sampled subset, a shard of
the classes) passes its own kernel to `cosine_matrix(normalized_embeddings, kernel)`.
"""

import math
import typing

import keras
import numpy as np
from keras import ops
from tqdm.auto import tqdm

from keras_face.heads import backend_ops

# F.normalize's eps: x / max(||x||, eps).
NORM_EPSILON = 1e-12
# Floor under a sum of squares before its square root: no infinite gradient at 0.
SQRT_FLOOR = 1e-30
# Smallest normal float32: the per-row rescaling divisor is never below it.
_TINY_FLOAT32 = 1.1754944e-38


# The two layouts of the kernel: a class per column (Keras' `Dense`, insightface's MXNet
# `fc7_weight` transposed) or a class per row (arcface_torch's `PartialFC_V2.weight`).
KERNEL_LAYOUTS = ("columns", "rows")


def validate_kernel_layout(kernel_layout):
    """Return `kernel_layout` if it is one of `KERNEL_LAYOUTS`, else raise naming it."""
    if kernel_layout not in KERNEL_LAYOUTS:
        raise ValueError(
            f"kernel_layout must be one of {KERNEL_LAYOUTS}. "
            f"Received: kernel_layout={kernel_layout!r}"
        )
    return kernel_layout


def _validate_count(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
    return int(value)


class SubCenterOutliers(typing.NamedTuple):
    """Result of `CosineClassifier.find_outliers` (and `SubCenterArcFace.find_outliers`).

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
class CosineClassifier(keras.layers.Layer):
    """Cosine of every L2-normalised embedding with every class: `(batch, num_classes)`.

    With class centres `w` (the columns of `kernel`, shape `(embedding_dim,
    num_classes * sub_centers)`) it returns `c_ij = clip(x_i . w_j / (||x_i|| ||w_j||),
    -1, 1)`. With `sub_centers=K > 1` each class owns K columns, class-major (class `j`:
    columns `j*K ... j*K + K - 1`, as insightface and pytorch-metric-learning), and its
    cosine is the largest of the K, `c_ij = max_k c_i,(j,k)` (Sub-center ArcFace); only
    the closest sub-centre of a class gets a gradient (exact ties share it).

    It is the classifier half of every margin head (`keras_face.heads.ArcFace`, ...,
    which extend it): the margin is applied to these cosines. Used alone, it is a
    closed-set cosine classifier (multiply by a scale for softmax logits) and the tool
    to clean a dataset with sub-centres (`find_outliers`).

    The cosines are computed in float32 whatever the dtype policy. The embeddings are
    normalised without overflow or underflow (norms from 1e-30 to 1e30), a zero
    embedding has cosine 0 with every class; the kernel is never normalised as a copy:
    the `(batch, columns)` product is multiplied by the inverse column norms
    (`max(||w_j||, 1e-12)`).

    Args:
        num_classes: int. Number of classes.
        sub_centers: int. Columns (sub-centres) per class, `K`. Defaults to `1`.
        kernel_initializer: initializer of the class centres, shape
            `(embedding_dim, num_classes * sub_centers)`. Defaults to
            `RandomNormal(stddev=0.01)`.
        kernel_regularizer: optional regularizer of the class centres. Defaults to `None`.
        kernel_layout: `"columns"` or `"rows"`. How the variable `kernel` stores the
            class centres: `"columns"`, shape `(embedding_dim, num_classes * K)`, a
            centre per column (as Keras' `Dense`); `"rows"`, shape
            `(num_classes * K, embedding_dim)`, a centre per row (as arcface_torch's
            Partial FC). The cosines are the same. With `"rows"` a gather of some
            classes' centres (`keras_face.heads.PartialFC`) has a row-sparse gradient
            on TensorFlow (`tf.IndexedSlices`), which `keras_face.training.L2SGD` applies
            without a dense `(D, C)` gradient. Saved weight files (`.keras`,
            `.weights.h5`) hold the `(embedding_dim, num_classes * K)` kernel in either
            layout, so a head loads the weights of a head of the other layout.
            Defaults to `"columns"`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        classifier = keras_face.heads.CosineClassifier(num_classes=1000, sub_centers=3)
        cosines = classifier(embeddings)  # (batch, 1000), in [-1, 1]
        predictions = keras.ops.argmax(cosines, axis=-1)
        ```

    References:
        - [Wang et al., NormFace: L2 Hypersphere Embedding for Face Verification,
          ACM MM 2017](https://arxiv.org/abs/1704.06369)
        - [Deng et al., Sub-center ArcFace: Boosting Face Recognition by Large-scale
          Noisy Web Faces, ECCV 2020](https://www.ecva.net/papers/eccv_2020/papers_ECCV/html/1445_ECCV_2020_paper.php)
    """

    def __init__(
        self,
        num_classes,
        sub_centers=1,
        kernel_initializer=None,
        kernel_regularizer=None,
        kernel_layout="columns",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_layout = validate_kernel_layout(kernel_layout)
        if isinstance(num_classes, bool) or not hasattr(num_classes, "__index__"):
            raise ValueError(
                f"num_classes must be a positive integer. Received: num_classes={num_classes!r}"
            )
        self.num_classes = _validate_count("num_classes", int(num_classes))
        self.sub_centers = _validate_count("sub_centers", sub_centers)
        if kernel_initializer is None:
            kernel_initializer = keras.initializers.RandomNormal(stddev=0.01)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    @property
    def columns_per_class(self):
        """Kernel columns per class (`sub_centers`)."""
        return self.sub_centers

    # ----------------------------------------------------------------------------------
    # dtype: all cosine math in float32, whatever the policy.
    @property
    def input_dtype(self):
        return "float32"

    def build(self, input_shape):
        embedding_shape = self._embedding_shape(input_shape)
        if len(embedding_shape) != 2:
            raise ValueError(
                f"{self.__class__.__name__} expects embeddings of rank 2, (batch, "
                f"embedding_dim). Received: embeddings shape={tuple(embedding_shape)}"
            )
        embedding_dim = embedding_shape[-1]
        if embedding_dim is None:
            raise ValueError(
                f"{self.__class__.__name__} needs a known embedding dimension. "
                f"Received: embeddings shape={tuple(embedding_shape)}"
            )
        self.embedding_dim = int(embedding_dim)
        columns = self.num_classes * self.sub_centers
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.embedding_dim, columns)
            if self.kernel_layout == "columns"
            else (columns, self.embedding_dim),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            dtype="float32",
            autocast=False,
        )

    @staticmethod
    def _embedding_shape(input_shape):
        if isinstance(input_shape, dict):
            raise ValueError(
                "Margin heads take a list `[embeddings, labels]` (or embeddings alone). "
                f"Received: input_shape={input_shape}"
            )
        if (
            isinstance(input_shape, (list, tuple))
            and input_shape
            and isinstance(input_shape[0], (list, tuple))
        ):
            return tuple(input_shape[0])
        return tuple(input_shape)

    def compute_output_shape(self, input_shape):
        return (self._embedding_shape(input_shape)[0], self.num_classes)

    # ----------------------------------------------------------------------------------
    @staticmethod
    def normalize(embeddings):
        """Return `(x / max(||x||, 1e-12), ||x||)` computed without overflow or underflow.

        Each row is first divided by its largest absolute entry (no gradient through that
        divisor), so that norms from 1e-30 to 1e30 are exact in float32.
        """
        # `initial` rather than `maximum(max(...), tiny)`: `ops.max` refuses an empty
        # batch on TensorFlow and PyTorch unless `initial` is given.
        row_max = ops.stop_gradient(
            ops.max(ops.abs(embeddings), axis=-1, keepdims=True, initial=_TINY_FLOAT32)
        )
        rescaled = embeddings / row_max
        rescaled_norm = ops.sqrt(
            ops.maximum(ops.sum(ops.square(rescaled), axis=-1, keepdims=True), SQRT_FLOOR)
        )
        normalized = rescaled / ops.maximum(rescaled_norm, NORM_EPSILON / row_max)
        norms = ops.squeeze(rescaled_norm * row_max, axis=-1)
        return normalized, norms

    def column_cosines(self, normalized_embeddings, kernel=None, scale=None):
        """`x_hat @ W / ||W_j||` for every column of the kernel (times `scale`).

        Args:
            normalized_embeddings: float32 `(batch, embedding_dim)`, unit rows.
            kernel: optional kernel in the layout of `self.kernel` (`(embedding_dim,
                columns)`, or `(columns, embedding_dim)` for `kernel_layout="rows"`),
                e.g. the centres of a subset of the classes. Defaults to `self.kernel`.
            scale: optional scalar (a float or a rank-0 tensor) multiplied into the
                `(columns,)` inverse column norms, so that the result is `scale * cos`
                at no `(batch, columns)` cost: a margin head's logit scale `s` costs one
                pass over the matrix fewer forward and one fewer backward than `s * cos`
                (about 3 % of a training step at B=256, D=512, C=50,000 on the CPU).
                Defaults to `None` (the plain cosines).

        Returns:
            float32 `(batch, columns)`, in [-1, 1] (times `scale`) up to float32
            rounding (an entry may pass +-1 by an ulp; `MarginHead` clips the target
            cosines it gives a margin, `call` clips its output).

        The product is multiplied by the `(columns,)` inverse column norms rather than
        materialising a normalised copy of the kernel: `B x C` multiplications instead of
        `D x C` forward, and fewer passes over the kernel backward.
        """
        kernel = self.kernel if kernel is None else kernel
        if self.kernel_layout == "columns":
            squared_norms = backend_ops.column_sums(ops.square(kernel))
            products = ops.matmul(normalized_embeddings, kernel)
        else:
            squared_norms = ops.sum(ops.square(kernel), axis=1)
            products = ops.matmul(normalized_embeddings, ops.transpose(kernel))
        inverse_norms = 1.0 / ops.sqrt(ops.maximum(squared_norms, NORM_EPSILON**2))
        if scale is not None:
            inverse_norms = inverse_norms * scale
        return backend_ops.scale_columns(products, inverse_norms)

    def cosine_matrix(self, normalized_embeddings, kernel=None, scale=None):
        """Class cosines `(batch, classes)`: the largest of each class's `K` columns.

        Args:
            normalized_embeddings: float32 `(batch, embedding_dim)`, unit rows.
            kernel: optional kernel of `classes * K` class-major centres, in the layout
                of `self.kernel` (e.g. the centres of a subset of the classes). Defaults
                to `self.kernel`.
            scale: optional positive scalar: the result is then `scale` times the class
                cosines, the scale folded into the column norms (see `column_cosines`).
                Defaults to `None`.

        Returns:
            float32 `(batch, classes)`, in [-1, 1] (times `scale`) up to float32
            rounding (see `column_cosines`).
        """
        cosine = self.column_cosines(normalized_embeddings, kernel, scale)
        if self.sub_centers == 1:
            return cosine
        classes = cosine.shape[1] // self.sub_centers
        # The largest of the K over a reshape (class-major columns: no copy; see
        # `backend_ops.max_last_axis` for TensorFlow's short-axis reductions). The gradient
        # goes to the closest sub-centre (shared equally on exact ties).
        return backend_ops.max_last_axis(ops.reshape(cosine, (-1, classes, self.sub_centers)))

    def call(self, inputs, training=None):
        # `training` changes nothing; accepted so that a classifier and a head are
        # called alike (a list `[embeddings, labels]` is accepted too, labels unused).
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        embeddings = ops.cast(inputs, "float32")
        normalized, _ = self.normalize(embeddings)
        return ops.clip(self.cosine_matrix(normalized), -1.0, 1.0)

    # ----------------------------------------------------------------------------------
    def find_outliers(
        self, embeddings, labels, threshold_degrees=75.0, batch_size=4096, verbose=False
    ):
        """Dominant sub-centre of every class and the samples far from it, over a dataset.

        For each sample the closest sub-centre of its own class is found; a class's
        dominant sub-centre is the one closest to most of its samples (ties: the lowest
        index). A sample is an outlier unless its cosine with the dominant sub-centre is
        above `cos(threshold_degrees)`, as insightface's `drop.py` (which keeps
        `sim > cos_thresh`). All of `embeddings` is used, not one batch
        (pytorch-metric-learning's `get_outliers` decides per batch). With one
        sub-centre per class it finds the samples far from their class centre.

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
        centres = self.centre_rows().astype(np.float64)
        centres = centres.reshape(self.num_classes, self.sub_centers, self.embedding_dim)
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

    # ----------------------------------------------------------------------------------
    # The kernel in either layout.
    def centre_rows(self):
        """The class centres as a NumPy float32 array `(num_classes * K, embedding_dim)`.

        Row `j * K + k` is sub-centre `k` of class `j`, whatever `kernel_layout` (a
        transposed copy for `"columns"`).
        """
        kernel = np.asarray(ops.convert_to_numpy(self.kernel), dtype=np.float32)
        return kernel.T if self.kernel_layout == "columns" else kernel

    def _variables_with_saved_values(self):
        """`(variable, transposed)` pairs: whether the file holds the variable transposed."""
        variables = self._trainable_variables + self._non_trainable_variables
        for variable in variables:
            transpose = variable is self.kernel and self.kernel_layout == "rows"
            yield variable, transpose

    def save_own_variables(self, store):
        # Weight files hold the `(embedding_dim, C * K)` kernel in either layout. One loop
        # writes each key once (an HDF5 store refuses a second write of a key).
        for index, (variable, transpose) in enumerate(self._variables_with_saved_values()):
            store[str(index)] = self.centre_rows().T if transpose else variable

    def load_own_variables(self, store):
        self._check_load_own_variables(store)
        for index, (variable, transpose) in enumerate(self._variables_with_saved_values()):
            value = store[str(index)]
            variable.assign(np.asarray(value).T if transpose else value)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "sub_centers": self.sub_centers,
                "kernel_layout": self.kernel_layout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
                if self.kernel_regularizer is not None
                else None,
            }
        )
        return config
