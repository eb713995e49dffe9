"""The margin half of every head: the target logit and its state, over the class cosines.

A head is a cosine classifier (`keras_face.heads.CosineClassifier`: the kernel, its
column norms, which columns exist and how they make a class, e.g. `sub_centers`) with a
margin on top. `MarginHead` extends the classifier with the margin machinery; a concrete
head states only its target-logit formula (`target_logits`) and, if it has any, its state
(`build_state`, `update_state`). Everything else lives here once:

- float32 computation under any dtype policy, inference mode (`training=False` or no
  labels: plain scaled cosine, no margin, no state update);
- label validation, reading (a gather) and writing (a scatter) the target column
  without a dense one-hot or mask: the margin stays O(B) work next to the O(B D C)
  product of the classifier (see `benchmarks/heads.py`);
- the global-batch statistics used by stateful heads (`global_batch_mean`,
  `global_batch_moments`), all-reduced across `tf.distribute` replicas;
- the helpers of the angular margins (`safe_sine`, `safe_arccos`,
  `additive_angular_margin`, `straight_through`).

Since every head is a `CosineClassifier`, `sub_centers=K` works with every head: the
margin is applied to the largest of each class's K cosines.
"""

import math

import keras
from keras import ops

from keras_face.heads import backend_ops
from keras_face.heads.cosine_classifier import CosineClassifier

# Floor under 1 - c^2 in sqrt(1 - c^2): zero gradient where |c| = 1 (and at cosines
# that round above 1), while changing no value by more than 1e-15.
SQRT_FLOOR = 1e-30

ARC_FALLBACKS = ("cosface", "easy", "none", "clip", "reflect")
GRADIENT_MODES = ("exact", "detached")
# Angle clip of the `clip` fallback, as AdaFace's ArcFace (`cos(clip(theta + m, eps, pi - eps))`).
CLIP_FALLBACK_EPSILON = 1e-4


def safe_sine(cosine):
    """`sqrt(1 - c^2)` with a finite gradient at |c| = 1 and an exact value elsewhere."""
    return ops.sqrt(ops.maximum(1.0 - ops.square(cosine), SQRT_FLOOR))


def safe_arccos(cosine):
    """`arccos(c)` computed as `atan2(sqrt(1 - c^2), c)`: exact, finite gradient at |c| = 1."""
    return ops.arctan2(safe_sine(cosine), cosine)


def additive_angular_margin(cosine, margin, fallback="cosface"):
    """Target cosine `cos(theta + m)` with one of ArcFace's fallbacks past `theta = pi - m`.

    Args:
        cosine: float32 tensor of target cosines, clipped to [-1, 1].
        margin: float or float32 tensor broadcastable to `cosine` (radians).
        fallback: str. One of `"cosface"` (c - m sin m where c <= cos(pi - m), the
            insightface 2018-2020 and CurricularFace default), `"easy"` (no margin where
            c <= 0), `"none"` (the paper's Algorithm 1: cos(theta + m) everywhere),
            `"clip"` (cos(clip(theta + m, eps, pi - eps)), AdaFace's ArcFace) or
            `"reflect"` (-2 - cos(theta + m) where c <= cos(pi - m): continuous and
            monotone). Defaults to `"cosface"`.

    Returns:
        The adjusted target cosine, same shape as `cosine`.
    """
    cos_m = ops.cos(margin)
    sin_m = ops.sin(margin)
    if fallback == "clip":
        angle = ops.clip(
            safe_arccos(cosine) + margin,
            CLIP_FALLBACK_EPSILON,
            math.pi - CLIP_FALLBACK_EPSILON,
        )
        return ops.cos(angle)
    # cos(theta + m) = c cos m - sin(theta) sin m (ArcFace paper, Eq. 3 target logit).
    shifted = cosine * cos_m - safe_sine(cosine) * sin_m
    if fallback == "none":
        return shifted
    if fallback == "easy":
        return ops.where(cosine > 0.0, shifted, cosine)
    threshold = -cos_m  # cos(pi - m)
    if fallback == "cosface":
        return ops.where(cosine > threshold, shifted, cosine - margin * sin_m)
    if fallback == "reflect":
        return ops.where(cosine > threshold, shifted, -2.0 - shifted)
    raise ValueError(
        f"Unknown ArcFace fallback; expected one of {ARC_FALLBACKS}. "
        f"Received: fallback={fallback!r}"
    )


def straight_through(cosine, target_cosine):
    """Forward `target_cosine`, gradient of `cosine` (CGD, insightface since 2022-12)."""
    return cosine + ops.stop_gradient(target_cosine - cosine)


def validate_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}. Received: {name}={value!r}")
    return value


def validate_angular_margin(name, value):
    """Check an additive angular margin: a finite angle in `[0, pi)` radians.

    At `m >= pi` the margin no longer penalises: `cos(theta + m)` rises again, and the
    `"cosface"` fallback `c - m sin m` becomes a bonus (`sin m < 0` past `pi`); at
    `m = 4` an ArcFace trains to loss 0.
    """
    value = validate_positive(name, value, allow_zero=True)
    if value >= math.pi:
        raise ValueError(
            f"{name} is an additive angular margin in radians and must be in [0, pi) "
            f"(past pi it stops penalising the target). Received: {name}={value}"
        )
    return value


def validate_positive(name, value, allow_zero=False):
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a finite {kind} number. Received: {name}={value}")
    return value


@keras.saving.register_keras_serializable(package="keras_face")
class MarginHead(CosineClassifier):
    """Base class of the margin heads: a cosine classifier with a margin on the target.

    Called as `head([embeddings, labels], training=...)` it returns float32 logits of
    shape `(batch, num_classes)`; `scale * cos(theta)` for every class, with the target
    column replaced by the subclass's `target_logits` when training. Called with
    `training=False` or without labels it returns the plain scaled cosine.

    The class cosines come from the classifier half (`CosineClassifier.cosine_matrix`:
    kernel, column norms, sub-centres). Subclasses override `target_logits` (the margin)
    and may override `logit_scale`, `scaled_nontarget_logits`, `build_state` and
    `update_state`. They list their constructor hyper-parameters in `hyperparameters` so
    that `get_config` is complete.

    Labels (integer, `(batch,)` or `(batch, 1)`) are checked on every training call: a
    label outside `[0, num_classes)`, or labels of another length than the embeddings,
    is an error naming the bad values (and `num_classes`, or both lengths) in

    | mode | what happens |
    |---|---|
    | eager, every backend | `ValueError` |
    | JAX `jit` (`fit` on JAX) | the `ValueError` of a host callback |
    | TensorFlow graph (`tf.function`, `fit`), known or unknown batch | `InvalidArgumentError` |
    | TensorFlow XLA (`jit_compile=True`; `fit`'s `"auto"` on a GPU) | counted, see below |

    XLA drops every check inside a compiled step, so there the head clips such a label
    into range (in-bounds gather and scatter), pads or cuts the labels to the batch
    (`-1` for a missing one), keeps the logits finite, stops the gradient of those rows
    (no weight becomes non-finite, even where TensorFlow's XLA cross-entropy makes the
    loss NaN for that label) and counts them on the device: `invalid_labels()` reads the
    count, `raise_for_invalid_labels()` raises the error the check could not, and the
    callback `keras_face.heads.LabelRangeCheck` does so after every `fit` batch. The
    state of a stateful head still sees those rows (finite values).

    Args:
        num_classes: int. Number of identities, at least 2 (checked when the head is
            built: with one class the loss is identically 0).
        kernel_initializer: initializer of the class centres, shape
            `(embedding_dim, num_classes * sub_centers)`. Defaults to
            `RandomNormal(stddev=0.01)`.
        kernel_regularizer: optional regularizer of the class centres. Defaults to `None`.
        sub_centers: int. Sub-centres per class, `K`: each class owns K kernel columns
            (class-major) and its cosine is the largest of the K, taken before the margin
            (Sub-center ArcFace, for every head). Defaults to `1`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        class HalfCosFace(keras_face.heads.MarginHead):
            scale = 64.0

            def target_logits(self, target_cosine, norms):
                return self.scale * (target_cosine - 0.175)

        head = HalfCosFace(num_classes=1000, sub_centers=2)
        ```
    """

    # Names of the constructor arguments a subclass adds (for get_config).
    hyperparameters = ()
    # TensorFlow: the counter of labels that XLA-compiled calls could not reject.
    _invalid_label_record = None
    # False for a head whose target logit is its plain scaled cosine (NormFace): training
    # calls then check the labels and skip reading and writing the target column.
    has_margin = True

    def __init__(
        self,
        num_classes,
        kernel_initializer=None,
        kernel_regularizer=None,
        sub_centers=1,
        **kwargs,
    ):
        super().__init__(
            num_classes,
            sub_centers=sub_centers,
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            **kwargs,
        )

    # ----------------------------------------------------------------------------------
    # Building.
    def build(self, input_shape):
        super().build(input_shape)
        self.build_state()
        if keras.backend.backend() == "tensorflow":
            # Where XLA's compiled steps count the labels they cannot reject (not a weight).
            self._invalid_label_record = backend_ops.InvalidLabelRecord()

    def build_state(self):
        """Create the head's non-trainable state weights (none by default)."""

    # ----------------------------------------------------------------------------------
    # Override points.
    def logit_scale(self, norms):
        """The factor of every logit: a scalar `s` (SphereFace: the raw norm, `(B, 1)`)."""
        return self.scale

    def scaled_nontarget_logits(self, scaled_cosine, target_cosine, norms):
        """Logits of all columns before the target column is written, `(B, C)`.

        Args:
            scaled_cosine: float32 `(B, C)`, the class cosines times `logit_scale(norms)`
                (a scalar scale is folded into the column norms: see `scaled_cosines`).
            target_cosine: float32 `(B,)`, the target cosines, clipped to [-1, 1].
            norms: float32 `(B,)`, the embedding norms.

        Returns:
            `scaled_cosine` here; AdaFace clips it, CurricularFace reweights its hard
            negatives.
        """
        return scaled_cosine

    def margin_logits(self, scaled_cosine, labels, target_cosine, norms):
        """The training logits: `scaled_nontarget_logits` with the target column written.

        Args:
            scaled_cosine: float32 `(B, C)` scaled class cosines.
            labels: int32 `(B,)` target columns.
            target_cosine: float32 `(B,)` target cosines, clipped to [-1, 1].
            norms: float32 `(B,)` embedding norms.

        Returns:
            float32 `(B, C)` logits. AdaFace and CurricularFace fuse their `(B, C)`
            non-target work with the write on TensorFlow (`backend_ops.clip_with_target`,
            `backend_ops.reweight_with_target`).
        """
        logits = self.scaled_nontarget_logits(scaled_cosine, target_cosine, norms)
        target = self.target_logits(target_cosine, norms)
        return self.write_target(logits, labels, ops.cast(target, "float32"))

    def nontarget_logits(self, cosine, target_cosine, norms):
        """`scaled_nontarget_logits` from the plain class cosines `(B, C)`.

        For code that holds cosines rather than scaled cosines (the class-sharded
        classifier); one `(B, C)` product more than `scaled_cosines`.
        """
        return self.scaled_nontarget_logits(self.logit_scale(norms) * cosine, target_cosine, norms)

    def target_logits(self, target_cosine, norms):
        """Logit of the target class, `(B,)`; margin heads override it (here: no margin)."""
        return self.logit_scale(norms) * target_cosine

    def update_state(self, scaled_cosine, target_cosine, norms):
        """Update the head's state from a training batch, before it is used.

        Receives the scaled class cosines `(B, C)`, the target cosines `(B,)` and the
        embedding norms `(B,)`.
        """

    # ----------------------------------------------------------------------------------
    # Shared pieces.
    def global_batch_mean(self, values):
        """Mean of a `(B,)` tensor over the global batch, and the global batch size.

        Under a `tf.distribute` strategy the sum and the count are all-reduced across
        replicas, so every replica sees the statistic of the whole global batch.
        """
        values = ops.cast(values, "float32")
        partial = ops.stack([ops.sum(values), ops.cast(ops.shape(values)[0], "float32")])
        total = backend_ops.cross_replica_sum(partial)
        count = total[1]
        return total[0] / ops.maximum(count, 1.0), count

    def global_batch_moments(self, values):
        """Mean and unbiased standard deviation over the global batch, and its size.

        Two passes (mean, then squared deviations), as `torch.std`. With one sample in the
        global batch the deviation sum is divided by 1 instead of 0 (the reference's NaN).
        """
        mean, count = self.global_batch_mean(values)
        squared = ops.sum(ops.square(ops.cast(values, "float32") - mean))
        squared = backend_ops.cross_replica_sum(squared)
        std = ops.sqrt(squared / ops.maximum(count - 1.0, 1.0))
        return mean, std, count

    @staticmethod
    def assign_if_batch(variable, new_value, count):
        """Assign `new_value` unless the global batch was empty (count == 0)."""
        new_value = ops.cast(new_value, variable.dtype)
        variable.assign(ops.where(count > 0, new_value, variable.value))

    def _split_inputs(self, inputs):
        if isinstance(inputs, dict):
            raise ValueError(
                f"{self.__class__.__name__} takes `[embeddings, labels]` (or embeddings "
                f"alone). Received: a dict with keys {sorted(inputs)}"
            )
        if isinstance(inputs, (list, tuple)):
            if len(inputs) == 1:
                return inputs[0], None
            if len(inputs) != 2:
                raise ValueError(
                    f"{self.__class__.__name__} takes `[embeddings, labels]`. "
                    f"Received: a list of {len(inputs)} inputs"
                )
            return inputs[0], inputs[1]
        return inputs, None

    def _validate_labels(self, labels, embeddings):
        name = self.__class__.__name__
        dtype = keras.backend.standardize_dtype(labels.dtype)
        if "int" not in dtype:
            raise ValueError(
                f"{name}: labels must be integer class ids. Received: labels dtype={dtype}"
            )
        shape = tuple(labels.shape)
        if len(shape) == 2 and shape[1] == 1:
            labels = ops.squeeze(labels, axis=1)
        elif len(shape) != 1:
            raise ValueError(
                f"{name}: labels must have shape (batch,) or (batch, 1). "
                f"Received: labels shape={shape}"
            )
        batch, label_batch = embeddings.shape[0], labels.shape[0]
        if batch is not None and label_batch is not None and batch != label_batch:
            raise ValueError(
                f"{name}: embeddings and labels must have the same batch size. "
                f"Received: embeddings batch={batch}, labels batch={label_batch}"
            )
        labels = ops.cast(labels, "int32")
        # An unknown batch dimension (a `tf.function` or `fit` on a dataset without
        # `drop_remainder`) is compared when the step runs.
        batch_size = batch if batch is not None else ops.shape(embeddings)[0]
        return backend_ops.check_labels(
            labels, batch_size, self.num_classes, name, record=self._invalid_label_record
        )

    def target_indices(self, labels):
        """`(B, 2)` indices `(i, y_i)` of the target entries; labels clipped into range.

        Out-of-range labels raise before this (`_validate_labels`), except under XLA,
        which drops the check: the clip keeps the gather and scatter in bounds there (and
        `call` stops the gradient of those rows).
        """
        rows = ops.arange(ops.shape(labels)[0], dtype="int32")
        return ops.stack([rows, ops.clip(labels, 0, self.num_classes - 1)], axis=1)

    def gather_target(self, cosine, labels, scale=None):
        """`cosine[i, y_i]`, `(B,)`: O(B) forward, one scatter backward.

        The class cosines are not clipped (they may pass +-1 by a float32 ulp); the
        target cosines are, to [-1, 1], before any margin formula sees them. The clip is
        straight through (`c + stop_gradient(clip(c) - c)`, exactly `clip(c)` in
        float32): the gradient is that of the unclipped cosine, as for the other columns.

        Args:
            cosine: float32 `(B, C)` class cosines, or scaled cosines with `scale`.
            labels: int32 `(B,)` columns.
            scale: optional scalar by which `cosine` was scaled (`scaled_cosines`): the
                B gathered entries are divided by it (exact for a power of two, as the
                default s = 64). Defaults to `None`.
        """
        target = backend_ops.gather_entries(cosine, self.target_indices(labels))
        if scale is not None:
            target = target / scale
        return target + ops.stop_gradient(ops.clip(target, -1.0, 1.0) - target)

    def scaled_cosines(self, normalized, norms, kernel=None):
        """`logit_scale(norms) * cos`, `(B, C)`, and the scale if it was folded.

        A scalar scale (every head but SphereFace on raw features) is multiplied into the
        `(C,)` inverse column norms (`cosine_matrix(..., scale=)`): no `(B, C)` product
        forward or backward. A per-row scale multiplies the matrix.

        Args:
            normalized: float32 `(B, D)` unit embeddings.
            norms: float32 `(B,)` embedding norms.
            kernel: optional kernel of a subset of the columns (see `cosine_matrix`).
                Defaults to `self.kernel`.

        Returns:
            `(scaled_cosine, scale, cosine)`: `cosine` is the plain `(B, C)` matrix when
            the scale is per row, `None` when it was folded.
        """
        scale = self.logit_scale(norms)
        if isinstance(scale, (int, float)) or len(scale.shape) == 0:
            return self.cosine_matrix(normalized, kernel, scale=scale), scale, None
        cosine = self.cosine_matrix(normalized, kernel)
        return scale * cosine, scale, cosine

    def training_logits(self, scaled_cosines, labels, norms):
        """The training logits from `scaled_cosines`'s result and the target columns.

        Reads the target cosines, updates the state ("update, then use", as the
        references) and applies the margin (`margin_logits`); a head without a margin
        returns the scaled cosines.

        Args:
            scaled_cosines: the `(scaled_cosine, scale, cosine)` of `scaled_cosines`.
            labels: int32 `(B,)` target columns, in range.
            norms: float32 `(B,)` embedding norms.

        Returns:
            float32 `(B, C)` logits.
        """
        scaled, scale, cosine = scaled_cosines
        if not self.has_margin:
            return scaled
        if cosine is None:
            target_cosine = self.gather_target(scaled, labels, scale=scale)
        else:
            target_cosine = self.gather_target(cosine, labels)
        self.update_state(scaled, target_cosine, norms)
        return self.margin_logits(scaled, labels, target_cosine, norms)

    def write_target(self, logits, labels, target):
        """Put `target` (B,) in column `labels` (B,) of `logits` (B, C) by a scatter.

        The scatter is O(B) work (one copy of the matrix at most); a boolean mask would
        add several `(B, C)` passes forward and backward. Labels out of range (possible
        only under XLA) are clipped into range (`target_indices`).
        """
        return ops.scatter_update(logits, self.target_indices(labels), target)

    def stop_invalid_rows(self, logits, labels):
        """Stop the gradient of the rows whose label is out of range (XLA only).

        Under XLA such a row has a finite stand-in (its label clipped into range), but
        it must not train anything; the loss may still be NaN there (TensorFlow's sparse
        cross-entropy under XLA gives NaN for a label out of range), and its NaN gradient
        must not reach the weights. A select, not a product: `0 * NaN` would be NaN.
        """
        valid = ops.logical_and(labels >= 0, labels < self.num_classes)
        return ops.where(ops.expand_dims(valid, 1), logits, ops.stop_gradient(logits))

    # ----------------------------------------------------------------------------------
    # Labels under XLA.
    def invalid_labels(self):
        """What XLA-compiled training calls of this head let through since the last check.

        Outside XLA a bad label raises in the call itself (see the class docstring); under
        TensorFlow's XLA (`jit_compile=True`), where no check can raise inside the compiled
        step, the head counts them on the device instead.

        Returns:
            A `keras_face.heads.backend_ops.InvalidLabels(count, example,
            embeddings_batch, labels_batch)`; all zero / `None` when nothing was counted
            (always on JAX and PyTorch, and before the head is built).
        """
        if self._invalid_label_record is None:
            return backend_ops.InvalidLabels(0, None, None, None)
        return self._invalid_label_record.read()

    def raise_for_invalid_labels(self):
        """Raise the error that XLA could not raise, if this head counted bad labels.

        Reads `invalid_labels()` (a small device-to-host copy) and, when something was
        counted, resets the count and raises `ValueError` naming the bad label and
        `num_classes`, or both batch sizes. `keras_face.heads.LabelRangeCheck` calls it
        after every batch of `fit`.

        Example:
            ```python
            train_step(images, labels)  # a `tf.function(jit_compile=True)`
            head.raise_for_invalid_labels()
            ```
        """
        record = self.invalid_labels()
        if record.count == 0 and record.embeddings_batch is None:
            return
        self._invalid_label_record.reset()
        name = self.__class__.__name__
        note = (
            "(counted under XLA, where the check cannot raise inside the compiled step; "
            "those rows had no gradient)"
        )
        if record.embeddings_batch is not None:
            raise ValueError(
                f"{name}: embeddings and labels must have the same batch size {note}. "
                f"Received: embeddings batch={record.embeddings_batch}, "
                f"labels batch={record.labels_batch}"
            )
        raise ValueError(
            f"{name}: every label must be in [0, num_classes) with num_classes="
            f"{self.num_classes} {note}. Received: labels containing {record.example} "
            f"({record.count} out of range)"
        )

    # ----------------------------------------------------------------------------------
    def call(self, inputs, training=None):
        embeddings, labels = self._split_inputs(inputs)
        embeddings = ops.cast(embeddings, "float32")
        if len(embeddings.shape) != 2:
            raise ValueError(
                f"{self.__class__.__name__} expects embeddings of rank 2. "
                f"Received: embeddings shape={tuple(embeddings.shape)}"
            )
        normalized, norms = self.normalize(embeddings)
        scaled_cosines = self.scaled_cosines(normalized, norms)
        if labels is None or not training:
            return scaled_cosines[0]
        labels = self._validate_labels(labels, embeddings)
        logits = self.training_logits(scaled_cosines, labels, norms)
        if backend_ops.in_xla_compilation():
            # XLA (TensorFlow's `jit_compile=True`, the default of `fit` on GPUs) drops
            # the label checks' Asserts: bad labels were counted, their rows train nothing.
            logits = self.stop_invalid_rows(logits, labels)
        return logits

    def get_config(self):
        config = super().get_config()
        for name in self.hyperparameters:
            config[name] = getattr(self, name)
        return config
