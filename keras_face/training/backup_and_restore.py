"""Step-level backup of the whole training state, and an exact resume after a crash."""

import json
import math
import os

import keras

from keras_face.training import keras_compat
from keras_face.training.atomic_write import atomic_write
from keras_face.training.strategy import is_chief
from keras_face.training.strategy import task_id

STATE_FILE = "latest.json"
CHECKPOINT_PATTERN = "ckpt-{global_step:010d}.weights.h5"


class BackupAndRestore(keras.callbacks.Callback):
    """Back up the training state every `save_freq` steps; resume at the exact step.

    Each backup holds every variable of the model and of its optimizer: backbone and
    head weights, batch-norm statistics, the heads' state (CurricularFace `t`, AdaFace
    batch statistics, the SphereFace step counter), the optimizer's step counter,
    momentum buffers and loss scale. A backup is first written under a temporary name,
    then renamed, then pointed at by `latest.json` (also written then renamed), so a
    process killed at any instant (SIGKILL, preemption, power loss) leaves the previous
    backup intact.

    At the start of `fit` the latest backup, if any, is loaded and training continues at
    the epoch and step where it was taken: the first `n` batches of the resumed epoch
    (already trained on) are drawn from the dataset and dropped without a training step.
    The run then continues on exactly the same batches as an uninterrupted run when the
    dataset yields the same batches in every epoch of a given index, as the datasets of
    `keras_face.training.make_training_dataset` do (pass `first_epoch=` the resumed
    epoch, see `read_state`). The epoch's averaged metrics cover the steps after the
    resume only.

    Keras' own `keras.callbacks.BackupAndRestore` resumes at the start of the epoch
    (its batch counter is saved but not used to skip), so a step-level `save_freq` there
    repeats the batches of the partial epoch; this callback does not.

    In a multi-worker run each worker keeps its own backups (`worker-<id>/` under
    `backup_dir` for workers other than the chief); they hold the same values.

    Args:
        backup_dir: str. Directory of the backups, used by nothing else.
        save_freq: int or `"epoch"`. Back up every `save_freq` training steps (and at
            the end of every epoch), or at the end of every epoch only. Defaults to `100`.
        keep: int. Number of backups kept on disk. Defaults to `2`.
        delete_on_finish: bool. Delete the backups when `fit` completes. When `False`,
            the final state stays, marked finished, and running the same `fit` again
            trains no further. Defaults to `True`.

    Example:
        ```python
        backup = keras_face.training.BackupAndRestore("run/backup", save_freq=200)
        state = backup.read_state()  # None on a first run
        first_epoch = state["epoch"] if state else 0
        dataset = keras_face.training.make_training_dataset(
            images, labels, batch_size=128, first_epoch=first_epoch, epochs=20)
        model.fit(dataset, epochs=20, steps_per_epoch=len(images) // 128,
                  callbacks=[backup])
        ```
    """

    def __init__(self, backup_dir, save_freq=100, keep=2, delete_on_finish=True):
        super().__init__()
        if not backup_dir:
            raise ValueError(
                f"backup_dir must be a directory path. Received: backup_dir={backup_dir!r}"
            )
        if save_freq != "epoch" and (
            isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1
        ):
            raise ValueError(
                "save_freq must be a positive integer or 'epoch'. "
                f"Received: save_freq={save_freq!r}"
            )
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be a positive integer. Received: keep={keep!r}")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.keep = keep
        self.delete_on_finish = delete_on_finish
        self.restored_state = None
        self._epoch = 0
        self._step_in_epoch = 0
        self._steps_since_save = 0
        self._steps_to_skip = 0
        self._original_train_function = None

    # ----------------------------------------------------------------------------------
    # Files.
    def _directory(self):
        if self.model is None or is_chief(self.model.distribute_strategy):
            return self.backup_dir
        kind, index = task_id(self.model.distribute_strategy)
        return os.path.join(self.backup_dir, f"{kind}-{index}")

    def read_state(self):
        """The latest backup's state, or `None` when there is none.

        Returns:
            `None` or a dict with `"epoch"` (the epoch to continue, 0-based),
            `"step_in_epoch"` (steps of it already done), `"global_step"`,
            `"checkpoint"` (file name) and `"finished"`.
        """
        return read_backup_state(self._directory())

    def _write_state(self, state):
        path = os.path.join(self._directory(), STATE_FILE)
        with atomic_write(path) as temporary, open(temporary, "w") as file:
            json.dump(state, file)
            file.flush()
            os.fsync(file.fileno())

    def _save(self, finished=False):
        directory = self._directory()
        os.makedirs(directory, exist_ok=True)
        global_step = int(self._global_step())
        name = CHECKPOINT_PATTERN.format(global_step=global_step)
        with atomic_write(os.path.join(directory, name)) as temporary:
            self.model.save_weights(temporary, overwrite=True)
        self._write_state(
            {
                "epoch": self._epoch,
                "step_in_epoch": self._step_in_epoch,
                "global_step": global_step,
                "checkpoint": name,
                "finished": bool(finished),
            }
        )
        checkpoints = sorted(
            entry
            for entry in os.listdir(directory)
            if entry.startswith("ckpt-") and entry.endswith(".weights.h5")
        )
        for old in checkpoints[: -self.keep]:
            os.remove(os.path.join(directory, old))
        self._steps_since_save = 0

    def _global_step(self):
        return keras.ops.convert_to_numpy(self.model.optimizer.iterations.value)

    # ----------------------------------------------------------------------------------
    # Restoring.
    def on_train_begin(self, logs=None):
        self._epoch = 0
        self._step_in_epoch = 0
        self._steps_since_save = 0
        state = self.read_state()
        self.restored_state = state
        if state is None:
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self._directory(), state["checkpoint"]))
        # The same hook keras.callbacks.BackupAndRestore uses to skip finished epochs.
        keras_compat.set_initial_epoch(self.model, state["epoch"])
        self._epoch = state["epoch"]
        self._step_in_epoch = state["step_in_epoch"]
        if state["step_in_epoch"]:
            self._skip_batches(state["step_in_epoch"])

    def _skip_batches(self, count):
        """Make the next `count` training calls draw their batches without training."""
        steps_per_execution = int(getattr(self.model, "steps_per_execution", 1) or 1)
        if count % steps_per_execution:
            raise ValueError(
                "The backup was taken in the middle of a multi-step execution; resume "
                "with the steps_per_execution it was saved with. "
                f"Received: step_in_epoch={count}, steps_per_execution={steps_per_execution}"
            )
        self._steps_to_skip = count
        original = self.model.train_function
        self._original_train_function = original

        def skip_then_train(iterator):
            if self._steps_to_skip > 0:
                for _ in range(steps_per_execution):
                    next(iterator)
                self._steps_to_skip -= steps_per_execution
                return {}
            self._restore_train_function()
            return original(iterator)

        self.model.train_function = skip_then_train

    def _restore_train_function(self):
        if self._original_train_function is not None:
            self.model.train_function = self._original_train_function
            self._original_train_function = None

    # ----------------------------------------------------------------------------------
    # Saving.
    def on_epoch_begin(self, epoch, logs=None):
        if epoch != self._epoch:
            self._step_in_epoch = 0
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._steps_to_skip > 0 or self._original_train_function is not None:
            # A skipped batch (already trained on before the resume).
            return
        done = batch + 1  # `batch` is the last step of the execution (0-based).
        self._steps_since_save += done - self._step_in_epoch
        self._step_in_epoch = done
        if self.save_freq == "epoch" or self._steps_since_save < self.save_freq:
            return
        if not _loss_is_finite(logs):
            return  # Never overwrite a good backup with a diverged state.
        self._save()

    def on_epoch_end(self, epoch, logs=None):
        self._restore_train_function()
        self._epoch = epoch + 1
        self._step_in_epoch = 0
        if _loss_is_finite(logs):
            self._save()

    def on_train_end(self, logs=None):
        self._restore_train_function()
        keras_compat.set_initial_epoch(self.model, None)
        if self.model.stop_training and not _loss_is_finite(logs):
            return
        if self.delete_on_finish:
            directory = self._directory()
            if os.path.isdir(directory):
                for entry in os.listdir(directory):
                    if entry == STATE_FILE or entry.startswith(("ckpt-", ".partial-")):
                        os.remove(os.path.join(directory, entry))
            return
        state = self.read_state()
        if state is not None and self._step_in_epoch == 0 and state["epoch"] == self._epoch:
            state["finished"] = not self.model.stop_training
            self._write_state(state)


def read_backup_state(backup_dir):
    """The state of the latest backup in `backup_dir` (see `BackupAndRestore.read_state`).

    Args:
        backup_dir: str. A `BackupAndRestore` directory.

    Returns:
        `None` when there is no backup, else the state dict.
    """
    path = os.path.join(backup_dir, STATE_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as file:
        state = json.load(file)
    if not os.path.exists(os.path.join(backup_dir, state["checkpoint"])):
        raise FileNotFoundError(
            f"The backup state {path} points at a missing file. "
            f"Received: checkpoint={state['checkpoint']!r}"
        )
    return state


def _loss_is_finite(logs):
    loss = (logs or {}).get("loss")
    if loss is None:
        return True
    try:
        return math.isfinite(float(loss))
    except (TypeError, ValueError):
        return True
