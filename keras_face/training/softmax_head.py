"""Plain softmax classifier head: the baseline the margin heads are compared with."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_face")
class SoftmaxHead(keras.layers.Layer):
    """Unnormalised linear classifier `W x + b` with the margin heads' calling convention.

    The standard baseline of the face-recognition papers ("Softmax" in the ArcFace,
    CosFace and SphereFace tables): no feature or weight normalisation, no scale, no
    margin. Called as `head([embeddings, labels], training=...)` (the labels are accepted
    and ignored) and returning float32 logits `(batch, num_classes)` whatever the dtype
    policy, like the heads of `keras_face.heads`. Config name: `head: {name: softmax}`.

    Args:
        num_classes: int. Number of identities.
        use_bias: bool. Add a bias per class. Defaults to `True`.
        kernel_initializer: initializer of the `(embedding_dim, num_classes)` kernel.
            Defaults to `"glorot_uniform"`.
        kernel_regularizer: optional regularizer of the kernel. Defaults to `None`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        head = keras_face.training.SoftmaxHead(num_classes=1000)
        logits = head([embeddings, labels], training=True)
        ```

    References:
        - [Deng et al., ArcFace, CVPR 2019, Table 2 ("Softmax")](https://arxiv.org/abs/1801.07698)
    """

    def __init__(
        self,
        num_classes,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(
                f"num_classes must be a positive integer. Received: num_classes={num_classes!r}"
            )
        self.num_classes = int(num_classes)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    @property
    def input_dtype(self):
        return "float32"

    @staticmethod
    def _embedding_shape(input_shape):
        if (
            isinstance(input_shape, (list, tuple))
            and input_shape
            and isinstance(input_shape[0], (list, tuple))
        ):
            return tuple(input_shape[0])
        return tuple(input_shape)

    def build(self, input_shape):
        embedding_dim = self._embedding_shape(input_shape)[-1]
        self.kernel = self.add_weight(
            name="kernel",
            shape=(embedding_dim, self.num_classes),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            dtype="float32",
            autocast=False,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.num_classes,),
                initializer="zeros",
                dtype="float32",
                autocast=False,
            )

    def call(self, inputs, training=None):
        embeddings = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        logits = ops.matmul(ops.cast(embeddings, "float32"), self.kernel)
        if self.bias is not None:
            logits = logits + self.bias
        return logits

    def compute_output_shape(self, input_shape):
        return (self._embedding_shape(input_shape)[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
                if self.kernel_regularizer is not None
                else None,
            }
        )
        return config
