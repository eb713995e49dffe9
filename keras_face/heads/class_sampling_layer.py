"""`ClassSamplingLayer`: what Partial FC and the class-sharded classifier share.

Both wrap a margin head (`self.head`) whose classes a training call may sample
(`sample_rate < 1`), and both keep the same state: the step counter that keys the draw
and, per class, its column in the last training logits. That state, its reading
(`sampled_classes`, `remap_labels`) and the properties around it live here once.
"""

import keras
import numpy as np
from keras import ops


class ClassSamplingLayer(keras.layers.Layer):
    """Base of the layers that wrap a head and sample its classes in training calls.

    Subclasses set `self.head`, `self.num_classes` and `self.sample_rate` in their
    constructor and compute the logits in `call`.
    """

    @property
    def input_dtype(self):
        return "float32"

    @property
    def samples(self):
        """Whether training calls sample (`sample_rate < 1`)."""
        return self.sample_rate < 1.0

    @property
    def kernel(self):
        """The wrapped head's whole `(embedding_dim, num_classes * sub_centers)` kernel."""
        return self.head.kernel

    def build(self, input_shape):
        if not self.head.built:
            self.head.build(input_shape)
        self.step = self.add_weight(
            name="step",
            shape=(),
            dtype="int32",
            initializer="zeros",
            trainable=False,
            # Every replica counts the same step: keep the first replica's value.
            aggregation="only_first_replica",
        )
        # Column of each class in the last training logits, -1 when not sampled; the
        # last entry is a sink for padding. Holding it per class (4 bytes a class, a
        # 1/D of the kernel) keeps the state's shape independent of the batch size.
        self.class_columns = self.add_weight(
            name="class_columns",
            shape=(self.num_classes + 1,),
            dtype="int32",
            initializer=keras.initializers.Constant(-1),
            trainable=False,
            aggregation="only_first_replica",
        )

    def compute_output_shape(self, input_shape):
        return self.head.compute_output_shape(input_shape)

    @property
    def sampled_classes(self):
        """The classes of the last training step, ascending: NumPy int32 `(S_valid,)`."""
        if not self.built:
            return np.zeros((0,), np.int32)
        columns = ops.convert_to_numpy(self.class_columns.value)[: self.num_classes]
        return np.flatnonzero(columns >= 0).astype(np.int32)

    @property
    def num_sampled(self):
        """Number of classes sampled at the last training step."""
        return int(self.sampled_classes.shape[0])

    def remap_labels(self, labels):
        """Class ids to their columns in the last training logits (identity if r = 1).

        Args:
            labels: integer tensor of class ids, any shape.

        Returns:
            int32 tensor of the same shape: the column of each class among the sampled
            classes (`-1` for a class not sampled). With `sample_rate=1.0`, `labels`.
        """
        if not self.samples:
            return labels
        labels = ops.cast(labels, "int32")
        in_range = ops.logical_and(labels >= 0, labels < self.num_classes)
        return ops.take(self.class_columns, ops.where(in_range, labels, self.num_classes))
