"""SGD with momentum and coupled L2 weight decay, as PyTorch's and MXNet's `weight_decay`."""

import keras
import tensorflow as tf
from keras import ops


def _handle(variable):
    """The resource handle of a Keras or TensorFlow variable (TensorFlow backend)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


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

    On TensorFlow (without Nesterov) the update is one fused kernel
    (`tf.raw_ops.ResourceApplyMomentum`, after adding the L2 term): one pass over the
    variable and its buffer, with the same float32 operations (bit-identical to the
    unfused update in eager and graph mode; XLA contracts multiply-adds in both). For a
    large classifier kernel the update is memory-bound: Partial FC's step at 1M classes
    spends most of its time here (`benchmarks/large_scale.py`).

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

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.l2 > 0 and self._use_weight_decay(variable):
            gradient = gradient + ops.cast(self.l2, variable.dtype) * variable
        if self.momentum == 0:
            self.assign_sub(variable, learning_rate * gradient)
            return
        momentum = ops.cast(self.momentum, variable.dtype)
        buffer = self.momentums[self._get_variable_index(variable)]
        if keras.backend.backend() == "tensorflow" and not self.nesterov:
            # One fused kernel: `buffer = momentum * buffer + g; w -= lr * buffer` in a
            # single pass over w and the buffer, in the same float operations as below
            # (bit-identical). The unfused update writes three temporaries of the
            # variable's size, which dominates a Partial FC step at 1M classes.
            tf.raw_ops.ResourceApplyMomentum(
                var=_handle(variable),
                accum=_handle(buffer),
                lr=learning_rate,
                grad=gradient,
                momentum=momentum,
                use_locking=False,
                use_nesterov=False,
            )
            return
        new_buffer = momentum * buffer + gradient
        self.assign(buffer, new_buffer)
        if self.nesterov:
            step = gradient + momentum * new_buffer
        else:
            step = new_buffer
        self.assign_sub(variable, learning_rate * step)

    def get_config(self):
        config = super().get_config()
        config["l2"] = self.l2
        config.pop("weight_decay", None)
        return config
