"""Partial FC: class-centre sampling around any margin head.

`PartialFC(head, sample_rate)` trains a margin head on a sampled subset of its classes:
every class present in the (global) batch plus a uniform random subset of the others, as
insightface's `arcface_torch` (`partial_fc_v2.py`). The wrapped head keeps its whole
`(embedding_dim, num_classes * sub_centers)` kernel, its margin and its state; only the
columns of the sampled classes enter the product, the softmax and the gradient.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_face.heads import backend_ops
from keras_face.heads.base import MarginHead
from keras_face.heads.class_sampling_layer import ClassSamplingLayer
from keras_face.heads.cosine_classifier import validate_kernel_layout

# Logit of a padding column: exp(-1e9 - max) is exactly 0 in float32 at any logit scale a
# head uses, so a padding column takes no probability and passes no gradient.
PADDING_LOGIT = -1e9
# Largest sampling key of a negative class; every positive class gets POSITIVE_KEY, above
# all of them (the authors' `perm[positive] = 2.0` over draws in [0, 1)).
_MAX_NEGATIVE_KEY = 2**31 - 2
POSITIVE_KEY = 2**31 - 1


def _as_int32(value):
    """A uint32 constant as the int32 with the same bits (two's complement)."""
    return value - 2**32 if value >= 2**31 else value


# Constants of MurmurHash3's 32-bit finaliser and the golden-ratio increment.
_MIX_MULTIPLIER_1 = _as_int32(0x85EBCA6B)
_MIX_MULTIPLIER_2 = _as_int32(0xC2B2AE35)
_GOLDEN = _as_int32(0x9E3779B9)


def _logical_right_shift(x, bits):
    # `right_shift` of an int32 is arithmetic: mask the sign bits it copies in.
    return ops.bitwise_and(ops.right_shift(x, bits), (1 << (32 - bits)) - 1)


def _mix32(x):
    """MurmurHash3's 32-bit finaliser on int32 bits (products wrap modulo 2^32)."""
    x = ops.bitwise_xor(x, _logical_right_shift(x, 16))
    x = ops.multiply(x, ops.convert_to_tensor(_MIX_MULTIPLIER_1, "int32"))
    x = ops.bitwise_xor(x, _logical_right_shift(x, 13))
    x = ops.multiply(x, ops.convert_to_tensor(_MIX_MULTIPLIER_2, "int32"))
    return ops.bitwise_xor(x, _logical_right_shift(x, 16))


def sampling_keys(seed, step, num_classes):
    """Stateless random keys of the classes for one step: int32 `(num_classes,)`.

    A counter-based generator: the key of class `j` at step `t` is a hash of
    `(seed, t, j)` (MurmurHash3's finaliser, twice), uniform over
    `[0, 2^31 - 2]`. It is a pure function of its arguments, computed with integer
    `keras.ops`, so every replica, every backend and a resumed run draw the same keys.

    Args:
        seed: int. Seed of the sampler.
        step: int or int32 scalar tensor. Training step.
        num_classes: int. Number of classes.

    Returns:
        int32 tensor `(num_classes,)`.

    Example:
        ```python
        keys = keras_face.heads.partial_fc.sampling_keys(seed=0, step=3, num_classes=10)
        ```
    """
    seed_bits = ops.convert_to_tensor(_as_int32(int(seed) % 2**32), "int32")
    step = ops.cast(step, "int32")
    golden = ops.convert_to_tensor(_GOLDEN, "int32")
    stream = _mix32(ops.add(_mix32(seed_bits), ops.multiply(step, golden)))
    counters = ops.multiply(ops.arange(num_classes, dtype="int32"), golden)
    keys = _logical_right_shift(_mix32(ops.add(counters, stream)), 1)
    return ops.minimum(keys, _MAX_NEGATIVE_KEY)


def select_classes(labels, keys, num_sample, num_columns):
    """Every class of `labels` plus the negatives of largest key: Partial FC's sample.

    The authors' `sample()` with static shapes: positives get the largest key, the
    `num_columns` largest keys are taken (`top_k`), of which the first
    `max(num_sample, number of positives)` are kept (all positives, then the negatives
    of largest key: a uniform sample without replacement); the other entries are
    padding, `num_classes + j`. Sorted, the real classes come first, ascending.

    Args:
        labels: int32 `(N,)` class ids in `[0, num_classes)` (of the global batch).
        keys: int32 `(num_classes,)` in `[0, 2^31 - 2]`, e.g. from `sampling_keys`.
        num_sample: int. The budget `int(sample_rate * num_classes)`.
        num_columns: int (or int32 scalar). Static size of the result, at least
            `max(num_sample, min(N, num_classes))`.

    Returns:
        `(sampled_classes, num_sampled)`: int32 `(num_columns,)` ascending, entries
        `>= num_classes` are padding; int32 scalar, the number of real classes.

    Example:
        ```python
        sampled, count = keras_face.heads.partial_fc.select_classes(
            labels, keys, num_sample=4, num_columns=6)
        ```
    """
    num_classes = keys.shape[0]
    # Out-of-range labels (possible only where a compiled graph drops the label check)
    # go to an extra sink entry, dropped below.
    labels = ops.cast(labels, "int32")
    in_range = ops.logical_and(labels >= 0, labels < num_classes)
    positions = ops.where(in_range, labels, num_classes)
    padded_keys = ops.concatenate([keys, ops.zeros((1,), "int32")])
    positive_keys = ops.full(ops.shape(labels), POSITIVE_KEY, dtype="int32")
    padded_keys = ops.scatter_update(padded_keys, positions[:, None], positive_keys)
    keys = padded_keys[:num_classes]
    num_positives = ops.sum(ops.cast(keys == POSITIVE_KEY, "int32"))
    num_sampled = ops.maximum(num_positives, num_sample)
    _, order = ops.top_k(keys, num_columns)
    column = ops.arange(num_columns, dtype="int32")
    classes = ops.where(column < num_sampled, ops.cast(order, "int32"), num_classes + column)
    return ops.sort(classes), num_sampled


def kernel_column_positions(table, columns_per_class):
    """Position of each kernel column among the sampled columns: int32 `(C * K,)`.

    Args:
        table: int32 `(C + 1,)`: the column of each class in the sampled logits, `-1`
            when not sampled (the last entry, a sink, is ignored).
        columns_per_class: int. Kernel columns per class, `K` (sub-centres).

    Returns:
        int32 `(C * K,)`: for kernel column `c * K + k` of a sampled class, its position
        `table[c] * K + k` in the sampled kernel; `-1` for the columns of the other
        classes. `PartialFC` writes its dense kernel gradient with it (one gather).

    Example:
        ```python
        positions = keras_face.heads.partial_fc.kernel_column_positions(table, 1)
        ```
    """
    table = ops.cast(table[:-1], "int32")
    if columns_per_class > 1:
        offsets = ops.arange(columns_per_class, dtype="int32")
        positions = table[:, None] * columns_per_class + offsets[None, :]
        positions = ops.where(table[:, None] >= 0, positions, -1)
        table = ops.reshape(positions, (-1,))
    return table


def _gather_columns(kernel, columns, table, columns_per_class):
    """`take(kernel, columns, axis=1)` whose kernel gradient is one gather (TensorFlow).

    TensorFlow differentiates a gather on axis 1 into an `unsorted_segment_sum` over a
    transposed `(C, D)` gradient and a transpose of it; under XLA that scatter does not
    fuse with the optimizer update and costs more than the whole rest of the step
    (issue 10). Each real sampled class is one column, so the dense `(D, C)` gradient
    is a gather instead: the row of the transposed `(S, D)` gradient of each class, a
    zero row for the others (padding columns pass an exactly zero gradient: their
    logits are masked). The values are those of TensorFlow's gradient, bit for bit.
    """
    positions = kernel_column_positions(table, columns_per_class)

    @ops.custom_gradient
    def gather(kernel):
        def grad(*upstream, **kwargs):
            upstream = ops.transpose(upstream[0])  # (S * K, D)
            rows = ops.concatenate([upstream, ops.zeros_like(upstream[:1])], axis=0)
            sink = ops.shape(upstream)[0]
            index = ops.where(positions >= 0, positions, sink)
            return ops.transpose(ops.take(rows, index, axis=0))

        return ops.take(kernel, columns, axis=1), grad

    return gather(kernel)


def _all_gather(labels):
    """The labels of every replica, in replica order (`tf.distribute`); else `labels`."""
    if keras.backend.backend() != "tensorflow":
        return labels
    # TensorFlow-only branch (the replica context exists only there). To move to
    # `backend_ops.cross_replica_all_gather`, which the class pools need too.
    import tensorflow as tf

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return labels
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return labels
    return context.all_gather(labels, axis=0)


def _validate_sample_rate(sample_rate):
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.number)):
        raise ValueError(
            f"sample_rate must be a number in [0, 1]. Received: sample_rate={sample_rate!r}"
        )
    sample_rate = float(sample_rate)
    if math.isnan(sample_rate) or not 0.0 <= sample_rate <= 1.0:
        raise ValueError(
            f"sample_rate must be a number in [0, 1]. Received: sample_rate={sample_rate}"
        )
    return sample_rate


@keras.saving.register_keras_serializable(package="keras_face")
class PartialFC(ClassSamplingLayer):
    """Partial FC: a margin head trained on a sampled subset of its classes.

    Wraps any `keras_face.heads` margin head (sub-centres included) and reuses its
    kernel, margin and state. At each training step with `sample_rate < 1` it keeps
    every class of the global batch (the positives) plus a uniform random subset of the
    other classes, `num_sample = int(sample_rate * num_classes)` classes in all
    (positives only when they alone exceed the budget), and returns the head's float32
    logits over those classes only, in ascending class order: `(batch, S)` with
    `S = max(num_sample, min(global batch, num_classes))`. The columns past the
    sampled ones are padding (logit `-1e9`, zero gradient), so that shapes are static.
    The labels of the loss and metrics are the columns of the sampled classes:
    `remap_labels` (`keras_face.training.FaceTrainingModel` applies it).

    Exactly as insightface's `arcface_torch` (`PartialFC_V2`): `sample_rate` is the
    fraction of all centres kept, positives included; the product is truncated
    (`int(0.29 * 100) == 28`); `sample_rate=0` keeps the positives only. Differences,
    by design: the draws come from a stateless counter-based generator keyed by
    `(seed, step)` (the same on every replica, backend and resumed run) instead of
    `torch.rand`; the margin is the head's own (for ArcFace: its fallback and exact
    gradient unless configured as arcface_torch, `fallback="none", gradient="detached"`);
    the loss is Keras' log-softmax, not DistCrossEntropy's `max(p, 1e-30)` (equal
    gradients; the loss differs only where `p_target < 1e-30`).

    The kernel is not copied: the centres of the sampled classes are gathered from the
    head's whole kernel, which unsampled classes keep in class order (weight files hold
    the whole `(D, C)` kernel). Their gradient is exactly zero; an optimizer with
    momentum or weight decay still moves them, as arcface_torch's v2 does (there is no
    lazy v1 mode: see the Partial FC page of the documentation). An unbuilt head is
    built with `kernel_layout` (default `"rows"`: a `(C, D)` variable, a class per row,
    as arcface_torch stores it), so that on TensorFlow the kernel gradient is the
    `(S, D)` rows of the sampled classes (`tf.IndexedSlices`), which
    `keras_face.training.L2SGD` applies in one pass over the kernel without a dense
    `(D, C)` gradient: at 1M classes, r = 0.1, a step of 0.15x the full softmax's
    against 0.24x with the `"columns"` layout (`benchmarks/large_scale.py`, CPU). A
    built head keeps its own layout: with `"columns"` the dense gradient is written by
    one gather (a custom gradient, bit-identical to TensorFlow's `unsorted_segment_sum`
    and transpose). Under
    `tf.distribute.MirroredStrategy` every replica gathers the labels of all replicas
    and draws the same sample; its logits are those of its local embeddings.

    With `sample_rate=1.0`, in inference (`training=False`) or without labels, the call
    is the head's own call, unchanged: `(batch, num_classes)` logits.

    Args:
        head: a `keras_face.heads.MarginHead` (e.g. `ArcFace(num_classes)`), unbuilt or
            built.
        sample_rate: float in `[0, 1]`. Fraction of the classes in each step's softmax,
            positives included. Defaults to `0.1` (arcface_torch's configs for
            WebFace42M and Glint360K use 0.1-0.3).
        seed: int. Seed of the sampler. Defaults to `None`: a seed drawn from NumPy's
            global generator (reproducible under `keras.utils.set_random_seed`), stored
            in `get_config`.
        kernel_layout: `"rows"` or `"columns"`: the `kernel_layout` given to an unbuilt
            `head` (see `keras_face.heads.CosineClassifier`); a built head keeps its
            own. Defaults to `"rows"`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        head = keras_face.heads.PartialFC(
            keras_face.heads.ArcFace(num_classes=100_000), sample_rate=0.1, seed=0)
        logits = head([embeddings, labels], training=True)  # (batch, 10_000)
        loss = keras.losses.sparse_categorical_crossentropy(
            head.remap_labels(labels), logits, from_logits=True)
        head.sampled_classes  # the 10_000 classes of this step, ascending
        ```

    References:
        - [An et al., Partial FC: Training 10 Million Identities on a Single Machine,
          ICCVW 2021](https://arxiv.org/abs/2010.05222)
        - [An et al., Killing Two Birds with One Stone: Efficient and Robust Training
          of Face Recognition CNNs by Partial FC, CVPR 2022](https://arxiv.org/abs/2203.15565)
    """

    def __init__(self, head, sample_rate=0.1, seed=None, kernel_layout="rows", **kwargs):
        super().__init__(**kwargs)
        if isinstance(head, dict):
            head = keras.saving.deserialize_keras_object(head)
        if not isinstance(head, MarginHead):
            raise ValueError(
                "PartialFC wraps a keras_face.heads margin head. "
                f"Received: head={head!r} of type {type(head).__name__}"
            )
        self.kernel_layout = validate_kernel_layout(kernel_layout)
        if not head.built:
            head.kernel_layout = self.kernel_layout
        self.head = head
        self.sample_rate = _validate_sample_rate(sample_rate)
        self.num_classes = head.num_classes
        # A Python float product, truncated, as arcface_torch (`int(0.29 * 100) == 28`).
        self.num_sample = int(self.sample_rate * self.num_classes)
        if self.sample_rate > 0.0 and self.num_sample < 1:
            raise ValueError(
                f"sample_rate * num_classes must be at least 1 (or sample_rate 0 for the "
                f"positives only). Received: sample_rate={self.sample_rate} with "
                f"num_classes={self.num_classes}"
            )
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}")
        self.seed = int(seed)

    def _num_columns(self, global_labels):
        batch = global_labels.shape[0]
        if batch is not None:
            return max(self.num_sample, min(int(batch), self.num_classes))
        dynamic = ops.minimum(ops.shape(global_labels)[0], self.num_classes)
        return ops.maximum(dynamic, self.num_sample)

    def _sampled_kernel(self, classes, table):
        # Padding entries (>= num_classes) read the last class; their logits are masked.
        classes = ops.minimum(classes, self.num_classes - 1)
        per_class = self.head.columns_per_class
        if per_class > 1:
            # Sub-centres: class c owns columns c*K ... c*K + K - 1 (class-major).
            offsets = ops.arange(per_class, dtype="int32")
            classes = ops.reshape(classes[:, None] * per_class + offsets[None, :], (-1,))
        if self.head.kernel_layout == "rows":
            # A gather of rows: on TensorFlow its gradient is row-sparse (`IndexedSlices`,
            # the S sampled rows), which `L2SGD` applies without a dense gradient. The
            # padding rows repeat the last class with a zero gradient (an optimizer sums
            # duplicate rows).
            return backend_ops.gather_rows(self.head.kernel, classes)
        if keras.backend.backend() != "tensorflow":
            # JAX and PyTorch differentiate a gather into a scatter-add of the columns.
            return ops.take(self.head.kernel, classes, axis=1)
        # `cast` reads the variable into a tensor (`convert_to_tensor` keeps the variable,
        # which `custom_gradient` would then differentiate as a captured variable).
        kernel = ops.cast(self.head.kernel, self.head.kernel.dtype)
        return _gather_columns(kernel, classes, table, per_class)

    def call(self, inputs, training=None):
        head = self.head
        embeddings, labels = head._split_inputs(inputs)
        if not self.samples or labels is None or not training:
            return head(inputs, training=training)
        embeddings = ops.cast(embeddings, "float32")
        if len(embeddings.shape) != 2:
            raise ValueError(
                f"PartialFC expects embeddings of rank 2. "
                f"Received: embeddings shape={tuple(embeddings.shape)}"
            )
        labels = head._validate_labels(labels, embeddings)
        global_labels = _all_gather(labels)
        step = self.step.value
        keys = sampling_keys(self.seed, step, self.num_classes)
        num_columns = self._num_columns(global_labels)
        classes, num_sampled = select_classes(global_labels, keys, self.num_sample, num_columns)
        self.step.assign(step + 1)
        column = ops.arange(ops.shape(classes)[0], dtype="int32")
        valid = column < num_sampled
        table = ops.full((self.num_classes + 1,), -1, dtype="int32")
        table = ops.scatter_update(
            table,
            ops.minimum(classes, self.num_classes)[:, None],
            ops.where(valid, column, -1),
        )
        self.class_columns.assign(table)
        in_range = ops.logical_and(labels >= 0, labels < self.num_classes)
        target_columns = ops.take(table, ops.where(in_range, labels, self.num_classes))

        normalized, norms = head.normalize(embeddings)
        kernel = self._sampled_kernel(classes, table)
        # `MarginHead.call` over the sampled columns (a scalar logit scale folded into the
        # (S,) inverse column norms). Target columns < S <= C, so the head's gather and
        # scatter stay in range (a -1 column gives a NaN row).
        scaled_cosines = head.scaled_cosines(normalized, norms, kernel)
        logits = head.training_logits(scaled_cosines, target_columns, norms)
        return ops.where(valid[None, :], logits, PADDING_LOGIT)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "head": keras.saving.serialize_keras_object(self.head),
                "sample_rate": self.sample_rate,
                "seed": self.seed,
                "kernel_layout": self.kernel_layout,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["head"] = keras.saving.deserialize_keras_object(config["head"])
        return cls(**config)
