"""Keras callback running the verification protocol on `.bin` sets during training."""

import math
import os

import keras
import numpy as np

from keras_face.evaluation.embeddings import extract_embeddings
from keras_face.evaluation.verification import verify


class VerificationCallback(keras.callbacks.Callback):
    """Evaluate verification sets every N epochs; log the metrics and keep the best model.

    At the end of every `every_n_epochs`-th epoch, each set is embedded with
    `extract_embeddings` (flip test) and scored with `verify` (10 folds). The numbers are
    written into the epoch `logs` as `"{name}_accuracy"`, `"{name}_accuracy_std"` and
    `"{name}_val_at_far_1e-3"`, so `History`, `CSVLogger`, `TensorBoard`, `EarlyStopping`
    and `ModelCheckpoint` see them: list this callback before `CSVLogger`/`TensorBoard`
    in `callbacks=[...]`. Epochs that are not evaluated log NaN under the same keys (so
    CSV columns stay fixed). When `save_best_path` is given, the embedding model is saved
    there each time the monitored accuracy improves. Full results (ROC included) are in
    `callback.results[epoch][name]`.

    Args:
        datasets: dict `{name: source}` where a source is a path to an insightface `.bin`
            file (read with `keras_face.data.read_bin`) or an `(images, issame)` tuple
            with `images` of shape `(2P, H, W, 3)` in pair order.
        embedding_model: the model mapping images to embeddings. Defaults to `None`: the
            trained model's `embedding_model` or `backbone` attribute if it has one, else
            the trained model itself (which must then output embeddings).
        every_n_epochs: int. Evaluate after every this many epochs. Defaults to `1`.
        batch_size: int. Images per forward pass. Defaults to `64`.
        flip: bool. Flip test (add the embedding of the mirrored image). Defaults to `True`.
        n_folds: int. Folds of the protocol. Defaults to `10`.
        save_best_path: str. `.keras` file receiving the best embedding model.
            Defaults to `None` (no saving).
        monitor: str. Name of the set whose accuracy selects the best model.
            Defaults to the first key of `datasets`.
        verbose: int. `1` prints one line per evaluation, `0` is silent. Defaults to `1`.

    Example:
        ```python
        callback = keras_face.evaluation.VerificationCallback(
            {"lfw": "/data/faces_emore/lfw.bin", "synthetic": (pair_images, issame)},
            embedding_model=backbone,
            save_best_path="best_backbone.keras",
        )
        training_model.fit(
            dataset, epochs=20, callbacks=[callback, keras.callbacks.CSVLogger("log.csv")]
        )
        ```
    """

    def __init__(
        self,
        datasets,
        embedding_model=None,
        every_n_epochs=1,
        batch_size=64,
        flip=True,
        n_folds=10,
        save_best_path=None,
        monitor=None,
        verbose=1,
    ):
        super().__init__()
        if not isinstance(datasets, dict) or not datasets:
            raise ValueError(
                "`datasets` must be a non-empty dict {name: path or (images, issame)}. "
                f"Received: datasets={type(datasets).__name__}"
            )
        for name, source in datasets.items():
            if not isinstance(source, (str, os.PathLike, tuple, list)):
                raise ValueError(
                    f"Dataset {name!r} must be a .bin path or an (images, issame) tuple. "
                    f"Received: {name}={type(source).__name__}"
                )
        every_n_epochs = int(every_n_epochs)
        if every_n_epochs < 1:
            raise ValueError(
                f"`every_n_epochs` must be at least 1. Received: every_n_epochs={every_n_epochs}"
            )
        monitor = next(iter(datasets)) if monitor is None else monitor
        if monitor not in datasets:
            raise ValueError(
                f"`monitor` must be one of {list(datasets)}. Received: monitor={monitor!r}"
            )
        if save_best_path is not None and not str(save_best_path).endswith(".keras"):
            raise ValueError(
                "`save_best_path` must end with `.keras`. "
                f"Received: save_best_path={save_best_path!r}"
            )
        self.datasets = dict(datasets)
        self.embedding_model = embedding_model
        self.every_n_epochs = every_n_epochs
        self.batch_size = int(batch_size)
        self.flip = bool(flip)
        self.n_folds = int(n_folds)
        self.save_best_path = save_best_path
        self.monitor = monitor
        self.verbose = int(verbose)
        self.best_accuracy = -math.inf
        self.best_epoch = None
        self.results = {}
        self._loaded = {}

    def _load(self, name):
        if name not in self._loaded:
            source = self.datasets[name]
            if isinstance(source, (str, os.PathLike)):
                from keras_face.data import read_bin

                images, issame = read_bin(source)
            else:
                images, issame = source
            images = np.asarray(images)
            issame = np.asarray(issame).astype(bool)
            if images.ndim != 4 or images.shape[0] != 2 * issame.shape[0]:
                raise ValueError(
                    f"Dataset {name!r} must hold 2 images per pair, shape (2P, H, W, C). "
                    f"Received: images.shape={images.shape}, len(issame)={issame.shape[0]}"
                )
            self._loaded[name] = (images, issame)
        return self._loaded[name]

    def _resolve_embedding_model(self):
        if self.embedding_model is not None:
            return self.embedding_model
        for attribute in ("embedding_model", "backbone"):
            candidate = getattr(self.model, attribute, None)
            if candidate is not None:
                return candidate
        return self.model

    def evaluate(self):
        """Run every set now and return `{name: verify(...) result}`."""
        model = self._resolve_embedding_model()
        results = {}
        for name in self.datasets:
            images, issame = self._load(name)
            embeddings = extract_embeddings(
                model, images, batch_size=self.batch_size, flip=self.flip, verbose=False
            )
            results[name] = verify(embeddings, issame, n_folds=self.n_folds)
        return results

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        evaluate_now = (epoch + 1) % self.every_n_epochs == 0
        results = self.evaluate() if evaluate_now else {}
        for name in self.datasets:
            result = results.get(name)
            logs[f"{name}_accuracy"] = result["accuracy"] if result else float("nan")
            logs[f"{name}_accuracy_std"] = result["accuracy_std"] if result else float("nan")
            logs[f"{name}_val_at_far_1e-3"] = result["val_at_far_1e-3"] if result else float("nan")
        if not evaluate_now:
            return
        self.results[epoch] = results
        accuracy = results[self.monitor]["accuracy"]
        improved = accuracy > self.best_accuracy
        if improved:
            self.best_accuracy = accuracy
            self.best_epoch = epoch
            if self.save_best_path is not None:
                self._resolve_embedding_model().save(self.save_best_path)
        if self.verbose:
            summary = ", ".join(
                f"{name} {result['accuracy']:.4f}+-{result['accuracy_std']:.4f} "
                f"VAL@1e-3 {result['val_at_far_1e-3']:.4f} (achieved FAR {result['far']:.1e})"
                for name, result in results.items()
            )
            note = (
                " (best, saved)"
                if improved and self.save_best_path
                else (" (best)" if improved else "")
            )
            print(f"Epoch {epoch + 1} verification: {summary}{note}")
