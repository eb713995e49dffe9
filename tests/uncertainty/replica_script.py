"""SCF training steps on fixed global batches with N logical CPU replicas; save the results.

Usage: python replica_script.py REPLICAS OUTPUT.npz

Precomputed features (no backbone, so no batch norm): a multi-replica step must equal a
one-replica step on the same global batch. Run as a separate process: logical devices
must be configured before TensorFlow starts.
"""

import sys

import numpy as np

from keras_face import training

replicas, output = int(sys.argv[1]), sys.argv[2]
training.configure_cpu_replicas(replicas)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_face import uncertainty  # noqa: E402

GLOBAL_BATCH, STEPS, CLASSES, DIM = 8, 4, 3, 16

rng = np.random.default_rng(0)
centres = rng.normal(size=(CLASSES, DIM)).astype("float32")
labels = rng.integers(0, CLASSES, size=GLOBAL_BATCH * STEPS).astype("int32")
embeddings = (centres[labels] + rng.normal(0, 1.0, size=(len(labels), DIM))).astype("float32")
feature_maps = rng.normal(size=(len(labels), 2, 2, 8)).astype("float32")

strategy = training.get_strategy("mirrored" if replicas > 1 else "default")
assert strategy.num_replicas_in_sync == replicas, strategy.num_replicas_in_sync
with strategy.scope():
    keras.utils.set_random_seed(3)
    head = uncertainty.SphericalConfidenceHead("mlp", hidden_units=(8,), initial_kappa=20.0)
    model = uncertainty.SCFTrainingModel(None, centres, head, feature_shape=(2, 2, 8))
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
dataset = tf.data.Dataset.from_tensor_slices(((feature_maps, embeddings, labels), labels)).batch(
    GLOBAL_BATCH
)


class RecordLoss(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


record = RecordLoss()
model.fit(dataset, epochs=1, callbacks=[record], verbose=0)
np.savez(
    output,
    losses=np.array(record.losses),
    iterations=np.asarray(model.optimizer.iterations),
    **{f"w{i}": np.asarray(w) for i, w in enumerate(head.weights)},
)
