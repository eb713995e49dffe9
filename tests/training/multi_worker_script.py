"""One worker of a 2-process MultiWorkerMirroredStrategy run on localhost (TF_CONFIG: the test).

Usage: python multi_worker_script.py OUTPUT.npz
Trains the same few steps as replica_script.py (global batch 8 over the 2 workers) and
saves the losses and weights.
"""

import sys

import keras
import numpy as np
import training_testing

from keras_face import heads
from keras_face import training

output = sys.argv[1]
GLOBAL_BATCH = 8
STEPS = 5

strategy = training.get_strategy("auto")  # MultiWorkerMirroredStrategy from TF_CONFIG
assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
keras.utils.set_random_seed(0)
images, labels = training_testing.identity_images(6, 8, seed=1)
with strategy.scope():
    backbone = training_testing.tiny_backbone(synchronized_bn=True)
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
np.savez(
    output,
    losses=np.array(record.losses),
    t=np.asarray(head.t),
    iterations=np.asarray(model.optimizer.iterations),
    **weights,
)
print("worker done")
