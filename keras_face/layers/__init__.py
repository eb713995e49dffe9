"""Layers shared by several methods: the gradient-reversal layer.

Keras-only (`keras.ops`), like `keras_face.heads`: runs on TensorFlow, JAX and PyTorch.
"""

from keras_face.layers.gradient_reversal import GradientReversal

__all__ = ["GradientReversal"]
