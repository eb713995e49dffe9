"""Batch normalization whose scale (gamma) is a frozen weight fixed at one."""

import keras


@keras.saving.register_keras_serializable(package="keras_face")
class FrozenScaleBatchNormalization(keras.layers.BatchNormalization):
    """Batch normalization with a non-trainable scale, the last layer of an embedding.

    The ArcFace embedding outputs end with a batch normalization whose scale is held at
    one and only the offset (beta) is learned: `fix_gamma=True` in insightface's MXNet
    symbols, `features.weight.requires_grad = False` after `constant_(weight, 1.0)` in
    `arcface_torch`. The scale is kept as a real weight (unlike `scale=False`) so that
    converted insightface checkpoints map one to one and
    `keras_face.models.count_parameters` counts it the way PyTorch does. It is created
    non-trainable, so it also stays frozen when `layer.trainable` is switched off and on
    again (fine-tuning), which a flag set on a trainable variable would not survive.

    Args:
        **kwargs: keyword arguments of `keras.layers.BatchNormalization` (`momentum`,
            `epsilon`, `gamma_initializer`, ...). `gamma_initializer` defaults to
            `"ones"` as in `keras.layers.BatchNormalization`.

    Example:
        ```python
        layer = keras_face.models.FrozenScaleBatchNormalization(epsilon=1e-5)
        embeddings = layer(features)
        ```

    References:
        - [Deng et al., ArcFace, CVPR 2019, section 3.2 (Option-E)](
          https://arxiv.org/abs/1801.07698)
    """

    def build(self, input_shape):
        scale = self.scale
        # Let the parent create beta and the moving statistics only, then add the scale
        # as a non-trainable weight.
        self.scale = False
        super().build(input_shape)
        self.scale = scale
        if scale:
            self.gamma = self.add_weight(
                shape=(input_shape[self.axis],),
                name="gamma",
                initializer=self.gamma_initializer,
                trainable=False,
                autocast=False,
            )
