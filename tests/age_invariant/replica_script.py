"""Train a few steps of a method's model on fixed global batches with N CPU replicas.

Usage: python replica_script.py METHOD REPLICAS OUTPUT.npz   (METHOD: age_invariant | occlusion)

Run as a separate process: logical devices must be configured before TensorFlow starts.
The networks use synchronized batch norms, so one replica and two see the same statistics.
"""

import sys

import numpy as np

from keras_face import training

method, replicas, output = sys.argv[1], int(sys.argv[2]), sys.argv[3]
training.configure_cpu_replicas(replicas)

import keras  # noqa: E402

from keras_face import heads  # noqa: E402
from keras_face.age_invariant import AgeInvariantTrainingModel  # noqa: E402
from keras_face.occlusion import OcclusionAdversarialModel  # noqa: E402

GLOBAL_BATCH = 8
STEPS = 4
SIZE = 16


def backbone():
    image = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(image)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv1")(x)
    x = keras.layers.BatchNormalization(synchronized=True, name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="conv2")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten(name="embedding_flatten")(x)
    embeddings = keras.layers.Dense(8, name="embedding_fc")(x)
    return keras.Model(image, embeddings, name="tiny")


keras.utils.set_random_seed(0)
strategy = training.get_strategy("mirrored" if replicas > 1 else "default")
assert strategy.num_replicas_in_sync == replicas
rng = np.random.default_rng(1)
images = rng.integers(0, 256, (32, SIZE, SIZE, 3)).astype(np.uint8)
labels = np.repeat(np.arange(4), 8).astype(np.int32)
ages = rng.uniform(2, 80, 32).astype(np.float32)
with strategy.scope():
    head = heads.CosFace(4, scale=16.0, margin=0.35)
    if method == "age_invariant":
        model = AgeInvariantTrainingModel(
            backbone(),
            head,
            num_groups=4,
            age_weight=0.01,
            da_weight=0.02,
            reduction=4,
            age_hidden=8,
            synchronized_bn=True,
        )
        extras = (ages,)
    else:
        model = OcclusionAdversarialModel(backbone(), head, families=("halves", "landmarks"))
        extras = ()
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
dataset = training.make_training_dataset(
    images, labels, GLOBAL_BATCH, epochs=1, seed=3, extras=extras
)


class RecordLoss(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


record = RecordLoss()
model.fit(dataset, epochs=1, steps_per_epoch=STEPS, callbacks=[record], verbose=0)
weights = {f"w{i}": np.asarray(w) for i, w in enumerate(model.trainable_weights)}
np.savez(output, losses=np.array(record.losses), **weights)
