"""A `fit` callback that raises the label errors XLA-compiled steps could only count."""

import keras

from keras_face.heads.base import MarginHead


def margin_heads_of(model):
    """Every `MarginHead` in `model`, nested models included, each once."""
    found, seen, pending = [], set(), [model]
    while pending:
        layer = pending.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, MarginHead):
            found.append(layer)
        pending.extend(getattr(layer, "layers", ()))
    return found


class LabelRangeCheck(keras.callbacks.Callback):
    """Raise after a `fit` batch in which a head counted labels it could not reject.

    A margin head rejects a label outside `[0, num_classes)`, or labels of another length
    than the embeddings, with an error inside the call in every mode but one: under
    TensorFlow's XLA (`jit_compile=True`, and `fit`'s default `"auto"` on a machine with
    a GPU) no check can raise inside the compiled step. There the head clips the label
    into range, stops the gradient of that row (no weight becomes non-finite, even where
    the loss is NaN) and counts it on the device (`MarginHead.invalid_labels`). This
    callback reads the count of every head of the model after each training and
    evaluation batch (one small device-to-host copy per head, only for heads that have
    been compiled with XLA) and raises the head's `ValueError`, naming the bad label
    and `num_classes` (or both batch sizes), through `fit`.

    Example:
        ```python
        model.compile(optimizer="sgd", loss=loss, jit_compile=True)
        model.fit(dataset, callbacks=[keras_face.heads.LabelRangeCheck()])
        ```
    """

    def __init__(self):
        super().__init__()
        self._heads = None

    def set_model(self, model):
        super().set_model(model)
        self._heads = margin_heads_of(model)

    def check(self):
        """Raise the first counted error of the model's heads (every head's count is reset)."""
        errors = []
        for head in self._heads or ():
            try:
                head.raise_for_invalid_labels()
            except ValueError as error:
                errors.append(error)
        if errors:
            raise errors[0]

    def on_train_batch_end(self, batch, logs=None):
        self.check()

    def on_test_batch_end(self, batch, logs=None):
        self.check()
