"""Gradient of a scalar function of one float32 array with the backend's own autodiff."""

import keras
import numpy as np


def gradient_function(function):
    """`x -> d sum(function(x)) / dx` by TF tape, `jax.grad` (jitted) or torch autograd."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        def tf_gradient(values):
            x = tf.constant(np.asarray(values, dtype=np.float32))
            with tf.GradientTape() as tape:
                tape.watch(x)
                total = tf.reduce_sum(function(x))
            return tape.gradient(total, x).numpy()

        return tf_gradient
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        compiled = jax.jit(jax.grad(lambda x: jnp.sum(function(x))))
        return lambda values: np.asarray(compiled(jnp.asarray(values, dtype=jnp.float32)))
    import torch

    def torch_gradient(values):
        x = torch.tensor(np.asarray(values, dtype=np.float32), requires_grad=True)
        torch.sum(function(x)).backward()
        return x.grad.numpy()

    return torch_gradient


def gradient(function, values):
    """`d sum(function(x)) / dx` at `values`."""
    return gradient_function(function)(values)
