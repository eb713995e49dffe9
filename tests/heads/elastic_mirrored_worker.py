"""Subprocess of `test_elastic_distribution.py`: ElasticFace on 1 device vs. 2 replicas.

Splits the CPU into two logical devices (before TensorFlow initialises, hence a separate
process), fits one model holding the ElasticFace heads (Arc, Cos, Arc+, Cos+, Arc+ in the
reference order) on a shared projection for `STEPS` global batches, once without a
strategy and once under `tf.distribute.MirroredStrategy` over the two devices, and
prints one JSON object per head (and one for the shared projection) on stdout:
`{"head", "mirrored", "local"}`, the relative difference `max |a - b| / max |a|` of the
head's kernel between the single-device run and the mirrored run, and the
mirrored run with the replicas drawing their margins from their own rows only (the
behaviour before the margins were drawn per global-batch row), to show that the
comparison can fail. A first line (`"head": "uneven_rows"`) gives the replicas' global
batch size and offset, and the concatenated rows, for replicas of 3 and 2 rows.
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
    "elasticarcface": lambda name: heads.ElasticArcFace(NUM_CLASSES, seed=3, name=name),
    "elasticcosface": lambda name: heads.ElasticCosFace(NUM_CLASSES, seed=4, name=name),
    "elasticarcface_plus": lambda name: heads.ElasticArcFace(
        NUM_CLASSES, margin_std=0.0175, plus=True, seed=5, name=name
    ),
    "elasticcosface_plus": lambda name: heads.ElasticCosFace(
        NUM_CLASSES, margin_std=0.02, plus=True, seed=6, name=name
    ),
    "elasticarcface_plus_reference_order": lambda name: heads.ElasticArcFace(
        NUM_CLASSES, plus=True, plus_reference_order=True, seed=7, name=name
    ),
}


def make_model():
    embeddings = keras.Input((DIM,), name="embeddings")
    labels = keras.Input((), dtype="int32", name="labels")
    projected = keras.layers.Dense(DIM, name="projection")(embeddings)
    outputs = {name: make(name)([projected, labels]) for name, make in HEADS.items()}
    model = keras.Model([embeddings, labels], outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss={name: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for name in HEADS},
    )
    return model


def fit(initial_weights, x, y, strategy=None):
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        model = make_model()
        model.set_weights(initial_weights)
    model.fit(
        [x, y], {name: y for name in HEADS}, batch_size=GLOBAL_BATCH, shuffle=False, verbose=0
    )
    return {v.path: np.asarray(v.value) for v in model.trainable_variables}


def _difference(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


def uneven_rows(strategy):
    """`replica_rows` and `cross_replica_concat` with 3 rows on replica 0 and 2 on 1."""

    def rows(values):
        global_size, offset = backend_ops.replica_rows(tf.shape(values)[0])
        return tf.stack([global_size, offset]), backend_ops.cross_replica_concat(values)

    values = strategy.experimental_distribute_values_from_function(
        lambda context: (
            tf.range(3 - context.replica_id_in_sync_group) + 10 * context.replica_id_in_sync_group
        )
    )
    positions, concatenated = strategy.run(rows, args=(values,))
    return {
        "positions": [r.numpy().tolist() for r in strategy.experimental_local_results(positions)],
        "concatenated": [
            r.numpy().tolist() for r in strategy.experimental_local_results(concatenated)
        ],
    }


def main():
    rng = np.random.default_rng(0)
    x = (3.0 * rng.normal(size=(GLOBAL_BATCH * STEPS, DIM))).astype("float32")
    y = rng.integers(0, NUM_CLASSES, size=len(x)).astype("int32")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    keras.utils.set_random_seed(1)
    initial = make_model().get_weights()
    single = fit(initial, x, y)
    mirrored = fit(initial, x, y, strategy)
    original = backend_ops.replica_rows
    backend_ops.replica_rows = lambda batch_size: None
    try:
        local = fit(initial, x, y, strategy)
    finally:
        backend_ops.replica_rows = original
    print(json.dumps({"head": "uneven_rows", "rows": uneven_rows(strategy)}), flush=True)
    for name in list(HEADS) + ["projection"]:
        paths = [p for p in single if p.startswith(name + "/")]
        result = {
            "head": name,
            "mirrored": max(_difference(single[p], mirrored[p]) for p in paths),
            "local": max(_difference(single[p], local[p]) for p in paths),
        }
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
