"""MTLFace's age estimation: the head (expected age over 101 bins + age group), its loss."""

import math

import keras
import numpy as np
from keras import ops

# MTLFace `common/ops.py::age2group`: an age's group is the number of thresholds below it.
AGE_GROUP_THRESHOLDS = {
    4: (30, 40, 50),
    5: (20, 30, 40, 50),
    6: (10, 20, 30, 40, 50),
    7: (10, 20, 30, 40, 50, 60),
    8: (12, 18, 25, 35, 45, 55, 65),
}
MAX_AGE = 120.0


def validate_num_groups(num_groups):
    """Return `num_groups` if MTLFace defines thresholds for it (4 to 8), else raise."""
    if (
        isinstance(num_groups, bool)
        or not isinstance(num_groups, int)
        or num_groups not in AGE_GROUP_THRESHOLDS
    ):
        raise ValueError(
            "num_groups must be one of the age-group tables of MTLFace "
            f"({', '.join(map(str, AGE_GROUP_THRESHOLDS))}). Received: num_groups={num_groups!r}"
        )
    return int(num_groups)


def check_ages(ages):
    """Return `ages` as float32 NumPy years, raising on NaN or values outside [0, 120].

    Args:
        ages: array-like of ages in years.

    Returns:
        `np.ndarray` of float32.

    Raises:
        ValueError: naming the first bad age and its index.

    Example:
        ```python
        keras_face.age_invariant.check_ages([3.0, 47.5])
        ```
    """
    ages = np.asarray(ages, dtype=np.float32)
    bad = np.flatnonzero(~((ages >= 0) & (ages <= MAX_AGE)))
    if bad.size:
        index = int(bad[0])
        raise ValueError(
            f"ages must be years in [0, {MAX_AGE:g}] ({bad.size} are not; the first at index "
            f"{index}). Received: ages[{index}]={float(ages.reshape(-1)[index])}"
        )
    return ages


def age_groups(ages, num_groups=7):
    """Age group of each age, as MTLFace's `age2group`: the number of thresholds below it.

    | groups | thresholds (years) |
    |---|---|
    | 4 | 30, 40, 50 |
    | 5 | 20, 30, 40, 50 |
    | 6 | 10, 20, 30, 40, 50 |
    | 7 | 10, 20, 30, 40, 50, 60 |
    | 8 | 12, 18, 25, 35, 45, 55, 65 |

    Args:
        ages: tensor or array of ages in years.
        num_groups: int. 4 to 8. Defaults to `7` (the authors').

    Returns:
        int32 tensor of the shape of `ages`.

    Example:
        ```python
        keras_face.age_invariant.age_groups([5, 10, 11, 35, 60, 61, 100], 7)
        # [0, 0, 1, 3, 5, 6, 6]
        ```

    References:
        - [Huang et al., MTLFace, CVPR 2021](https://arxiv.org/abs/2103.01520)
    """
    thresholds = AGE_GROUP_THRESHOLDS[validate_num_groups(num_groups)]
    ages = ops.cast(ops.convert_to_tensor(ages), "float32")
    groups = ops.zeros(ops.shape(ages), dtype="int32")
    for threshold in thresholds:
        groups = groups + ops.cast(ops.greater(ages, float(threshold)), "int32")
    return groups


def dex_expectation(age_logits):
    """Expected age of DEX: `sum_k k * softmax(z)_k` over the bins `k = 0 .. K-1`.

    Args:
        age_logits: tensor `(batch, K)` (MTLFace: `K = 101`, ages 0 to 100).

    Returns:
        float32 tensor `(batch,)`.

    Example:
        ```python
        keras_face.age_invariant.dex_expectation(np.zeros((1, 101)))  # [50.0]
        ```

    References:
        - [Rothe et al., DEX, ICCV-W 2015](https://openaccess.thecvf.com/content_iccv_2015_workshops/w11/html/Rothe_DEX_Deep_EXpectation_ICCV_2015_paper.html)
    """
    logits = ops.cast(age_logits, "float32")
    bins = ops.arange(ops.shape(logits)[-1], dtype="float32")
    return ops.sum(ops.softmax(logits, axis=-1) * bins, axis=-1)


def age_loss(age_logits, group_logits, ages, num_groups=7):
    """MTLFace's age loss: `MSE(DEX(age_logits), age) + CE(group_logits, age_group(age))`.

    Args:
        age_logits: tensor `(batch, 101)`.
        group_logits: tensor `(batch, num_groups)`.
        ages: tensor `(batch,)` of ages in years.
        num_groups: int. 4 to 8. Defaults to `7`.

    Returns:
        float32 tensor `(batch,)`: the per-sample loss (its mean is the authors' loss).

    Example:
        ```python
        loss = keras_face.age_invariant.age_loss(age_logits, group_logits, ages, 7)
        ```
    """
    ages = ops.reshape(ops.cast(ages, "float32"), (-1,))
    squared_error = ops.square(dex_expectation(age_logits) - ages)
    cross_entropy = keras.losses.sparse_categorical_crossentropy(
        age_groups(ages, num_groups), ops.cast(group_logits, "float32"), from_logits=True
    )
    return squared_error + cross_entropy


@keras.saving.register_keras_serializable(package="keras_face")
class AgeEstimationHead(keras.layers.Layer):
    """MTLFace's age estimator: feature map -> `[age_logits (B, 101), group_logits (B, G)]`.

    As the authors' `AgeEstimationModule`: batch norm, flatten, `Dense(hidden) -> ReLU ->
    Dense(num_ages)` give the age logits (the expected age is `dex_expectation`), and the
    group classifier `Dense(num_groups)` reads the age logits themselves. MTLFace uses one
    on the age features `x_age` and a second one (its own weights) behind a
    `GradientReversal` on the identity features. Outputs are float32.

    Args:
        num_groups: int. Age groups (4 to 8, MTLFace's tables). Defaults to `7`.
        num_ages: int. Age bins `0 .. num_ages - 1`. Defaults to `101`.
        hidden: int. Width of the hidden layer. Defaults to `512`.
        bn_momentum: float. Keras momentum of the batch norm (PyTorch's 0.1 is 0.9).
            Defaults to `0.9`.
        epsilon: float. Batch-norm epsilon. Defaults to `1e-5`.
        synchronized_bn: bool. Batch statistics over the global batch under a
            `tf.distribute` strategy (TensorFlow only). Defaults to `False`.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Example:
        ```python
        head = keras_face.age_invariant.AgeEstimationHead(num_groups=7)
        age_logits, group_logits = head(x_age)
        ages = keras_face.age_invariant.dex_expectation(age_logits)
        ```

    References:
        - [Huang et al., MTLFace, CVPR 2021](https://arxiv.org/abs/2103.01520)
    """

    def __init__(
        self,
        num_groups=7,
        num_ages=101,
        hidden=512,
        bn_momentum=0.9,
        epsilon=1e-5,
        synchronized_bn=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_groups = validate_num_groups(num_groups)
        for name, value in (("num_ages", num_ages), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an integer >= 2. Received: {name}={value!r}")
        if not 0 <= bn_momentum < 1 or not math.isfinite(epsilon) or epsilon <= 0:
            raise ValueError(
                "bn_momentum must be in [0, 1) and epsilon > 0. Received: "
                f"bn_momentum={bn_momentum}, epsilon={epsilon}"
            )
        self.num_ages = num_ages
        self.hidden = hidden
        self.bn_momentum = float(bn_momentum)
        self.epsilon = float(epsilon)
        self.synchronized_bn = bool(synchronized_bn)
        self.batch_norm = keras.layers.BatchNormalization(
            momentum=self.bn_momentum,
            epsilon=self.epsilon,
            synchronized=self.synchronized_bn,
            name="bn",
            dtype=self.dtype_policy,
        )
        self.flatten = keras.layers.Flatten(name="flatten", dtype=self.dtype_policy)
        self.hidden_dense = keras.layers.Dense(
            hidden, activation="relu", name="hidden", dtype=self.dtype_policy
        )
        self.age_dense = keras.layers.Dense(num_ages, dtype="float32", name="age")
        self.group_dense = keras.layers.Dense(num_groups, dtype="float32", name="group")

    def build(self, input_shape):
        self.batch_norm.build(input_shape)
        flat = int(np.prod(input_shape[1:]))
        self.hidden_dense.build((input_shape[0], flat))
        self.age_dense.build((input_shape[0], self.hidden))
        self.group_dense.build((input_shape[0], self.num_ages))

    def call(self, inputs, training=None):
        x = self.flatten(self.batch_norm(inputs, training=training))
        age_logits = self.age_dense(self.hidden_dense(x))
        return [age_logits, self.group_dense(age_logits)]

    def compute_output_shape(self, input_shape):
        return [(input_shape[0], self.num_ages), (input_shape[0], self.num_groups)]

    def get_config(self):
        config = super().get_config()
        config.update(
            num_groups=self.num_groups,
            num_ages=self.num_ages,
            hidden=self.hidden,
            bn_momentum=self.bn_momentum,
            epsilon=self.epsilon,
            synchronized_bn=self.synchronized_bn,
        )
        return config
