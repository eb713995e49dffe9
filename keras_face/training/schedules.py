"""Learning-rate schedules of the face-recognition references, indexed by optimizer step.

Both schedules take `step` = the optimizer's `iterations` (the number of updates already
applied, 0 for the first update), so they survive a resume from a checkpoint exactly.

- `WarmupPolynomialDecay`: linear warm-up from 0, then `(1 - progress) ** power` decay to
  0 (insightface `arcface_torch` `PolyScheduler`, power 2).
- `WarmupPiecewiseConstantDecay`: linear warm-up, then the learning rate multiplied by
  `decay_factor` at each boundary (the ArcFace paper: 0.1, divided by 10 at 20K and 28K
  iterations on CASIA-WebFace).
"""

import keras
from keras import ops


def _non_negative_int(name, value):
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be a non-negative integer. Received: {name}={value!r}")
    return int(value)


def _positive_float(name, value):
    value = float(value)
    if not value > 0:
        raise ValueError(f"{name} must be a positive number. Received: {name}={value!r}")
    return value


def _warmup_factor(step, warmup_steps):
    """`step / warmup_steps` during warm-up, 1 after (float32 tensors)."""
    if warmup_steps == 0:
        return ops.ones_like(step)
    return ops.minimum(step / float(warmup_steps), 1.0)


@keras.saving.register_keras_serializable(package="keras_face")
class WarmupPolynomialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then polynomial decay to zero (insightface `PolyScheduler`).

    For optimizer step `k` (0 for the first update):

    - `k < warmup_steps`: `learning_rate * k / warmup_steps`;
    - otherwise: `learning_rate * (1 - (k - warmup_steps) / (total_steps - warmup_steps)) ** power`,
      and 0 from `total_steps` on.

    insightface `arcface_torch` computes `warmup_steps` and `total_steps` as
    `num_image // global_batch * warmup_epoch` and `... * num_epoch`, with power 2. Its
    `PolyScheduler` is stepped after each update and primes itself with the value at 0, so
    its update `k` uses the value at `max(k - 1, 0)`: the same curve, one step later (the
    first two updates of a warm-up run at learning rate 0 there, the first one here).

    Args:
        learning_rate: float. Peak (base) learning rate.
        total_steps: int. Number of optimizer steps of the whole run.
        warmup_steps: int. Steps of linear warm-up from 0. Defaults to `0`.
        power: float. Exponent of the decay. Defaults to `2.0` (arcface_torch).

    Example:
        ```python
        schedule = keras_face.training.WarmupPolynomialDecay(
            0.1, total_steps=20 * 5058, warmup_steps=0)
        optimizer = keras_face.training.L2SGD(schedule, momentum=0.9, l2=5e-4)
        ```

    References:
        - [insightface arcface_torch](https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch)
          `lr_scheduler.py` (`PolyScheduler`) and `train_v2.py`.
    """

    def __init__(self, learning_rate, total_steps, warmup_steps=0, power=2.0):
        self.learning_rate = _positive_float("learning_rate", learning_rate)
        self.total_steps = _non_negative_int("total_steps", total_steps)
        self.warmup_steps = _non_negative_int("warmup_steps", warmup_steps)
        self.power = _positive_float("power", power)
        if self.total_steps <= self.warmup_steps:
            raise ValueError(
                "total_steps must be larger than warmup_steps. "
                f"Received: total_steps={total_steps}, warmup_steps={warmup_steps}"
            )

    def __call__(self, step):
        step = ops.cast(step, "float32")
        decay_steps = float(self.total_steps - self.warmup_steps)
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        decayed = ops.power(1.0 - progress, self.power)
        warmup = _warmup_factor(step, self.warmup_steps)
        in_warmup = step < self.warmup_steps
        return self.learning_rate * ops.where(in_warmup, warmup, decayed)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "power": self.power,
        }


@keras.saving.register_keras_serializable(package="keras_face")
class WarmupPiecewiseConstantDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then a constant learning rate multiplied by `decay_factor` at each boundary.

    For optimizer step `k` (0 for the first update): `learning_rate * k / warmup_steps`
    during warm-up, then `learning_rate * decay_factor ** n` where `n` is the number of
    boundaries `<= k` (after 20000 updates the 20001st runs at the lower rate).

    Args:
        learning_rate: float. Learning rate before the first boundary.
        boundaries: list of int. Increasing optimizer steps where the rate drops.
        decay_factor: float. Multiplier applied at each boundary. Defaults to `0.1`.
        warmup_steps: int. Steps of linear warm-up from 0. Defaults to `0`.

    Example:
        ```python
        # ArcFace paper, CASIA-WebFace: 0.1, divided by 10 at 20K and 28K iterations.
        schedule = keras_face.training.WarmupPiecewiseConstantDecay(
            0.1, boundaries=[20_000, 28_000])
        ```

    References:
        - [Deng et al., ArcFace, CVPR 2019, section 4.1](https://arxiv.org/abs/1801.07698)
    """

    def __init__(self, learning_rate, boundaries, decay_factor=0.1, warmup_steps=0):
        self.learning_rate = _positive_float("learning_rate", learning_rate)
        self.boundaries = [_non_negative_int("boundaries", b) for b in boundaries]
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(
                f"boundaries must be strictly increasing. Received: boundaries={boundaries!r}"
            )
        self.decay_factor = _positive_float("decay_factor", decay_factor)
        self.warmup_steps = _non_negative_int("warmup_steps", warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        factor = ops.ones_like(step)
        for boundary in self.boundaries:
            factor = ops.where(step >= boundary, factor * self.decay_factor, factor)
        return self.learning_rate * factor * _warmup_factor(step, self.warmup_steps)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "boundaries": list(self.boundaries),
            "decay_factor": self.decay_factor,
            "warmup_steps": self.warmup_steps,
        }
