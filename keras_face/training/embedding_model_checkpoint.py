"""Save the embedding model (the deployable part) after every epoch, and the best one."""

import math
import os

import keras

from keras_face.training.strategy import is_chief


class EmbeddingModelCheckpoint(keras.callbacks.Callback):
    """Save the embedding model as `last.keras` every epoch and `best.keras` when it improves.

    The saved model is the backbone alone (images to embeddings), loadable with
    `keras.saving.load_model` without custom objects. Files are written under a
    temporary name and renamed, so a crash never leaves a truncated model. In a
    multi-worker run only the chief writes.

    Args:
        directory: str. Output directory.
        embedding_model: `keras.Model`. Defaults to the training model's
            `embedding_model` attribute.
        monitor: str. Epoch log key that decides "best", e.g. `"heldout_accuracy"`
            (written by `keras_face.evaluation.VerificationCallback`). Defaults to
            `None` (no best model).
        mode: str. `"max"` or `"min"`. Defaults to `"max"`.
        save_last: bool. Save `last.keras` every epoch. Defaults to `True`.

    Example:
        ```python
        checkpoint = keras_face.training.EmbeddingModelCheckpoint(
            "run/models", monitor="lfw_accuracy")
        ```
    """

    def __init__(self, directory, embedding_model=None, monitor=None, mode="max", save_last=True):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min'. Received: mode={mode!r}")
        self.directory = os.fspath(directory)
        self.embedding_model = embedding_model
        self.monitor = monitor
        self.mode = mode
        self.save_last = save_last
        self.best = None
        self.best_epoch = None

    @property
    def last_path(self):
        return os.path.join(self.directory, "last.keras")

    @property
    def best_path(self):
        return os.path.join(self.directory, "best.keras")

    def _save(self, path):
        model = self.embedding_model or self.model.embedding_model
        os.makedirs(self.directory, exist_ok=True)
        temporary = os.path.join(self.directory, f".partial-{os.path.basename(path)}")
        model.save(temporary)
        os.replace(temporary, path)

    def _improved(self, value):
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        if not is_chief(self.model.distribute_strategy):
            return
        if self.save_last:
            self._save(self.last_path)
        if self.monitor is None:
            return
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        if self._improved(float(value)):
            self.best = float(value)
            self.best_epoch = epoch + 1
            self._save(self.best_path)
