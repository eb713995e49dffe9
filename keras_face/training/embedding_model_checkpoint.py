"""Save the embedding model (the deployable part) after every epoch, and the best one."""

import json
import math
import os

import keras

from keras_face.training.atomic_write import atomic_write
from keras_face.training.strategy import is_chief

BEST_SCORE_FILE = "best.json"


class EmbeddingModelCheckpoint(keras.callbacks.Callback):
    """Save the embedding model as `last.keras` every epoch and `best.keras` when it improves.

    The saved model is the backbone alone (images to embeddings). It loads with
    `keras.saving.load_model` once the package's layers are registered, i.e. after
    `import keras_face.models` (Keras imports no third-party module by itself).
    Files are written under a temporary name and renamed, so a crash never leaves a
    truncated model. In a multi-worker run only the chief writes.

    The best score is kept beside the model in `best.json` (`{"monitor", "best",
    "epoch"}`) and read back at the start of `fit`, so a resumed run never replaces
    `best.keras` by a worse epoch than one saved before the interruption.

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

    @property
    def best_score_path(self):
        return os.path.join(self.directory, BEST_SCORE_FILE)

    def _save(self, path):
        model = self.embedding_model or self.model.embedding_model
        os.makedirs(self.directory, exist_ok=True)
        with atomic_write(path) as temporary:
            model.save(temporary)

    def _read_best_score(self):
        """The best score saved by an earlier `fit` in this folder (same monitor), if any."""
        if self.monitor is None or not os.path.exists(self.best_score_path):
            return
        if not os.path.exists(self.best_path):
            return
        with open(self.best_score_path) as file:
            saved = json.load(file)
        if saved.get("monitor") == self.monitor and saved.get("mode", "max") == self.mode:
            self.best = float(saved["best"])
            self.best_epoch = saved.get("epoch")

    def _write_best_score(self):
        with atomic_write(self.best_score_path) as temporary, open(temporary, "w") as file:
            json.dump(
                {
                    "monitor": self.monitor,
                    "mode": self.mode,
                    "best": self.best,
                    "epoch": self.best_epoch,
                },
                file,
            )

    def on_train_begin(self, logs=None):
        if self.best is None:
            self._read_best_score()

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
            self._write_best_score()
