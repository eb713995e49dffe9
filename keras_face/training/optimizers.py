"""Optimizers and learning-rate schedules from plain settings (config `optimizer`, `schedule`).

- `"sgd"` (default `weight_decay_mode="auto"` = `"l2"`): `L2SGD`, PyTorch's SGD; the L2
  term is added to the gradient, inside the momentum (arcface_torch, the ArcFace paper:
  momentum 0.9, 5e-4).
- `"sgd"` with `weight_decay_mode="decoupled"`: `keras.optimizers.SGD`;
  `w -= lr * wd * w`, outside the momentum (SGDW).
- `"adamw"`: `keras.optimizers.AdamW`, decoupled as `torch.optim.AdamW` (arcface_torch
  ViT recipes: 1e-3, 0.1).
"""

import keras

from keras_face.training.l2_sgd import L2SGD
from keras_face.training.schedules import WarmupPiecewiseConstantDecay
from keras_face.training.schedules import WarmupPolynomialDecay

OPTIMIZERS = ("sgd", "adamw")
WEIGHT_DECAY_MODES = ("auto", "l2", "decoupled")
SCHEDULES = ("constant", "poly", "piecewise")


def _choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}. Received: {name}={value!r}")
    return value


def build_schedule(
    learning_rate,
    steps_per_epoch,
    epochs,
    name="poly",
    warmup_epochs=0,
    power=2.0,
    decay_epochs=None,
    decay_steps=None,
    decay_factor=0.1,
):
    """Learning-rate schedule from epoch-based settings, as the reference trainers state them.

    Steps are counted in optimizer updates: `total_steps = steps_per_epoch * epochs` and
    `warmup_steps = steps_per_epoch * warmup_epochs` (arcface_torch's
    `num_image // global_batch * warmup_epoch`).

    Args:
        learning_rate: float. Peak learning rate.
        steps_per_epoch: int. Optimizer steps per epoch (`num_images // global_batch`).
        epochs: int. Number of epochs.
        name: str. `"constant"`, `"poly"` (`WarmupPolynomialDecay`) or `"piecewise"`
            (`WarmupPiecewiseConstantDecay`). Defaults to `"poly"`.
        warmup_epochs: float. Linear warm-up length in epochs. Defaults to `0`.
        power: float. Exponent of the polynomial decay. Defaults to `2.0`.
        decay_epochs: list of float. Piecewise: epochs at which the rate is multiplied by
            `decay_factor`. Defaults to `None`.
        decay_steps: list of int. Piecewise: the same in optimizer steps (e.g. the ArcFace
            paper's 20K and 28K iterations); exclusive with `decay_epochs`.
            Defaults to `None`.
        decay_factor: float. Piecewise multiplier. Defaults to `0.1`.

    Returns:
        A float (constant) or a `keras.optimizers.schedules.LearningRateSchedule`.

    Example:
        ```python
        schedule = keras_face.training.build_schedule(
            0.1, steps_per_epoch=5058, epochs=20, name="poly")
        ```
    """
    _choice("name", name, SCHEDULES)
    steps_per_epoch = int(steps_per_epoch)
    if steps_per_epoch < 1:
        raise ValueError(
            "steps_per_epoch must be at least 1 (fewer training images than one global "
            f"batch?). Received: steps_per_epoch={steps_per_epoch}"
        )
    warmup_steps = int(round(float(warmup_epochs) * steps_per_epoch))
    if name == "constant":
        if warmup_steps:
            return WarmupPiecewiseConstantDecay(learning_rate, [], warmup_steps=warmup_steps)
        return float(learning_rate)
    if name == "poly":
        return WarmupPolynomialDecay(
            learning_rate,
            total_steps=steps_per_epoch * int(epochs),
            warmup_steps=warmup_steps,
            power=power,
        )
    if decay_epochs is not None and decay_steps is not None:
        raise ValueError(
            "Give the piecewise boundaries either in epochs or in steps, not both. "
            f"Received: decay_epochs={decay_epochs!r}, decay_steps={decay_steps!r}"
        )
    if decay_steps is not None:
        boundaries = [int(step) for step in decay_steps]
    elif decay_epochs is not None:
        boundaries = [int(round(float(epoch) * steps_per_epoch)) for epoch in decay_epochs]
    else:
        raise ValueError(
            "The piecewise schedule needs `decay_epochs` or `decay_steps`. "
            "Received: decay_epochs=None, decay_steps=None"
        )
    return WarmupPiecewiseConstantDecay(
        learning_rate, boundaries, decay_factor=decay_factor, warmup_steps=warmup_steps
    )


def build_optimizer(
    name="sgd",
    learning_rate=0.1,
    momentum=0.9,
    weight_decay=5e-4,
    weight_decay_mode="auto",
    nesterov=False,
    beta_1=0.9,
    beta_2=0.999,
    epsilon=1e-8,
    clipnorm=None,
    global_clipnorm=None,
    exclude_from_weight_decay=None,
):
    """Optimizer as the references train (see the module docstring).

    Args:
        name: str. `"sgd"` or `"adamw"`. Defaults to `"sgd"`.
        learning_rate: float or schedule (see `build_schedule`). Defaults to `0.1`.
        momentum: float. SGD momentum. Defaults to `0.9`.
        weight_decay: float. Decay coefficient (the papers' 5e-4 for SGD, 0.1 for AdamW
            in arcface_torch's ViT recipes). Defaults to `5e-4`.
        weight_decay_mode: str. `"l2"` (coupled, PyTorch/MXNet SGD: `L2SGD`),
            `"decoupled"` (`w -= lr * wd * w`) or `"auto"` (`"l2"` for SGD, `"decoupled"`
            for AdamW, which is decoupled by definition). Defaults to `"auto"`.
        nesterov: bool. Nesterov momentum (SGD). Defaults to `False`.
        beta_1: float. AdamW. Defaults to `0.9`.
        beta_2: float. AdamW. Defaults to `0.999`.
        epsilon: float. AdamW (PyTorch's default). Defaults to `1e-8`.
        clipnorm: float. Clip each gradient to this norm. Defaults to `None`.
        global_clipnorm: float. Clip all gradients together to this global norm (as
            `torch.nn.utils.clip_grad_norm_`; arcface_torch uses 5 on the backbone).
            Defaults to `None`.
        exclude_from_weight_decay: list of str. Variables whose name contains one of
            these get no decay (e.g. `["bias", "gamma", "beta"]`). Defaults to `None`
            (everything decays, as arcface_torch).

    Returns:
        A `keras.optimizers.Optimizer`.

    Example:
        ```python
        optimizer = keras_face.training.build_optimizer(
            "sgd", learning_rate=0.1, momentum=0.9, weight_decay=5e-4)
        ```
    """
    _choice("name", name, OPTIMIZERS)
    _choice("weight_decay_mode", weight_decay_mode, WEIGHT_DECAY_MODES)
    weight_decay = float(weight_decay or 0.0)
    if weight_decay < 0:
        raise ValueError(
            f"weight_decay must be non-negative. Received: weight_decay={weight_decay}"
        )
    if clipnorm is not None and global_clipnorm is not None:
        raise ValueError(
            "Use either clipnorm or global_clipnorm, not both. "
            f"Received: clipnorm={clipnorm}, global_clipnorm={global_clipnorm}"
        )
    clipping = {"clipnorm": clipnorm, "global_clipnorm": global_clipnorm}
    if name == "adamw":
        if weight_decay_mode == "l2":
            raise ValueError(
                "AdamW's weight decay is decoupled by definition; use name='sgd' for L2 "
                "decay. Received: weight_decay_mode='l2'"
            )
        optimizer = keras.optimizers.AdamW(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            **clipping,
        )
    elif weight_decay_mode == "decoupled":
        optimizer = keras.optimizers.SGD(
            learning_rate=learning_rate,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay or None,
            **clipping,
        )
    else:
        optimizer = L2SGD(
            learning_rate=learning_rate,
            momentum=momentum,
            nesterov=nesterov,
            l2=weight_decay,
            **clipping,
        )
    if exclude_from_weight_decay:
        optimizer.exclude_from_weight_decay(var_names=list(exclude_from_weight_decay))
    return optimizer
