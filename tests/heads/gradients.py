"""Gradients of a layer's loss on every Keras backend (TensorFlow, JAX, PyTorch).

`layer_gradients(layer, inputs, ...)` returns the gradients of a scalar loss of the
layer's outputs with respect to the first input (the embeddings) and to every trainable
variable of the layer, as NumPy arrays:

- TensorFlow: `tf.GradientTape`;
- JAX: `jax.grad` through `layer.stateless_call`;
- PyTorch: `torch.autograd.grad`.
"""

import keras
import numpy as np


def _loss(outputs, labels, weights):
    outputs = keras.ops.cast(outputs, "float32")
    if weights is not None:
        return keras.ops.sum(outputs * keras.ops.convert_to_tensor(weights, "float32"))
    return keras.ops.mean(
        keras.losses.sparse_categorical_crossentropy(labels, outputs, from_logits=True)
    )


def layer_gradients(layer, embeddings, labels, weights=None, training=True):
    """Gradients w.r.t. the embeddings and the layer's trainable variables.

    Args:
        layer: a built or unbuilt margin head (it is built by a first call).
        embeddings: float32 array `(B, d)`.
        labels: int array `(B,)`.
        weights: optional `(B, C)` array: the loss is `sum(weights * logits)`;
            otherwise the mean sparse softmax cross-entropy of the logits.
        training: bool. The `training` flag of the call.

    Returns:
        `(gradient w.r.t. embeddings, {variable.path: gradient})`, NumPy arrays.
    """
    embeddings = np.asarray(embeddings, np.float32)
    labels = np.asarray(labels)
    if not layer.built:
        layer([keras.ops.convert_to_tensor(embeddings), keras.ops.convert_to_tensor(labels)],
              training=False)
    variables = list(layer.trainable_variables)
    backend = keras.backend.backend()

    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(embeddings)
        y = tf.constant(labels)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = _loss(layer([x, y], training=training), y, weights)
        grads = tape.gradient(loss, [x] + variables)
    elif backend == "jax":
        import jax

        trainable = [v.value for v in variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        y = keras.ops.convert_to_tensor(labels)

        def loss_fn(x, trainable_values):
            outputs, _ = layer.stateless_call(
                trainable_values, non_trainable, [x, y], training=training
            )
            return _loss(outputs, y, weights)

        grad_x, grad_vars = jax.grad(loss_fn, argnums=(0, 1))(
            jax.numpy.asarray(embeddings), trainable
        )
        grads = [grad_x] + list(grad_vars)
    elif backend == "torch":
        import torch

        x = torch.tensor(embeddings, requires_grad=True)
        y = torch.tensor(labels)
        loss = _loss(layer([x, y], training=training), y, weights)
        grads = torch.autograd.grad(loss, [x] + [v.value for v in variables])
    else:  # pragma: no cover
        raise NotImplementedError(backend)

    as_numpy = [np.asarray(keras.ops.convert_to_numpy(g)) for g in grads]
    return as_numpy[0], {v.path: g for v, g in zip(variables, as_numpy[1:])}
