"""The only backend-specific code of `keras_face.heads`.

Everything else in the heads uses `keras.ops`. Two things cannot be expressed that way:

- `cross_replica_sum`: under a `tf.distribute` strategy, the statistics of stateful heads
  (CurricularFace `t`, AdaFace mean/std) are taken over the whole global batch, so that two
  replicas with a global batch B reach exactly the state of one replica with batch B.
  On the JAX and PyTorch backends (no replica context) it is the identity.
- `check_labels` (and `check_label_range`): a label outside `[0, num_classes)`, or labels
  of another length than the embeddings, must raise an error naming the bad values, also
  inside a compiled graph (TensorFlow `tf.function`, JAX `jit`), where Python cannot look
  at the values. Under TensorFlow's XLA (`jit_compile=True`), which drops every `Assert`,
  they are counted on the device instead (`InvalidLabelRecord`, `in_xla_compilation`).

And performance workarounds of the `(B, C)` work, identical in value on every backend:
`column_sums` and `scale_columns` avoid JAX XLA:CPU's slow leading-axis reductions;
`gather_entries` avoids TensorFlow's slow gradient of a flat gather; `gather_rows` its
copy of a variable read whole; `max_last_axis`
(the sub-centre max) TensorFlow's slow reductions over a short axis; `clip_values`
(AdaFace) and `reweight_hard_negatives` (CurricularFace) give TensorFlow gradients with
fewer `(B, C)` passes than its own.
"""

import typing

import keras
import numpy as np
from keras import ops


def cross_replica_sum(value):
    """Sum `value` over the replicas of the current `tf.distribute` strategy.

    Args:
        value: tensor. A per-replica partial sum.

    Returns:
        The sum over all replicas in sync (the identity outside a multi-replica context or
        on a backend other than TensorFlow).
    """
    if keras.backend.backend() != "tensorflow":
        return value
    import tensorflow as tf  # TensorFlow-only branch.

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return value
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def replica_share(loss):
    """A replica's mean loss as its share of the global-batch loss.

    Under a `tf.distribute` strategy the replicas' gradients are summed, so a model that
    computes its own loss in `compute_loss` (rather than through a compiled
    `keras.losses.Loss`, which Keras scales) divides its replica mean by the number of
    replicas; Keras multiplies the logged loss back. Without a strategy, or on another
    backend, the loss is unchanged.

    Args:
        loss: scalar tensor, the mean over the replica's examples.

    Returns:
        The scaled scalar.
    """
    if keras.backend.backend() != "tensorflow":
        return loss
    import tensorflow as tf  # TensorFlow-only branch.

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:
        loss = loss * (1.0 / replicas)
    return loss


def column_sums(matrix):
    """Sum of a 2-D matrix over its first axis, `(rows, columns) -> (columns,)`.

    On JAX it is a product with a row of ones: XLA:CPU reduces over the leading axis
    slowly (summing the squares of a `(512, 100000)` kernel column by column costs more
    than the `(256, 512) @ (512, 100000)` product, a matrix product of ones a fifth of
    it). TensorFlow's and PyTorch's reductions are as fast as the product; they keep
    `sum`.
    """
    if keras.backend.backend() == "jax":
        ones = ops.ones((1, ops.shape(matrix)[0]), dtype=matrix.dtype)
        return ops.matmul(ones, matrix)[0]
    return ops.sum(matrix, axis=0)


def scale_columns(matrix, column_scale):
    """`matrix * column_scale[None, :]` for a `(rows, columns)` matrix.

    On JAX the broadcast is written as an outer product with a column of ones, so that
    the gradient with respect to `column_scale` (a sum over the rows) is a matrix
    product instead of XLA:CPU's slow leading-axis reduction (see `column_sums`): a
    margin-head training step at B=256, C=100,000 runs about 1.8x faster. XLA
    simplifies the product back into a broadcast in the forward pass. Elsewhere it is
    the plain broadcast multiply.
    """
    if keras.backend.backend() == "jax":
        ones = ops.ones((ops.shape(matrix)[0], 1), dtype=matrix.dtype)
        return matrix * ops.matmul(ones, ops.expand_dims(column_scale, 0))
    return matrix * column_scale


def gather_rows(variable, indices):
    """`take(variable, indices, axis=0)` of a variable, reading only those rows.

    On TensorFlow it gathers from the variable's resource (`ResourceGather`): Keras'
    `take` first reads the whole variable into a tensor, and while that tensor lives an
    in-place update of the variable (`keras_face.training.L2SGD`) copies the variable
    first (2 GiB and about 0.2 s a Partial FC step at 1M classes). The gradient is the
    same row-sparse `tf.IndexedSlices`. Elsewhere it is `take`.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # TensorFlow-only branch.

        return tf.gather(variable.value, indices)
    return ops.take(variable, indices, axis=0)


def gather_entries(matrix, indices):
    """`matrix[i, j]` for every row `(i, j)` of `indices`: `(B, C), (B, 2) -> (B,)`.

    TensorFlow: `tf.gather_nd`. Its gradient is one `scatter_nd` into the `(B, C)`
    shape; the gradient of a gather from the flattened matrix is an `IndexedSlices`
    whose conversion to a dense `(B * C,)` tensor (an `unsorted_segment_sum`) cost about
    12 % of a CosFace training step at B=256, D=512, C=50,000 on the CPU.
    Elsewhere: a gather from the flattened matrix (`take_along_axis` would broadcast the
    indices), which JAX and PyTorch differentiate with one scatter.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # TensorFlow-only branch.

        return tf.gather_nd(matrix, indices)
    flat = indices[:, 0] * ops.shape(matrix)[1] + indices[:, 1]
    return ops.take(ops.reshape(matrix, (-1,)), flat)


# Initial value of a max over cosines or scaled cosines: below every finite float32.
_LOWEST_FLOAT32 = -3.4028235e38


def max_last_axis(values):
    """Largest entry along the last axis, the gradient shared equally by exact ties.

    `(..., K) -> (...)` for a small static `K` (the sub-centres of a class); an empty
    batch gives an empty result on every backend.

    TensorFlow: TensorFlow's graph mode reduces over a short innermost axis slowly
    (`tf.reduce_max` of a `(256, 50000, 3)` tensor costs as much CPU time as 25
    elementwise passes over it), and the gradient of a max takes several passes (tie
    indicators, their count, a division, a select). Here both are XLA-compiled functions
    (the same floats as TensorFlow's own gradient, ties shared equally): one fused pass
    each way; forward + backward of a `(256, 50000, 3)` max in half the time of the
    running `maximum` of the K slices used before.
    Elsewhere: `ops.max` (`initial`: PyTorch refuses an empty tensor without it; the
    lowest float32, below any scaled cosine).
    """
    if keras.backend.backend() != "tensorflow":
        if values.shape[0] == 0:
            # PyTorch's `ops.max` of an empty tensor ignores `axis`: slice instead.
            return values[..., 0]
        return ops.max(values, axis=-1, initial=_LOWEST_FLOAT32)
    import tensorflow as tf  # TensorFlow-only branch.

    fused = _tf_fused()

    @tf.custom_gradient
    def shared_max(values):
        largest = fused["max_forward"](values)

        def gradient(upstream):
            return fused["max_backward"](upstream, values, largest)

        return largest, gradient

    return shared_max(values)


def clip_values(values, low, high):
    """`clip(values, low, high)`; the gradient passes where `low <= values <= high`.

    TensorFlow: the gradient of `tf.clip_by_value` makes five `(B, C)` passes (zeros, two
    comparisons, their `or`, a select); here it is one XLA-compiled pass (comparisons and
    select fused), in graph mode too. About 3 % of an AdaFace training step (B=256,
    D=512, C=50,000) on the CPU. Elsewhere: `ops.clip`.
    """
    if keras.backend.backend() != "tensorflow":
        return ops.clip(values, low, high)
    return _tf_elementwise("clip", values, (low, high))


def reweight_hard_negatives(scaled_cosine, threshold, t, scale):
    """CurricularFace's non-target logits: `s c (t + c)` where `c > threshold`, else `s c`.

    Args:
        scaled_cosine: float32 `(B, C)`, the class cosines times the scale, `z = s c`.
        threshold: float32 `(B, 1)`, the hardness threshold on the scale of `z`
            (`s cos(theta_y + m)`): the hard negatives are `z > threshold`.
        t: float32 scalar, the moving average (no gradient).
        scale: float. The scale `s`.

    Computed as `z * where(z > threshold, t + z / s, 1)` (`z / s` as a product with
    `1 / s`: exact for s = 64), gradient `g * where(z > threshold, t + 2 z / s, 1)`.
    TensorFlow: one XLA-compiled function, so that the comparison, the select and the
    products are one fused pass over the `(B, C)` matrix forward and one backward, in
    graph mode too (TensorFlow's graph runs every elementwise op as its own pass: five
    forward, three backward; about 7 % of a CurricularFace step at B=256, D=512,
    C=50,000 on the CPU). Elsewhere the same formula, differentiated by the backend.
    """
    inverse_scale = 1.0 / scale
    if keras.backend.backend() != "tensorflow":
        hard = ops.greater(scaled_cosine, threshold)
        return scaled_cosine * ops.where(hard, t + scaled_cosine * inverse_scale, 1.0)
    return _tf_elementwise("reweight", scaled_cosine, (threshold, t, inverse_scale))


def fuses_target_write():
    """Whether `clip_with_target` and `reweight_with_target` exist (TensorFlow)."""
    return keras.backend.backend() == "tensorflow"


def clip_with_target(values, indices, target, low, high):
    """`scatter_update(clip(values, low, high), indices, target)`, one pass each way.

    TensorFlow only (`fuses_target_write`): AdaFace's non-target clip and the write of
    its target column as one XLA-compiled pass forward and one backward (the gradient of
    a clipped or overwritten entry is 0, `tf.clip_by_value`'s gradient elsewhere), instead
    of a clip, a scatter copy and their gradients: two `(B, C)` passes fewer each way.

    Args:
        values: float32 `(B, C)` scaled cosines.
        indices: int32 `(B, 2)` target entries `(i, y_i)` (`MarginHead.target_indices`).
        target: float32 `(B,)` target logits.
        low: float. Lower bound of the clip.
        high: float. Upper bound of the clip.
    """
    return _tf_elementwise("clip", values, (low, high), indices, target)


def reweight_with_target(scaled_cosine, indices, target, threshold, t, scale):
    """`reweight_hard_negatives` with the target column written, one pass each way.

    TensorFlow only (`fuses_target_write`): CurricularFace's non-target logits and the
    write of its target column as one XLA-compiled pass forward and one backward.

    Args:
        scaled_cosine: float32 `(B, C)`, `z = s c`.
        indices: int32 `(B, 2)` target entries `(i, y_i)`.
        target: float32 `(B,)` target logits.
        threshold: float32 `(B, 1)` hardness threshold on the scale of `z`.
        t: float32 scalar, the moving average (no gradient).
        scale: float. The scale `s`.
    """
    params = (threshold, t, 1.0 / scale)
    return _tf_elementwise("reweight", scaled_cosine, params, indices, target)


def _tf_elementwise(kind, values, params, indices=None, target=None):
    """`kind` (`"clip"`, `"reweight"`) of `values` as one XLA-compiled pass each way.

    With `indices` and `target`, the target entries are written in the same pass (their
    gradient goes to `target`, none to `values` there).
    """
    import tensorflow as tf  # TensorFlow-only branch.

    fused = _tf_fused()
    # Parameters as tensors: one trace for every head and value.
    params = tuple(tf.cast(param, values.dtype) for param in params)
    columns = None if indices is None else indices[:, 1]

    @tf.custom_gradient
    def apply(values, *target_input):
        written = target_input[0] if target_input else None

        def gradient(upstream):
            grad = fused[f"{kind}_backward"](upstream, values, columns, *params)
            if written is None:
                return grad
            return grad, tf.gather_nd(upstream, indices)

        return fused[f"{kind}_forward"](values, columns, written, *params), gradient

    return apply(values) if target is None else apply(values, target)


def _tf_fused():
    """TensorFlow functions compiled by XLA for the `(B, C)` elementwise work of margins.

    Built once (a `tf.function` per process, traced per dtype and shape). In graph mode
    TensorFlow runs each elementwise op as its own pass over the matrix; a compiled
    function fuses them into one. Nested in an XLA-compiled step they are inlined.
    """
    if _TF_FUSED:
        return _TF_FUSED
    import tensorflow as tf  # TensorFlow-only branch.

    def compiled(function):
        return tf.function(function, jit_compile=True, autograph=False, reduce_retracing=True)

    @compiled
    def max_forward(values):
        return tf.reduce_max(values, axis=-1)

    @compiled
    def max_backward(upstream, values, largest):
        # TensorFlow's own gradient of a max: shared equally by exact ties.
        selected = tf.equal(values, largest[..., None])
        count = tf.reduce_sum(tf.cast(selected, upstream.dtype), axis=-1, keepdims=True)
        return tf.where(selected, upstream[..., None] / count, tf.zeros_like(values))

    def target_mask(matrix, columns):
        width = tf.shape(matrix)[1]
        return tf.equal(tf.range(width)[None, :], columns[:, None])

    def fuse(value, slope):
        # `columns` None: the elementwise work alone; else the target entries are written.
        def forward(values, columns, target, *params):
            result = value(values, *params)
            if columns is None:
                return result
            return tf.where(target_mask(values, columns), target[:, None], result)

        def backward(upstream, values, columns, *params):
            grad = slope(upstream, values, *params)
            if columns is None:
                return grad
            return tf.where(target_mask(values, columns), tf.zeros_like(grad), grad)

        return compiled(forward), compiled(backward)

    # The elementwise margin work: for each kind, its value and its gradient
    # (`upstream` times the derivative), from the input and the kind's parameters (no
    # gradient to the parameters: detached in the references).
    def clip_value(values, low, high):
        return tf.clip_by_value(values, low, high)

    def clip_gradient(upstream, values, low, high):
        inside = tf.logical_and(values >= low, values <= high)
        return tf.where(inside, upstream, tf.zeros_like(upstream))

    def reweight_value(scaled_cosine, threshold, t, inverse_scale):
        weight = t + inverse_scale * scaled_cosine
        return scaled_cosine * tf.where(scaled_cosine > threshold, weight, 1.0)

    def reweight_gradient(upstream, scaled_cosine, threshold, t, inverse_scale):
        weight = t + 2.0 * inverse_scale * scaled_cosine
        return upstream * tf.where(scaled_cosine > threshold, weight, 1.0)

    kinds = {"clip": (clip_value, clip_gradient), "reweight": (reweight_value, reweight_gradient)}
    _TF_FUSED.update(max_forward=max_forward, max_backward=max_backward)
    for kind, (value, slope) in kinds.items():
        _TF_FUSED[f"{kind}_forward"], _TF_FUSED[f"{kind}_backward"] = fuse(value, slope)
    return _TF_FUSED


_TF_FUSED = {}


def _label_error(layer_name, num_classes, bad_values):
    bad = ", ".join(str(int(v)) for v in np.asarray(bad_values).reshape(-1)[:8])
    return ValueError(
        f"{layer_name}: every label must be in [0, num_classes) with "
        f"num_classes={num_classes}. Received: labels containing {bad}"
    )


def _raise_if_out_of_range(labels, num_classes, layer_name):
    labels = np.asarray(labels)
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise _label_error(layer_name, num_classes, bad)


def check_label_range(labels, num_classes, layer_name):
    """Raise an error naming the first bad labels when any is outside `[0, num_classes)`.

    Args:
        labels: integer tensor of shape `(batch,)`.
        num_classes: int. Number of classes of the head.
        layer_name: str. Used in the message.

    Returns:
        `labels`, possibly with a control dependency on the check (TensorFlow graphs).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # TensorFlow-only branch.

        if tf.executing_eagerly():
            _raise_if_out_of_range(labels.numpy(), num_classes, layer_name)
            return labels
        bad = tf.boolean_mask(labels, (labels < 0) | (labels >= num_classes))
        check = tf.debugging.Assert(
            tf.equal(tf.size(bad), 0),
            [
                f"{layer_name}: every label must be in [0, num_classes) with "
                f"num_classes={num_classes}. Received: labels containing",
                bad,
            ],
            summarize=8,
        )
        with tf.control_dependencies([check]):
            return tf.identity(labels)
    if backend == "jax":
        import jax  # JAX-only branch.

        if isinstance(labels, jax.core.Tracer):
            jax.debug.callback(_raise_if_out_of_range, labels, num_classes, layer_name)
            return labels
        _raise_if_out_of_range(np.asarray(labels), num_classes, layer_name)
        return labels
    # PyTorch (eager) and NumPy: look at the values directly.
    _raise_if_out_of_range(ops.convert_to_numpy(labels), num_classes, layer_name)
    return labels


def in_xla_compilation():
    """Whether TensorFlow is tracing a function that XLA compiles (`jit_compile=True`).

    XLA drops every `tf.debugging.Assert` of such a function (and `check_numerics`): a
    check that must hold there cannot raise inside it. `model.fit` compiles its step with
    XLA when `jit_compile=True`, and by default (`"auto"`) on a machine with a GPU.
    Always `False` on the other backends (JAX's host callbacks raise under `jit`) and
    in eager TensorFlow.
    """
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf  # TensorFlow-only branch.

    # No public equivalent: TensorFlow's own layers ask the same question this way.
    from tensorflow.python.ops import control_flow_util

    if tf.executing_eagerly():
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


class InvalidLabels(typing.NamedTuple):
    """What a head counted under XLA since its last check (`MarginHead.invalid_labels`).

    Attributes:
        count: int. Labels outside `[0, num_classes)` seen by training calls.
        example: int or `None`. One of them (the latest batch's first).
        embeddings_batch: int or `None`. Batch size of the embeddings of the latest call
            whose labels had another length (`None`: no such call).
        labels_batch: int or `None`. Length of its labels.
    """

    count: int
    example: typing.Optional[int]
    embeddings_batch: typing.Optional[int]
    labels_batch: typing.Optional[int]


class InvalidLabelRecord:
    """TensorFlow-only: a device counter of the labels XLA's dropped checks let through.

    Holds one int64 variable `[count, example, embeddings batch, labels batch]` that the
    XLA branch of `check_labels` updates in the compiled step; `read()` and `reset()`
    run outside it. It is deliberately not a Keras weight (the holder is a plain object,
    which neither Keras nor `tf.train.Checkpoint` tracks): it is a diagnostic, not part
    of the model, and `.keras` files and checkpoints stay as they were. Under a
    `tf.distribute` strategy the count is summed over the replicas (the example and the
    batch sizes are the first replica's).
    """

    def __init__(self):
        import tensorflow as tf  # TensorFlow-only class.

        with tf.init_scope():
            self.variable = tf.Variable(
                tf.zeros((4,), "int64"),
                trainable=False,
                name="invalid_labels",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
        # Set when an XLA step that updates the record is traced: until then there is
        # nothing to read (no device-to-host copy).
        self.traced = False

    def read(self):
        """The record as `InvalidLabels` (counts since the last `reset`)."""
        if not self.traced:
            return InvalidLabels(0, None, None, None)
        count, example, embeddings_batch, labels_batch = (
            int(v) for v in np.asarray(self.variable.numpy())
        )
        mismatch = embeddings_batch != labels_batch
        return InvalidLabels(
            count=count,
            example=example if count else None,
            embeddings_batch=embeddings_batch if mismatch else None,
            labels_batch=labels_batch if mismatch else None,
        )

    def reset(self):
        """Forget what was counted."""
        self.variable.assign(np.zeros((4,), np.int64))

    def update(self, labels, batch_size, num_classes):
        """Count (in the compiled step) what the checks would have rejected; see `check_labels`."""
        import tensorflow as tf  # TensorFlow-only class.

        self.traced = True
        label_count = tf.shape(labels, out_type="int64")[0]
        batch_size = tf.cast(batch_size, "int64")
        labels = tf.cast(labels, "int64")
        bad = tf.logical_or(labels < 0, labels >= num_classes)
        count = cross_replica_sum(tf.reduce_sum(tf.cast(bad, "int64")))
        local_count = tf.reduce_sum(tf.cast(bad, "int32"))
        first_bad = tf.gather(labels, tf.argmax(tf.cast(bad, "int32"), output_type="int32"))
        old = self.variable.read_value()
        example = tf.where(local_count > 0, first_bad, old[1])
        mismatch = tf.not_equal(label_count, batch_size)
        self.variable.assign(
            tf.stack(
                [
                    old[0] + count,
                    example,
                    tf.where(mismatch, batch_size, old[2]),
                    tf.where(mismatch, label_count, old[3]),
                ]
            )
        )


def _batch_error_message(layer_name, embeddings_batch, labels_batch):
    return (
        f"{layer_name}: embeddings and labels must have the same batch size. "
        f"Received: embeddings batch={embeddings_batch}, labels batch={labels_batch}"
    )


def check_labels(labels, batch_size, num_classes, layer_name, record=None):
    """Check labels against the batch and the classes in every execution mode.

    | mode | a label outside `[0, num_classes)`, or a length other than `batch_size` |
    |---|---|
    | eager (every backend), JAX `jit` | `ValueError` naming the bad values |
    | TensorFlow graph (`tf.function`, `fit`) | `InvalidArgumentError` (an `Assert`) |
    | TensorFlow XLA (`jit_compile=True`) | counted in `record`; labels padded / cut |

    Args:
        labels: int32 tensor of shape `(labels_batch,)`.
        batch_size: int or scalar tensor. Batch size of the embeddings.
        num_classes: int. Number of classes of the head.
        layer_name: str. Used in the messages.
        record: optional `InvalidLabelRecord` (TensorFlow) updated under XLA. Defaults
            to `None` (nothing counted).

    Returns:
        `labels`: in TensorFlow graphs with a control dependency on the checks; under XLA
        with exactly `batch_size` entries (missing ones `-1`), out-of-range ones kept (the
        caller clamps its indices and stops the gradient of those rows).
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        # Static shapes everywhere (JAX traces them, PyTorch is eager): the caller has
        # compared the lengths; the values go through `check_label_range`.
        return check_label_range(labels, num_classes, layer_name)
    import tensorflow as tf  # TensorFlow-only branch.

    if tf.executing_eagerly():
        if int(labels.shape[0]) != int(batch_size):
            raise ValueError(_batch_error_message(layer_name, int(batch_size), labels.shape[0]))
        return check_label_range(labels, num_classes, layer_name)
    label_count = tf.shape(labels)[0]
    if in_xla_compilation():
        if record is not None:
            record.update(labels, batch_size, num_classes)
        missing = tf.fill([tf.maximum(batch_size - label_count, 0)], tf.constant(-1, labels.dtype))
        return tf.concat([labels, missing], axis=0)[:batch_size]
    message = tf.strings.format(
        _batch_error_message(layer_name, "{}", "{}"), (batch_size, label_count)
    )
    length_check = tf.debugging.Assert(tf.equal(label_count, batch_size), [message])
    with tf.control_dependencies([length_check]):
        return check_label_range(labels, num_classes, layer_name)


def _replica_context():
    """The TensorFlow replica context of a multi-replica step, else `None`."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf  # TensorFlow-only branch.

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return None
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def replica_rows(batch_size):
    """Where this replica's rows sit in the global batch of a `tf.distribute` step.

    Args:
        batch_size: int or scalar int tensor. This replica's batch size.

    Returns:
        `(global_batch_size, offset)` as int32 scalars, the rows of replica `r` being
        `offset ... offset + batch_size - 1` of the global batch (replicas in order, as
        `tf.distribute` splits a batch), or `None` outside a multi-replica context (and on
        the backends other than TensorFlow): the local batch is the global one.
    """
    context = _replica_context()
    if context is None:
        return None
    import tensorflow as tf  # TensorFlow-only branch.

    sizes = context.all_gather(tf.reshape(tf.cast(batch_size, "int32"), (1,)), axis=0)
    replica = tf.cast(context.replica_id_in_sync_group, "int32")
    before = tf.range(context.num_replicas_in_sync) < replica
    return tf.reduce_sum(sizes), tf.reduce_sum(tf.where(before, sizes, 0))


def cross_replica_concat(values):
    """The `(B, ...)` tensors of all replicas, concatenated in replica order.

    The identity outside a multi-replica `tf.distribute` context (and on the backends
    other than TensorFlow).
    """
    context = _replica_context()
    if context is None:
        return values
    return context.all_gather(values, axis=0)
