"""One gradient harness for every head, stateless or stateful, on every Keras backend.

`head_gradients(layer, embeddings, labels, weights=None)` makes one training call (as a
training step: a stateful head's state is updated once, on every backend) and returns
its logits and the gradients of

    sum(weights * logits) + sum(losses the call added)     (weights given)
    mean sparse softmax cross-entropy + sum(added losses)  (weights=None)

with respect to the embeddings and to every trainable variable of the layer:

- TensorFlow: `tf.GradientTape`;
- JAX: `jax.value_and_grad` through `layer.stateless_call`, the new state assigned after;
- PyTorch: `torch.autograd.grad`.
"""

import collections

import keras
import numpy as np

HeadGradients = collections.namedtuple(
    "HeadGradients", ["logits", "embeddings", "kernel", "variables"]
)
HeadGradients.__doc__ = """NumPy logits `(B, C)`, gradients w.r.t. the embeddings `(B, d)`
and the kernel, and `{variable.path: gradient}` of every trainable variable."""


def loss_weights(batch, num_classes, seed=0):
    """Random `(batch, num_classes)` weights `R` of the objective `sum(R * logits)`."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, num_classes)).astype("float32")


def _objective(logits, labels, weights, losses):
    logits = keras.ops.cast(logits, "float32")
    if weights is not None:
        total = keras.ops.sum(logits * keras.ops.convert_to_tensor(weights, "float32"))
    else:
        total = keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        )
    for loss in losses:
        total = total + keras.ops.sum(loss)
    return total


def head_gradients(layer, embeddings, labels, weights=None, training=True):
    """Logits and gradients of one training call of `layer` (see the module docstring).

    Args:
        layer: a margin head, built or not (an unbuilt one is built by an inference
            call, which changes no state).
        embeddings: float32 array `(B, d)`.
        labels: int array `(B,)`.
        weights: optional `(B, C)` array `R`: the objective is `sum(R * logits)`;
            otherwise the mean sparse softmax cross-entropy of the logits.
        training: bool. The `training` flag of the call.

    Returns:
        A `HeadGradients(logits, embeddings, kernel, variables)` of NumPy arrays.
    """
    embeddings = np.asarray(embeddings, np.float32)
    labels = np.asarray(labels)
    if weights is not None:
        weights = np.asarray(weights, np.float32)
    if not layer.built:
        layer(
            [keras.ops.convert_to_tensor(embeddings), keras.ops.convert_to_tensor(labels)],
            training=False,
        )
    variables = list(layer.trainable_variables)
    backend = keras.backend.backend()

    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(embeddings)
        y = tf.constant(labels)
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = layer([x, y], training=training)
            objective = _objective(logits, y, weights, layer.losses)
        grads = tape.gradient(objective, [x] + variables)
    elif backend == "jax":
        import jax

        y = keras.ops.convert_to_tensor(labels)
        state = [v.value for v in layer.non_trainable_variables]

        def objective(x, trainable_values):
            logits, new_state, losses = layer.stateless_call(
                trainable_values, state, [x, y], training=training, return_losses=True
            )
            return _objective(logits, y, weights, losses), (logits, new_state)

        (_, (logits, new_state)), (grad_x, grad_vars) = jax.value_and_grad(
            objective, argnums=(0, 1), has_aux=True
        )(jax.numpy.asarray(embeddings), [v.value for v in variables])
        for variable, value in zip(layer.non_trainable_variables, new_state):
            variable.assign(value)
        grads = [grad_x] + list(grad_vars)
    elif backend == "torch":
        import torch

        x = torch.tensor(embeddings, requires_grad=True)
        y = torch.tensor(labels)
        logits = layer([x, y], training=training)
        objective = _objective(logits, y, weights, layer.losses)
        grads = torch.autograd.grad(objective, [x] + [v.value for v in variables])
        logits = logits.detach()
    else:  # pragma: no cover
        raise NotImplementedError(backend)

    as_numpy = [np.asarray(keras.ops.convert_to_numpy(g)) for g in grads]
    by_path = {v.path: g for v, g in zip(variables, as_numpy[1:])}
    return HeadGradients(
        logits=np.asarray(keras.ops.convert_to_numpy(logits)),
        embeddings=as_numpy[0],
        kernel=by_path[layer.kernel.path],
        variables=by_path,
    )
