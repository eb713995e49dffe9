"""Write the current learning rate into the epoch logs (CSV, TensorBoard, History)."""

import keras


class LearningRateLogger(keras.callbacks.Callback):
    """Add `"learning_rate"` (the rate of the next optimizer step) to each epoch's logs.

    List it before `CSVLogger` and `TensorBoard` so that they record it.

    Example:
        ```python
        callbacks = [keras_face.training.LearningRateLogger(), keras.callbacks.CSVLogger("log.csv")]
        ```
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        optimizer = self.model.optimizer
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
