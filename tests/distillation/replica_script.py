"""Distillation steps on fixed global batches with N logical CPU replicas; save the results.

Usage: python replica_script.py REPLICAS OUTPUT.npz online|offline

The student has synchronized batch norm (a multi-replica step then equals a one-replica
step); the online teacher has plain batch norm, frozen in inference mode.
Run as a separate process: logical devices must be configured before TensorFlow starts.
"""

import os
import sys

import numpy as np

from keras_face import training

replicas, output, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
training.configure_cpu_replicas(replicas)

import keras  # noqa: E402

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "training")
)
import training_testing  # noqa: E402

from keras_face import distillation  # noqa: E402
from keras_face import heads  # noqa: E402

GLOBAL_BATCH = 8
STEPS = 5

strategy = training.get_strategy("mirrored" if replicas > 1 else "default")
assert strategy.num_replicas_in_sync == replicas, strategy.num_replicas_in_sync
images, labels = training_testing.identity_images(6, 8, seed=1)
with strategy.scope():
    keras.utils.set_random_seed(1)
    teacher = training_testing.tiny_backbone(embedding_size=12, name="teacher")
    keras.utils.set_random_seed(0)
    student = training_testing.tiny_backbone(synchronized_bn=True, name="student")
    head = heads.ArcFace(6, scale=16.0)
    if mode == "online":
        teacher.trainable = False
        model = distillation.DistillationTrainingModel(
            student, head, teacher=teacher, projection="dense"
        )
    else:
        model = distillation.DistillationTrainingModel(
            student, head, teacher_dim=12, projection="dense"
        )
    model.compile(optimizer=training.L2SGD(0.05, momentum=0.9, l2=5e-4))
if mode == "online":
    dataset = training.make_training_dataset(images, labels, GLOBAL_BATCH, epochs=1, seed=3)
else:
    embeddings = distillation.precompute_teacher_embeddings(teacher, images)
    dataset = distillation.make_distillation_dataset(
        images, labels, embeddings, GLOBAL_BATCH, epochs=1, seed=3
    )


class RecordLoss(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses, self.distillation = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))
        self.distillation.append(float(logs["distillation_loss"]))


record = RecordLoss()
model.fit(dataset, epochs=1, steps_per_epoch=STEPS, callbacks=[record], verbose=0)
np.savez(
    output,
    losses=np.array(record.losses),
    distillation=np.array(record.distillation),
    iterations=np.asarray(model.optimizer.iterations),
    teacher_mean=np.asarray(teacher.get_layer("bn").moving_mean),
    **{f"w{i}": np.asarray(w) for i, w in enumerate(student.weights + model.distillation.weights)},
)
