"""Train a few steps on fixed global batches with N logical CPU replicas; save losses and weights.

Usage: python replica_script.py REPLICAS OUTPUT.npz [local_bn]

`local_bn`: batch normalization without `synchronized=True` (each replica computes its own
batch statistics, as in the package's backbones); the output then also holds the largest
difference between the replicas' copies of the moving statistics.
Run as a separate process: logical devices must be configured before TensorFlow starts.
"""

import sys

import numpy as np

from keras_face import training

replicas, output = int(sys.argv[1]), sys.argv[2]
local_bn = sys.argv[3:] == ["local_bn"]
training.configure_cpu_replicas(replicas)

import keras  # noqa: E402
import training_testing  # noqa: E402

from keras_face import heads  # noqa: E402

GLOBAL_BATCH = 8
STEPS = 5

keras.utils.set_random_seed(0)
strategy = training.get_strategy("mirrored" if replicas > 1 else "default")
assert strategy.num_replicas_in_sync == replicas, strategy.num_replicas_in_sync
training.check_global_batch_size(GLOBAL_BATCH, strategy)
images, labels = training_testing.identity_images(6, 8, seed=1)
with strategy.scope():
    backbone = training_testing.tiny_backbone(synchronized_bn=not local_bn)
    head = heads.CurricularFace(6, scale=16.0)
    model = training.build_training_model(backbone, head)
    model.compile(optimizer=training.L2SGD(0.05, momentum=0.9, l2=5e-4))
dataset = training.make_training_dataset(images, labels, GLOBAL_BATCH, epochs=1, seed=3)


class RecordLoss(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


record = RecordLoss()
model.fit(dataset, epochs=1, steps_per_epoch=STEPS, callbacks=[record], verbose=0)
weights = {f"w{i}": np.asarray(w) for i, w in enumerate(model.weights)}
spread = 0.0
for layer in backbone.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
        for variable in (layer.moving_mean, layer.moving_variance):
            copies = [np.asarray(c) for c in strategy.experimental_local_results(variable.value)]
            spread = max(spread, max(float(np.abs(c - copies[0]).max()) for c in copies))
moving_mean = np.asarray(backbone.get_layer("bn").moving_mean)
probe = images[:8].astype("float32")
# Embeddings from predict (under the strategy: the batch split over the replicas) and
# from a direct call on one device: equal when the replicas agree.
predicted = backbone.predict(probe, batch_size=8, verbose=0)
direct = np.asarray(backbone(probe, training=False))
np.savez(
    output,
    losses=np.array(record.losses),
    t=np.asarray(head.t),
    iterations=np.asarray(model.optimizer.iterations),
    spread=np.array(spread),
    moving_mean=moving_mean,
    predicted=predicted,
    direct=direct,
    **weights,
)
