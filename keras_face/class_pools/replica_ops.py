"""The two cross-replica operations of the pools, identities outside `tf.distribute`.

- `all_gather`: the gallery features and labels of every replica, in replica order, so
  that every replica writes the same global batch into its copy of the pool (the
  authors' `concat_all_gather`).
- `assign_in_sync`: assign variables from replica context under a `tf.distribute`
  strategy (the gallery network's moving average), which Keras variables without a
  replica aggregation refuse; every replica computes the same values.

On the JAX and PyTorch backends, and without a multi-replica strategy, both are plain.
"""

import keras


def _replica_context():
    """The `tf.distribute` replica context of a multi-replica step, else `None`."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf  # TensorFlow-only branch.

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return None
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def all_gather(value):
    """Concatenate `value` over the replicas along axis 0, in replica order.

    Args:
        value: tensor `(n, ...)`, this replica's part.

    Returns:
        tensor `(replicas * n, ...)` (the input itself with one replica).
    """
    context = _replica_context()
    if context is None:
        return value
    return context.all_gather(value, axis=0)


def assign_in_sync(variables, values):
    """Assign `values` to Keras `variables`, from replica context under a strategy too.

    Args:
        variables: list of `keras.Variable`.
        values: list of tensors, equal on every replica.
    """
    context = _replica_context()
    if context is None:
        for variable, value in zip(variables, values):
            variable.assign(value)
        return

    def update(strategy, values):
        for variable, value in zip(variables, values):
            strategy.extended.update(variable.value, lambda v, x: v.assign(x), args=(value,))

    context.merge_call(update, args=(list(values),))
