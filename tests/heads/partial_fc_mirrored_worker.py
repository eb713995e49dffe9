"""Subprocess of `test_partial_fc_training.py`: PartialFC on 1 device vs 2 CPU replicas.

Splits the CPU into two logical devices (before TensorFlow initialises, hence a separate
process), then trains the same `FaceTrainingModel` (a dense "backbone" and
`PartialFC(ArcFace(40), sample_rate=0.25)`) for 5 global batches of 16, once without a
strategy and once under `tf.distribute.MirroredStrategy`, and prints one JSON object:
`{"single": run, "mirrored": run, "local": run}`, each run holding the per-step losses,
the sampler's step, the last sampled classes and the final weights' largest difference
from the single run. "local" is the mirrored run with the label all-gather switched off
(each replica samples from its own half batch), to show that the comparison can fail: it
holds the error it raises instead.
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
from keras_face.heads import partial_fc  # noqa: E402
from keras_face.training import L2SGD  # noqa: E402
from keras_face.training import FaceTrainingModel  # noqa: E402

DIM, NUM_CLASSES, GLOBAL_BATCH, STEPS = 8, 40, 16, 5


class StepLosses(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


def make_model():
    inputs = keras.Input((DIM,), name="features")
    backbone = keras.Model(inputs, keras.layers.Dense(DIM, name="projection")(inputs))
    head = heads.PartialFC(heads.ArcFace(NUM_CLASSES, scale=16.0), sample_rate=0.25, seed=5)
    model = FaceTrainingModel(backbone, head)
    model.compile(optimizer=L2SGD(0.1, momentum=0.9, l2=5e-4))
    return model


def fit(initial_weights, x, y, strategy=None):
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        model = make_model()
        model.set_weights(initial_weights)
    losses = StepLosses()
    model.fit(
        (x, y),
        y,
        batch_size=GLOBAL_BATCH,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[losses],
    )
    return {
        "losses": losses.losses,
        "step": int(np.asarray(model.head.step.value)),
        "sampled": model.head.sampled_classes.tolist(),
        "weights": [np.asarray(v.value) for v in model.trainable_variables],
    }


def main():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(GLOBAL_BATCH * STEPS, DIM)).astype("float32")
    # The two replicas' halves hold different classes: a replica that sampled from its
    # own labels only would miss the other half's positives.
    y = np.concatenate(
        [np.concatenate([rng.integers(0, 20, 8), rng.integers(20, 40, 8)]) for _ in range(STEPS)]
    ).astype("int32")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    keras.utils.set_random_seed(1)
    initial = make_model().get_weights()
    runs = {"single": fit(initial, x, y), "mirrored": fit(initial, x, y, strategy)}
    original = partial_fc._all_gather
    partial_fc._all_gather = lambda labels: labels
    try:
        runs["local"] = fit(initial, x, y, strategy)
    except tf.errors.InvalidArgumentError as error:
        # Replica 1's labels are not among replica 0's sampled classes (the state keeps
        # the first replica's): the loss sees label -1 and TensorFlow refuses it.
        lines = [line for line in str(error).splitlines() if "label value" in line]
        runs["local"] = {"error": (lines or [str(error)])[0].strip()[:300]}
    finally:
        partial_fc._all_gather = original
    single = runs["single"]["weights"]
    for run in runs.values():
        if "error" in run:
            continue
        weights = run.pop("weights")
        run["max_weight_difference"] = max(
            float(np.max(np.abs(mine - theirs)) / np.max(np.abs(theirs)))
            for mine, theirs in zip(weights, single)
        )
    print(json.dumps(runs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
