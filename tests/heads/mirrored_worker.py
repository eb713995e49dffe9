"""Subprocess of `test_distribution.py`: single device vs. MirroredStrategy on 2 CPUs.

Splits the CPU into two logical devices (which must happen before TensorFlow
initialises, hence a separate process), then fits a model on the same global batches,
once without a strategy and once under `tf.distribute.MirroredStrategy` over the two
devices, and prints one JSON object per head on stdout:
`{"head", "single": {state}, "mirrored": {state}, "max_weight_difference" (largest
`max |a - b| / max |a|` over the weight tensors),
"local": {state}}`. "local" is the mirrored run with the cross-replica sum switched off
(each replica's statistics from its own half batch), to show the comparison can fail.
One model holds the four heads on a shared projection, so three fits cover them all.
"""

import contextlib
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_face import heads  # noqa: E402
from keras_face.heads import backend_ops  # noqa: E402

DIM, NUM_CLASSES, GLOBAL_BATCH, STEPS = 8, 10, 16, 5
HEADS = {
    "sphereface": heads.SphereFace,
    "curricularface": heads.CurricularFace,
    "magface": heads.MagFace,
    "adaface": heads.AdaFace,
}


def make_model():
    """One projection feeding the four heads (one fit exercises them all)."""
    embeddings = keras.Input((DIM,), name="embeddings")
    labels = keras.Input((), dtype="int32", name="labels")
    projected = keras.layers.Dense(DIM, name="projection")(embeddings)
    outputs = {
        name: head_cls(NUM_CLASSES, name=name)([projected, labels])
        for name, head_cls in HEADS.items()
    }
    model = keras.Model([embeddings, labels], outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss={name: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for name in HEADS},
    )
    return model


def fit(initial_weights, x, y, strategy=None):
    """Fit one epoch of `STEPS` global batches; `({head: state}, {weight path: array})`."""
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        model = make_model()
        model.set_weights(initial_weights)
    model.fit(
        [x, y],
        {name: y for name in HEADS},
        batch_size=GLOBAL_BATCH,
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    states = {
        name: {
            v.name: float(np.asarray(v.value))
            for v in model.get_layer(name).non_trainable_variables
        }
        for name in HEADS
    }
    weights = {v.path: np.asarray(v.value) for v in model.trainable_variables}
    return states, weights


def _difference(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


def main():
    rng = np.random.default_rng(0)
    x = (10.0 * rng.normal(size=(GLOBAL_BATCH * STEPS, DIM))).astype("float32")
    # Uneven norms across the two halves of each batch, so that per-replica statistics
    # differ from the global ones.
    x[np.arange(len(x)) % GLOBAL_BATCH >= GLOBAL_BATCH // 2] *= 3.0
    y = rng.integers(0, NUM_CLASSES, size=len(x)).astype("int32")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    keras.utils.set_random_seed(1)
    initial = make_model().get_weights()
    single_states, single_weights = fit(initial, x, y)
    mirrored_states, mirrored_weights = fit(initial, x, y, strategy)
    original = backend_ops.cross_replica_sum
    backend_ops.cross_replica_sum = lambda value: value
    try:
        local_states, _ = fit(initial, x, y, strategy)
    finally:
        backend_ops.cross_replica_sum = original
    for name in HEADS:
        # The head's kernel, and the shared projection (trained through all heads).
        paths = [p for p in single_weights if p.startswith((name + "/", "projection/"))]
        result = {
            "head": name,
            "single": single_states[name],
            "mirrored": mirrored_states[name],
            "local": local_states[name],
            "max_weight_difference": max(
                _difference(single_weights[p], mirrored_weights[p]) for p in paths
            ),
        }
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
