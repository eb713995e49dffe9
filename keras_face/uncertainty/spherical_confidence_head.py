"""SCF's confidence head: a small network from a frozen backbone's feature map to kappa."""

import math

import keras
from keras import ops

from keras_face.uncertainty.vmf import MAX_LOG_KAPPA

ARCHITECTURES = ("mlp", "conv")


def _validate_units(hidden_units):
    if hidden_units is None:
        return None
    if isinstance(hidden_units, int) or not all(
        isinstance(units, int) and not isinstance(units, bool) and units > 0
        for units in hidden_units
    ):
        raise ValueError(
            "hidden_units must be None or a sequence of positive integers. "
            f"Received: hidden_units={hidden_units!r}"
        )
    return tuple(int(units) for units in hidden_units)


@keras.saving.register_keras_serializable(package="keras_face")
class SphericalConfidenceHead(keras.layers.Layer):
    """Confidence head of SCF: feature map -> concentration `kappa` of an r-radius vMF.

    SCF (Li et al., CVPR 2021) models each face as a von Mises-Fisher distribution on the
    sphere, centred on the frozen backbone's embedding; this layer predicts its
    concentration `kappa` (the confidence) from the backbone's last feature map:

    - `"mlp"` (MathsShen/SCF `UncertaintyNet`): flatten, then
      `Dense(F/2) -> ReLU -> Dense(F/4) -> ReLU -> Dense(1)` for `F` flattened features;
    - `"conv"` (Tencent/TFace `UncertaintyNet_conv`): `Conv3x3 -> ReLU -> Conv3x3 -> BN ->
      ReLU -> Conv3x3 -> BN -> ReLU -> global average pool`, then
      `Dense(C/2) -> ReLU -> Dense(C/4) -> ReLU -> Dense(1)` for `C` channels. The convolutions
      use `"same"` padding (TFace's are unpadded, which a 2x2 map at 32 px cannot take).

    The output is `kappa = exp(out) + kappa_floor`, shape `(batch,)`, float32 under any
    dtype policy. The last Dense layer starts with a zero kernel and the bias
    `log(initial_kappa)`, so every image starts at `kappa = initial_kappa`. That start
    matters: at `kappa ~ 1` the loss's gradient in `log kappa`, `kappa (A_d(kappa) - cos)`,
    is about `-kappa cos ~ 0` and training crawls. Set `initial_kappa` to
    `kappa_for_cosine(mean training cosine, dim)`, the optimum of the average image.
    `out` is capped at `log kappa = 40` (kappa ~ 2e17) so that `kappa^2` never overflows
    float32.

    Args:
        architecture: str. `"mlp"` or `"conv"`. Defaults to `"mlp"`.
        hidden_units: sequence of int. Widths of the hidden Dense layers. Defaults to `None`:
            `(F/2, F/4)` for `"mlp"` (the authors' 25088 -> 12544 -> 6272 -> 1) and
            `(C/2, C/4)` for `"conv"` (TFace's 512 -> 256 -> 128 -> 1).
        conv_filters: int. Filters of the three convolutions of `"conv"`. Defaults to
            `None`: the input's channels (TFace: 512).
        initial_kappa: float. `kappa` of every image before training. Defaults to `100.0`
            (`kappa*` of a cosine of about 0.55 at `d = 128`).
        kappa_floor: float. Added to `exp(out)` (the authors' `1e-6`). Defaults to `1e-6`.
        kernel_initializer: initializer of the hidden layers. Defaults to `"glorot_uniform"`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        dim = 128
        initial = float(keras_face.uncertainty.kappa_for_cosine(0.6, dim))
        head = keras_face.uncertainty.SphericalConfidenceHead("mlp", initial_kappa=initial)
        kappa = head(feature_maps)  # (batch,)
        ```

    References:
        - [Li et al., Spherical Confidence Learning for Face Recognition, CVPR 2021](https://openaccess.thecvf.com/content/CVPR2021/html/Li_Spherical_Confidence_Learning_for_Face_Recognition_CVPR_2021_paper.html)
    """

    def __init__(
        self,
        architecture="mlp",
        hidden_units=None,
        conv_filters=None,
        initial_kappa=100.0,
        kappa_floor=1e-6,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {ARCHITECTURES}. "
                f"Received: architecture={architecture!r}"
            )
        self.architecture = architecture
        self.hidden_units = _validate_units(hidden_units)
        if conv_filters is not None and (
            isinstance(conv_filters, bool) or not isinstance(conv_filters, int) or conv_filters < 1
        ):
            raise ValueError(
                f"conv_filters must be None or a positive integer. "
                f"Received: conv_filters={conv_filters!r}"
            )
        self.conv_filters = conv_filters
        initial_kappa = float(initial_kappa)
        kappa_floor = float(kappa_floor)
        if not math.isfinite(kappa_floor) or kappa_floor < 0:
            raise ValueError(
                f"kappa_floor must be a finite number >= 0. Received: kappa_floor={kappa_floor}"
            )
        if not math.isfinite(initial_kappa) or initial_kappa <= kappa_floor:
            raise ValueError(
                "initial_kappa must be finite and larger than kappa_floor "
                f"({kappa_floor}). Received: initial_kappa={initial_kappa}"
            )
        self.initial_kappa = initial_kappa
        self.kappa_floor = kappa_floor
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _dense(self, units, name):
        return keras.layers.Dense(
            units,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if self.architecture == "conv":
            if len(input_shape) != 4 or input_shape[-1] is None:
                raise ValueError(
                    'The "conv" confidence head takes feature maps (batch, height, width, '
                    f"channels). Received: input shape={input_shape}"
                )
            channels = int(input_shape[-1])
            filters = self.conv_filters or channels
            self.convolutions = []
            self.normalizations = []
            shape = input_shape
            for index in range(3):
                convolution = keras.layers.Conv2D(
                    filters,
                    3,
                    padding="same",
                    use_bias=index == 0,
                    kernel_initializer=self.kernel_initializer,
                    dtype=self.dtype_policy,
                    name=f"conv{index + 1}",
                )
                convolution.build(shape)
                shape = convolution.compute_output_shape(shape)
                self.convolutions.append(convolution)
                if index > 0:
                    normalization = keras.layers.BatchNormalization(
                        dtype=self.dtype_policy, name=f"conv{index + 1}_bn"
                    )
                    normalization.build(shape)
                    self.normalizations.append(normalization)
            width = filters
        else:
            if len(input_shape) < 2 or any(size is None for size in input_shape[1:]):
                raise ValueError(
                    'The "mlp" confidence head needs a known feature size. '
                    f"Received: input shape={input_shape}"
                )
            width = int(math.prod(input_shape[1:]))
        units = self.hidden_units
        if units is None:
            units = (max(width // 2, 1), max(width // 4, 1))
        self.hidden_layers = []
        for index, size in enumerate(units):
            layer = self._dense(size, f"hidden{index + 1}")
            layer.build((None, width))
            self.hidden_layers.append(layer)
            width = size
        # float32: kappa is exp(out), whose exponent must not be rounded to float16.
        self.output_layer = keras.layers.Dense(
            1,
            kernel_initializer="zeros",
            bias_initializer=keras.initializers.Constant(
                math.log(self.initial_kappa - self.kappa_floor)
            ),
            dtype="float32",
            name="log_kappa",
        )
        self.output_layer.build((None, width))

    def call(self, inputs, training=None):
        x = inputs
        if self.architecture == "conv":
            x = ops.relu(self.convolutions[0](x))
            for convolution, normalization in zip(self.convolutions[1:], self.normalizations):
                x = ops.relu(normalization(convolution(x), training=training))
            x = ops.mean(x, axis=(1, 2))
        else:
            x = ops.reshape(x, (-1, int(math.prod(x.shape[1:]))))
        for layer in self.hidden_layers:
            x = ops.relu(layer(x))
        log_kappa = self.output_layer(ops.cast(x, "float32"))[:, 0]
        return ops.exp(ops.minimum(log_kappa, MAX_LOG_KAPPA)) + self.kappa_floor

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "architecture": self.architecture,
                "hidden_units": list(self.hidden_units) if self.hidden_units is not None else None,
                "conv_filters": self.conv_filters,
                "initial_kappa": self.initial_kappa,
                "kappa_floor": self.kappa_floor,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
