"""SGD with momentum and coupled L2 weight decay, as PyTorch's and MXNet's `weight_decay`."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_face.heads.backend_ops import in_xla_compilation


def _handle(variable):
    """The resource handle of a Keras or TensorFlow variable (TensorFlow backend)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


def _apply_momentum_kernel(variable, buffer, learning_rate, gradient, momentum):
    """TensorFlow's fused momentum kernel: `b = mu b + g; w -= lr b`, in place."""
    tf.raw_ops.ResourceApplyMomentum(
        var=_handle(variable),
        accum=_handle(buffer),
        lr=learning_rate,
        grad=tf.convert_to_tensor(gradient),
        momentum=momentum,
        use_locking=False,
        use_nesterov=False,
    )


@tf.function(jit_compile=True, autograph=False)
def _fused_momentum_update(variable, buffer, gradient, learning_rate, momentum, l2, decay):
    """`buffer = momentum * buffer + (g + l2 * w); w -= lr * buffer` as one XLA program.

    `variable` and `buffer` are resource handles; both are updated in place (XLA aliases
    a variable it reads and writes). `decay` (a Python bool, one trace each) adds the L2
    term. XLA contracts the multiply-adds (fused multiply-add): equal to the unfused
    float32 update within an ulp or two, not bit for bit.
    """
    w = tf.raw_ops.ReadVariableOp(resource=variable, dtype=gradient.dtype)
    _assign_momentum_update(variable, buffer, w, gradient, learning_rate, momentum, l2, decay)


def _assign_momentum_update(variable, buffer, w, gradient, learning_rate, momentum, l2, decay):
    """The body both XLA updates share: the L2 term, the new buffer, both assignments."""
    if decay:
        gradient = gradient + l2 * w
    new_buffer = momentum * tf.raw_ops.ReadVariableOp(resource=buffer, dtype=w.dtype) + gradient
    tf.raw_ops.AssignVariableOp(resource=buffer, value=new_buffer)
    tf.raw_ops.AssignVariableOp(resource=variable, value=w - learning_rate * new_buffer)


@tf.function(jit_compile=True, autograph=False)
def _fused_row_sparse_update(variable, buffer, indices, values, learning_rate, momentum, l2, decay):
    """`_fused_momentum_update` for the gradient whose rows `indices` (unique) are `values`.

    The dense gradient is never built: in the one XLA pass over the variable, each row
    reads its gradient row through a `(rows,)` position table (the appended zero row for
    rows not in `indices`), a gather XLA fuses into the elementwise loop. In place, as
    `_fused_momentum_update`, and equal to it within an ulp or two.
    """
    w = tf.raw_ops.ReadVariableOp(resource=variable, dtype=values.dtype)
    count = tf.shape(values)[0]
    positions = tf.tensor_scatter_nd_update(
        tf.fill(tf.shape(w)[:1], count), indices[:, None], tf.range(count)
    )
    gradient = tf.gather(tf.concat([values, tf.zeros_like(values[:1])], 0), positions)
    _assign_momentum_update(variable, buffer, w, gradient, learning_rate, momentum, l2, decay)


@keras.saving.register_keras_serializable(package="keras_face")
class L2SGD(keras.optimizers.SGD):
    """SGD with momentum and L2 weight decay added to the gradient (`torch.optim.SGD`).

    The update is exactly PyTorch's `SGD(lr, momentum, weight_decay=l2)` (dampening 0):

    ```
    g = gradient + l2 * w            # L2 term, enters the momentum buffer
    buffer = momentum * buffer + g
    w = w - lr * buffer              # (nesterov: w - lr * (g + momentum * buffer))
    ```

    This is how the papers' "weight decay 5e-4" was applied: insightface `arcface_torch`
    (`torch.optim.SGD(..., momentum=0.9, weight_decay=5e-4)` over backbone and head),
    the MXNet trainers (`wd` added to the gradient) and the PyTorch re-implementations.

    Keras' own `weight_decay` argument is *decoupled* (`w -= lr * wd * w`, outside the
    momentum buffer, as AdamW). Without momentum both are the same update. With momentum
    `mu` the L2 term is accumulated by the buffer, so for slowly changing weights it
    shrinks them by about `lr * l2 / (1 - mu)` per step, 10 times `lr * l2` at
    `mu = 0.9`: to reproduce the papers' numbers use `L2SGD(l2=5e-4)`, not
    `keras.optimizers.SGD(weight_decay=5e-4)` (decoupled decay of roughly 5e-3 comes
    close, not equal, because the L2 term also mixes with the loss gradient in the buffer).

    The momentum form also follows PyTorch: the learning rate multiplies the buffer
    (`keras.optimizers.SGD` and MXNet accumulate `lr * gradient` instead); both are the
    same while the learning rate is constant.

    On TensorFlow (without Nesterov) a variable of at least `fused_update_min_size`
    entries (default 2^22: a large classifier kernel) is updated by one XLA-compiled
    function that reads the variable, its buffer and the gradient once and writes both
    in place (in eager and graph mode alike; inlined into an XLA-compiled step). XLA
    contracts the multiply-adds into fused multiply-adds, so the result equals the
    unfused float32 update within an ulp or two, not bit for bit. For such a kernel the
    update is memory-bound: it is a large part of Partial FC's step at 1M classes
    (`benchmarks/large_scale.py`). Smaller variables take TensorFlow's fused momentum
    kernel, bit-identical to the unfused update.

    A row-sparse gradient (`tf.IndexedSlices`: the gradient of a row gather, such as
    that of a `keras_face.heads.PartialFC` kernel with a class per row) is applied as
    the dense gradient that is zero off its rows, without building it: every row still
    decays and carries momentum (arcface_torch's Partial FC v2), in one in-place XLA
    pass for a large variable (each row reads its gradient row through a position
    table), or TensorFlow's momentum kernel and the rows written after it for a small
    one. Duplicate rows are summed. With Nesterov or without momentum such a gradient
    is densified first.

    Gradient clipping (`clipnorm`, `global_clipnorm`) and loss-scale unscaling happen
    before `update_step`, as `clip_grad_norm_` before `optimizer.step()` in arcface_torch.
    Variables excluded with `exclude_from_weight_decay` get no L2 term.

    Args:
        learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule`.
            Defaults to `0.1`.
        momentum: float in `[0, 1)`. Defaults to `0.9`.
        nesterov: bool. Nesterov momentum (PyTorch's formulation). Defaults to `False`.
        l2: float. Coefficient of the L2 term added to the gradient (PyTorch's
            `weight_decay`). Defaults to `5e-4`.
        name: str. Defaults to `"l2_sgd"`.
        **kwargs: other arguments of `keras.optimizers.Optimizer` (`clipnorm`,
            `global_clipnorm`, `gradient_accumulation_steps`, ...). `weight_decay`
            (decoupled) is refused: use `keras.optimizers.SGD` for that.

    Example:
        ```python
        optimizer = keras_face.training.L2SGD(0.1, momentum=0.9, l2=5e-4)
        ```

    References:
        - [PyTorch `torch.optim.SGD`](https://pytorch.org/docs/stable/generated/torch.optim.SGD.html)
        - [Loshchilov and Hutter, Decoupled Weight Decay Regularization, ICLR 2019](
          https://arxiv.org/abs/1711.05101)
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum=0.9,
        nesterov=False,
        l2=5e-4,
        name="l2_sgd",
        **kwargs,
    ):
        if kwargs.get("weight_decay"):
            raise ValueError(
                "L2SGD applies coupled L2 decay through `l2`; decoupled `weight_decay` "
                "belongs to `keras.optimizers.SGD`. "
                f"Received: weight_decay={kwargs['weight_decay']!r}"
            )
        kwargs.pop("weight_decay", None)
        super().__init__(
            learning_rate=learning_rate,
            momentum=momentum,
            nesterov=nesterov,
            name=name,
            **kwargs,
        )
        l2 = float(l2)
        if not l2 >= 0:
            raise ValueError(f"l2 must be a non-negative number. Received: l2={l2!r}")
        self.l2 = l2

    # Variables of at least this many entries (16 MiB in float32: a classifier kernel of
    # 8,192+ classes at D = 512, never a backbone weight) take the XLA-compiled update.
    fused_update_min_size = 1 << 22

    def _takes_xla_pass(self, variable):
        return int(np.prod(variable.shape)) >= self.fused_update_min_size

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        momentum = ops.cast(self.momentum, variable.dtype)
        buffer = None if self.momentum == 0 else self.momentums[self._get_variable_index(variable)]
        fused = keras.backend.backend() == "tensorflow" and not self.nesterov and buffer is not None
        decay = self.l2 > 0 and self._use_weight_decay(variable)
        if isinstance(gradient, tf.IndexedSlices):
            if fused:
                self._row_sparse_update(gradient, variable, buffer, learning_rate, decay)
                return
            gradient = tf.convert_to_tensor(gradient)
        if fused and self._takes_xla_pass(variable):
            # One XLA-compiled pass: `buffer = momentum * buffer + (g + l2 * w);
            # w -= lr * buffer`, written in place into both variables. The unfused update
            # writes temporaries of the variable's size (the L2 term is one of them),
            # which dominates a Partial FC step at 1M classes (issue 10).
            _fused_momentum_update(
                _handle(variable),
                _handle(buffer),
                tf.convert_to_tensor(gradient),
                learning_rate,
                momentum,
                ops.cast(self.l2, variable.dtype),
                decay=decay,
            )
            return
        if decay:
            gradient = gradient + ops.cast(self.l2, variable.dtype) * variable
        if fused:
            # Smaller variables (every backbone weight): TensorFlow's fused momentum kernel
            # after the L2 term, bit-identical to the unfused update below, and no XLA
            # compilation per weight shape.
            _apply_momentum_kernel(variable, buffer, learning_rate, gradient, momentum)
            return
        if self.momentum == 0:
            self.assign_sub(variable, learning_rate * gradient)
            return
        new_buffer = momentum * buffer + gradient
        self.assign(buffer, new_buffer)
        if self.nesterov:
            step = gradient + momentum * new_buffer
        else:
            step = new_buffer
        self.assign_sub(variable, learning_rate * step)

    def _row_sparse_update(self, gradient, variable, buffer, learning_rate, decay):
        """The dense update for a row-sparse gradient, without densifying it (TensorFlow).

        Every row is updated as with the dense gradient that is zero off `indices`
        (duplicate indices summed first): `b = mu b + (g + l2 w); w -= lr b` on all rows.
        A large variable (`fused_update_min_size` entries) takes one in-place XLA pass
        that reads each row's gradient through a position table
        (`_fused_row_sparse_update`); a smaller one TensorFlow's momentum kernel with a
        zero gradient, then the rows of `indices` overwritten with their update computed
        from the values read before (bit for bit the unfused formula). A Partial FC
        kernel of `(C, D)` layout gets such a gradient (`keras_face.heads.PartialFC`):
        at 1M classes this skips the `(C, D)` gradient, 2 GiB written and read a step.
        """
        dtype = variable.dtype
        momentum = ops.cast(self.momentum, dtype)
        l2 = ops.cast(self.l2, dtype)
        indices, positions = tf.unique(gradient.indices)
        values = gradient.values
        if in_xla_compilation():
            values = tf.math.unsorted_segment_sum(values, positions, tf.shape(indices)[0])
        else:
            # Partial FC's indices are unique unless the sample is padded: skip the sum
            # (a single-threaded pass over the rows) when there is nothing to add.
            values = tf.cond(
                tf.size(indices) < tf.size(positions),
                lambda: tf.math.unsorted_segment_sum(values, positions, tf.shape(indices)[0]),
                lambda: values,
            )
        if self._takes_xla_pass(variable):
            _fused_row_sparse_update(
                _handle(variable),
                _handle(buffer),
                indices,
                values,
                learning_rate,
                momentum,
                l2,
                decay=decay,
            )
            return
        # The rows are read before the dense pass changes them (ordered by the resources).
        rows = tf.raw_ops.ResourceGather(resource=_handle(variable), indices=indices, dtype=dtype)
        buffer_rows = tf.raw_ops.ResourceGather(
            resource=_handle(buffer), indices=indices, dtype=dtype
        )
        if decay:
            values = values + l2 * rows
        new_buffer_rows = momentum * buffer_rows + values
        new_rows = rows - learning_rate * new_buffer_rows
        zero_gradient_step = l2 * variable if decay else tf.zeros(variable.shape, dtype)
        _apply_momentum_kernel(variable, buffer, learning_rate, zero_gradient_step, momentum)
        tf.raw_ops.ResourceScatterUpdate(
            resource=_handle(buffer), indices=indices, updates=new_buffer_rows
        )
        tf.raw_ops.ResourceScatterUpdate(
            resource=_handle(variable), indices=indices, updates=new_rows
        )

    def get_config(self):
        config = super().get_config()
        config["l2"] = self.l2
        config.pop("weight_decay", None)
        return config
