"""Train 3 epochs x 4 steps with step-level backups; optionally SIGKILL itself at a step.

Usage: python resume_script.py RUN_DIR OUTPUT.npz HEAD [KILL_AT_STEP]
With KILL_AT_STEP the process kills itself (SIGKILL, no cleanup) right after that
optimizer step; run it again without it to resume from RUN_DIR/backup.
"""

import json
import os
import signal
import sys

import keras
import numpy as np
import training_testing

from keras_face import heads
from keras_face import training

run_dir, output, head_name = sys.argv[1], sys.argv[2], sys.argv[3]
kill_at_step = int(sys.argv[4]) if len(sys.argv) > 4 else None
EPOCHS, STEPS, BATCH = 3, 4, 8

keras.utils.set_random_seed(0)
images, labels = training_testing.identity_images(5, 7, seed=2)  # 35 images: 4 batches of 8
backbone = training_testing.tiny_backbone()
head = heads.get(head_name, 5, scale=16.0) if head_name != "sphereface" else heads.get(head_name, 5)
model = training.build_training_model(backbone, head)
schedule = training.WarmupPolynomialDecay(0.05, total_steps=EPOCHS * STEPS, warmup_steps=2)
model.compile(optimizer=training.L2SGD(schedule, momentum=0.9, l2=5e-4))

backup = training.BackupAndRestore(os.path.join(run_dir, "backup"), save_freq=2)
backup.set_model(model)
state = backup.read_state()
first_epoch = state["epoch"] if state else 0
dataset = training.make_training_dataset(
    images, labels, BATCH, epochs=EPOCHS, seed=5, first_epoch=first_epoch
)


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.trained_steps = 0

    def on_train_batch_end(self, batch, logs=None):
        if not logs:  # a batch skipped by the resume (already trained on)
            return
        self.trained_steps += 1
        step = int(np.asarray(self.model.optimizer.iterations))
        if kill_at_step is not None and step == kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)


recorder = Recorder()
model.fit(dataset, epochs=EPOCHS, steps_per_epoch=STEPS, callbacks=[backup, recorder], verbose=0)
state_weights = {
    weight.path.replace("/", "__"): np.asarray(weight) for weight in head.non_trainable_weights
}
np.savez(
    output,
    iterations=np.asarray(model.optimizer.iterations),
    trained_steps=recorder.trained_steps,
    restored=json.dumps(backup.restored_state),
    **{f"w{i}": np.asarray(w) for i, w in enumerate(model.weights)},
    **state_weights,
)
