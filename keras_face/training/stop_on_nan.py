"""Stop training at the first non-finite loss, with a message that says where and what to try."""

import math

import keras

from keras_face.errors import KerasFaceError


class TrainingDivergedError(KerasFaceError, RuntimeError):
    """Raised when the training loss became NaN or infinite (see `StopOnNaN`).

    Its message says where training stopped and what to try; the `keras-face` command
    prints it without a traceback.

    Example:
        ```python
        try:
            model.fit(dataset, epochs=2, callbacks=[keras_face.training.StopOnNaN()])
        except keras_face.training.TrainingDivergedError as error:
            print(error)
        ```
    """


ADVICE = (
    "lower the learning rate (optimizer.learning_rate, e.g. half of it) or add a warm-up "
    "(schedule.warmup_epochs=1)",
    "clip the gradients (optimizer.global_clipnorm=5, as insightface's arcface_torch)",
    "check the data: corrupt or blank images, labels outside [0, num_classes)",
    "under mixed_float16, try training.mixed_precision=mixed_bfloat16 or null (float32)",
    "with a large margin on few or noisy identities, try a smaller margin or "
    "head.fallback=easy (ArcFace), or start from a NormFace/softmax model",
)


class StopOnNaN(keras.callbacks.Callback):
    """Stop `fit` at the first batch whose loss is NaN or infinite and explain what to try.

    Unlike `keras.callbacks.TerminateOnNaN`, which only stops, this callback records
    where it happened (epoch, step in the epoch, optimizer step, learning rate, dtype
    policy) and, when `fit` ends, raises `TrainingDivergedError` with that information
    and a list of remedies. Put it last in the callback list so that the other callbacks
    (CSV log, backups) finish their work first. A `BackupAndRestore` never saves a
    diverged state, so its last backup is still good.

    Args:
        raise_error: bool. Raise `TrainingDivergedError` at the end of `fit` (otherwise
            only print the message and leave it in `self.message`). Defaults to `True`.
        hint: str. Extra sentence appended to the message (e.g. where the last backup
            is). Defaults to `None`.

    Example:
        ```python
        model.fit(dataset, callbacks=[..., keras_face.training.StopOnNaN()])
        ```
    """

    def __init__(self, raise_error=True, hint=None):
        super().__init__()
        self.raise_error = raise_error
        self.hint = hint
        self.message = None
        self.where = None
        self._epoch = 0
        self._epochs = None
        self._steps = None

    def set_params(self, params):
        super().set_params(params)
        self._epochs = (params or {}).get("epochs")
        self._steps = (params or {}).get("steps")

    def on_train_begin(self, logs=None):
        self.message = None
        self.where = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or self.where is not None:
            return
        loss = float(loss)
        if math.isfinite(loss):
            return
        self.model.stop_training = True
        optimizer = self.model.optimizer
        learning_rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        self.where = {
            "epoch": self._epoch + 1,
            "step": batch + 1,
            "global_step": int(keras.ops.convert_to_numpy(optimizer.iterations.value)),
            "loss": loss,
            "learning_rate": learning_rate,
            "dtype_policy": self.model.dtype_policy.name,
        }
        epochs = f"/{self._epochs}" if self._epochs else ""
        steps = f"/{self._steps}" if self._steps else ""
        lines = [
            f"Training diverged: the loss became {loss} at epoch {self._epoch + 1}{epochs}, "
            f"step {batch + 1}{steps} (optimizer step {self.where['global_step']}), "
            f"learning rate {learning_rate:.6g}, dtype policy {self.where['dtype_policy']}. "
            "Training was stopped; the weights after this step are not usable.",
            "Things to try:",
        ]
        lines += [f"  - {advice}" for advice in ADVICE]
        if self.hint:
            lines.append(self.hint)
        self.message = "\n".join(lines)

    def on_train_end(self, logs=None):
        if self.message is None:
            return
        if self.raise_error:
            raise TrainingDivergedError(self.message)
        print(self.message)
