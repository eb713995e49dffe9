"""MTLFace's attention-based feature decomposition: a feature map into identity and age."""

import keras
from keras import ops

from keras_face.age_invariant.spatial_pyramid_pooling import SpatialPyramidPooling
from keras_face.age_invariant.spatial_pyramid_pooling import validate_pool_sizes


@keras.saving.register_keras_serializable(package="keras_face")
class AttentionFeatureDecomposition(keras.layers.Layer):
    """Attention feature decomposition (AFD): `x -> [x_id, x_age]` with `x_id + x_age = x`.

    MTLFace splits the backbone's last feature map `x` into an age part, read by an age
    estimator, and an identity part, from which the face embedding is computed:

    - channel attention `c = sigmoid(BN(W2 relu(W1 (SPP_avg(x) + SPP_max(x)))))`, with
      spatial pyramid pooling at `pool_sizes`, `W1` from `C * sum(n^2)` to
      `C * sum(n^2) / reduction` and `W2` back to `C` (bias-free 1x1 convolutions);
    - spatial attention `a = sigmoid(BN(conv_k([max_c x, mean_c x])))`, a `k x k`
      bias-free convolution over the channel maximum and mean;
    - `x_age = (x * c + x * a) / 2` and `x_id = x - x_age` (channel *and* spatial
      attention, as the authors' `AttentionModule`).

    With zero kernels and fresh batch norms both attentions are `sigmoid(0) = 0.5` in
    inference, so `x_age = x_id = x / 2` exactly.

    Args:
        reduction: int. Channel reduction of the first 1x1 convolution. Defaults to `16`.
        spatial_kernel: int. Kernel size of the spatial attention. Defaults to `7`.
        pool_sizes: sequence of int. Grid sizes of the pyramid pooling. Defaults to
            `(1, 2, 3)`.
        bn_momentum: float. Keras momentum of the two batch norms (the authors' PyTorch
            momentum 0.01). Defaults to `0.99`.
        epsilon: float. Batch-norm epsilon. Defaults to `1e-5`.
        kernel_initializer: initializer of the three convolutions. Defaults to
            `"he_uniform"`.
        synchronized_bn: bool. Batch statistics over the global batch under a
            `tf.distribute` strategy (TensorFlow only). Defaults to `False`.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Example:
        ```python
        afd = keras_face.age_invariant.AttentionFeatureDecomposition(reduction=16)
        x_id, x_age = afd(feature_map)
        ```

    References:
        - [Huang et al., MTLFace, CVPR 2021](https://arxiv.org/abs/2103.01520)
        - [Woo et al., CBAM, ECCV 2018](https://arxiv.org/abs/1807.06521)
    """

    def __init__(
        self,
        reduction=16,
        spatial_kernel=7,
        pool_sizes=(1, 2, 3),
        bn_momentum=0.99,
        epsilon=1e-5,
        kernel_initializer="he_uniform",
        synchronized_bn=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (("reduction", reduction), ("spatial_kernel", spatial_kernel)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
        if not 0 <= bn_momentum < 1 or not epsilon > 0:
            raise ValueError(
                "bn_momentum must be in [0, 1) and epsilon > 0. Received: "
                f"bn_momentum={bn_momentum}, epsilon={epsilon}"
            )
        self.reduction = reduction
        self.spatial_kernel = spatial_kernel
        self.pool_sizes = validate_pool_sizes(pool_sizes)
        self.bn_momentum = float(bn_momentum)
        self.epsilon = float(epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.synchronized_bn = bool(synchronized_bn)
        self.average_pyramid = SpatialPyramidPooling(
            self.pool_sizes, "avg", name="spp_avg", dtype=self.dtype_policy
        )
        self.max_pyramid = SpatialPyramidPooling(
            self.pool_sizes, "max", name="spp_max", dtype=self.dtype_policy
        )
        self.spatial_conv = keras.layers.Conv2D(
            1,
            spatial_kernel,
            padding="same",
            use_bias=False,
            kernel_initializer=self.kernel_initializer,
            name="spatial_conv",
            dtype=self.dtype_policy,
        )
        self.channel_bn = self._batch_norm("channel_bn")
        self.spatial_bn = self._batch_norm("spatial_bn")

    def _batch_norm(self, name):
        return keras.layers.BatchNormalization(
            momentum=self.bn_momentum,
            epsilon=self.epsilon,
            synchronized=self.synchronized_bn,
            name=name,
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        channels = input_shape[-1]
        pooled = channels * sum(size * size for size in self.pool_sizes)
        hidden = max(pooled // self.reduction, 1)
        self.squeeze = keras.layers.Dense(
            hidden,
            use_bias=False,
            kernel_initializer=self.kernel_initializer,
            name="squeeze",
            dtype=self.dtype_policy,
        )
        self.excite = keras.layers.Dense(
            channels,
            use_bias=False,
            kernel_initializer=self.kernel_initializer,
            name="excite",
            dtype=self.dtype_policy,
        )
        self.squeeze.build((input_shape[0], pooled))
        self.excite.build((input_shape[0], hidden))
        self.channel_bn.build((input_shape[0], channels))
        self.spatial_conv.build((*input_shape[:3], 2))
        self.spatial_bn.build((*input_shape[:3], 1))

    def call(self, inputs, training=None):
        pooled = self.average_pyramid(inputs) + self.max_pyramid(inputs)
        channel = self.excite(ops.relu(self.squeeze(pooled)))
        channel = ops.sigmoid(self.channel_bn(channel, training=training))
        channel = ops.cast(ops.expand_dims(ops.expand_dims(channel, 1), 1), inputs.dtype)
        summary = ops.concatenate(
            [ops.max(inputs, axis=-1, keepdims=True), ops.mean(inputs, axis=-1, keepdims=True)],
            axis=-1,
        )
        spatial = ops.sigmoid(self.spatial_bn(self.spatial_conv(summary), training=training))
        spatial = ops.cast(spatial, inputs.dtype)
        x_age = (inputs * channel + inputs * spatial) * 0.5
        return [inputs - x_age, x_age]

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape), tuple(input_shape)]

    def get_config(self):
        config = super().get_config()
        config.update(
            reduction=self.reduction,
            spatial_kernel=self.spatial_kernel,
            pool_sizes=list(self.pool_sizes),
            bn_momentum=self.bn_momentum,
            epsilon=self.epsilon,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            synchronized_bn=self.synchronized_bn,
        )
        return config
