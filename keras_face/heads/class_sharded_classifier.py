"""A class-sharded margin head: the kernel split by classes over a device mesh (JAX).

`ClassShardedClassifier(head, sample_rate, num_shards)` is the model-parallel classifier
of insightface's `arcface_torch`, written with Keras' distribution API: the head's
`(D, C)` kernel is laid out `(None, "model")`, so device `s` holds the columns of classes
`s*C/n ... (s+1)*C/n - 1`, and its optimizer slots alike. With `sample_rate=1` the head
is called unchanged and XLA's partitioner (GSPMD) keeps the product, the kernel gradient
and the update on each device's shard. With `sample_rate < 1` every shard samples its
own classes (Partial FC per shard): all positives of the global batch that fall in the
shard plus `int(sample_rate * C/n)` classes in all, drawn by a stateless generator keyed
by `(seed, step, shard)`.
"""

import keras
import numpy as np
from keras import ops

from keras_face.heads.base import MarginHead
from keras_face.heads.class_sampling_layer import ClassSamplingLayer
from keras_face.heads.partial_fc import PADDING_LOGIT
from keras_face.heads.partial_fc import _validate_sample_rate
from keras_face.heads.partial_fc import sampling_keys
from keras_face.heads.partial_fc import select_classes


def _kernel_shards(axis_name):
    """Size of the mesh axis that shards this layer's kernel, from the active distribution."""
    distribution = keras.distribution.distribution()
    if distribution is None or not hasattr(distribution, "_layout_map"):
        return None
    mesh = distribution.device_mesh
    if axis_name not in mesh.axis_names:
        return None
    return int(mesh.shape[list(mesh.axis_names).index(axis_name)])


def _target_cosines(cosine, columns):
    """`cosine[i, columns_i]`, clipped straight through to [-1, 1] (`gather_target`).

    A gather along the class axis (`take_along_axis`), not from the flattened matrix
    (`MarginHead.gather_target` on JAX): XLA's partitioner keeps a class-sharded
    `(B, C)` matrix sharded through it (a reduction over the shards), where a gather
    from the flattened matrix makes it all-gather the whole `(B, C)` matrix.
    """
    columns = ops.clip(columns, 0, ops.shape(cosine)[1] - 1)
    target = ops.take_along_axis(cosine, columns[:, None], axis=1)[:, 0]
    return target + ops.stop_gradient(ops.clip(target, -1.0, 1.0) - target)


def _margin_logits(head, cosine, columns, norms):
    """The head's training logits from class cosines and target columns (no state)."""
    if not head.has_margin:
        return head.logit_scale(norms) * cosine
    target_cosine = _target_cosines(cosine, columns)
    logits = head.nontarget_logits(cosine, target_cosine, norms)
    target = head.target_logits(target_cosine, norms)
    return head.write_target(logits, columns, ops.cast(target, "float32"))


@keras.saving.register_keras_serializable(package="keras_face")
class ClassShardedClassifier(ClassSamplingLayer):
    """A margin head whose classes are split over devices, with optional per-shard sampling.

    Wraps any `keras_face.heads` margin head (sub-centres included; stateless to sample,
    since a state would see one shard's columns only) and reuses
    its kernel and margin. Under the distribution of `model_parallel` (JAX backend) the
    kernel is laid out `(None, "model")`: each of the `n` devices of the mesh axis holds
    `(D, C*K/n)` columns, and the optimizer's slots inherit that layout, so no device
    holds (or gathers) the whole kernel. The batch is split over the same axis and the
    backbone is replicated (data parallel), as `arcface_torch`'s model parallelism.

    - `sample_rate=1`: the head's own logits, `(batch, num_classes)`; the partitioner
      computes each shard's columns where the shard lives (all-gathered embeddings,
      local `(B, C/n)` logits, `(B,)` all-reduces for the softmax, kernel gradient and
      update local). On a sharded kernel the target cosine is read along the class
      axis, so that the `(B, C)` logits are never gathered either (same values).
    - `sample_rate < 1`: each shard keeps the classes of the global batch that it holds
      plus random others, `max(int(sample_rate * C/n), positives in the shard)` in all
      (arcface_torch's `PartialFC_V2` rank by rank). On JAX under the distribution each
      shard samples and gathers its own columns inside `jax.shard_map`; elsewhere the
      shards are computed one after the other with the same numbers. The logits are
      `(batch, n * S)` with `S = max(int(sample_rate * C/n), min(global batch, C/n))`
      columns per shard, shard after shard, each in ascending class order; padding
      columns have logit `-1e9` and no gradient. `remap_labels` gives the loss's labels
      (`keras_face.training.FaceTrainingModel` applies it on TensorFlow and PyTorch; on
      JAX it refuses heads that sample, so read `class_columns` from the state that
      `stateless_call` returns).

    `C` must divide by `n` (the error names both numbers): the kernel is not padded, so
    the shard boundaries are `arcface_torch`'s for every `C` it splits evenly.

    Args:
        head: a `keras_face.heads.MarginHead` (e.g. `ArcFace(num_classes)`); stateless
            when `sample_rate < 1`.
        sample_rate: float in `[0, 1]`. Fraction of each shard's classes in a training
            step's softmax, positives included. Defaults to `1.0` (no sampling: the
            plain model-parallel head).
        num_shards: int. Number of class shards. Defaults to `None`: the size of the
            mesh axis `axis_name` of the active distribution (1 without one).
        seed: int. Seed of the sampler. Defaults to `None`: drawn from NumPy's global
            generator (reproducible under `keras.utils.set_random_seed`).
        axis_name: str. Mesh axis that shards the classes. Defaults to `"model"`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.

    Example:
        ```python
        distribution = keras_face.heads.ClassShardedClassifier.model_parallel(
            num_classes=80_000)  # every device of the backend on one "model" axis
        with distribution.scope():
            head = keras_face.heads.ClassShardedClassifier(
                keras_face.heads.ArcFace(80_000), sample_rate=0.1, seed=0)
            model = keras_face.training.FaceTrainingModel(backbone, head)
        ```

    References:
        - [An et al., Partial FC: Training 10 Million Identities on a Single Machine,
          ICCVW 2021](https://arxiv.org/abs/2010.05222)
        - [Xu et al., GSPMD: General and Scalable Parallelization for ML Computation
          Graphs, 2021](https://arxiv.org/abs/2105.04663)
    """

    def __init__(
        self, head, sample_rate=1.0, num_shards=None, seed=None, axis_name="model", **kwargs
    ):
        super().__init__(**kwargs)
        if isinstance(head, dict):
            head = keras.saving.deserialize_keras_object(head)
        if not isinstance(head, MarginHead):
            raise ValueError(
                "ClassShardedClassifier wraps a keras_face.heads margin head. "
                f"Received: head={head!r} of type {type(head).__name__}"
            )
        if head.kernel_layout != "columns":
            # The shards are column blocks of a (D, C) kernel, laid out (None, "model").
            raise ValueError(
                "ClassShardedClassifier shards the classes of a head with "
                "kernel_layout='columns'. "
                f"Received: head {head.name!r} with kernel_layout={head.kernel_layout!r}"
            )
        self.head = head
        self.sample_rate = _validate_sample_rate(sample_rate)
        self.axis_name = str(axis_name)
        self.num_classes = head.num_classes
        if num_shards is None:
            num_shards = _kernel_shards(self.axis_name) or 1
        if isinstance(num_shards, bool) or not isinstance(num_shards, (int, np.integer)):
            raise ValueError(
                f"num_shards must be a positive integer. Received: num_shards={num_shards!r}"
            )
        if num_shards < 1:
            raise ValueError(
                f"num_shards must be a positive integer. Received: num_shards={num_shards}"
            )
        self.num_shards = int(num_shards)
        if self.num_classes % self.num_shards:
            raise ValueError(
                f"num_classes must be divisible by the number of class shards. Received: "
                f"num_classes={self.num_classes} with num_shards={self.num_shards}"
            )
        self.classes_per_shard = self.num_classes // self.num_shards
        # arcface_torch's `int(sample_rate * num_local)`, per shard.
        self.num_sample = int(self.sample_rate * self.classes_per_shard)
        if self.sample_rate > 0.0 and self.num_sample < 1:
            raise ValueError(
                "sample_rate * num_classes / num_shards must be at least 1 (or sample_rate "
                f"0 for the positives only). Received: sample_rate={self.sample_rate} with "
                f"num_classes={self.num_classes}, num_shards={self.num_shards}"
            )
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}")
        self.seed = int(seed)

    @staticmethod
    def model_parallel(
        num_classes,
        devices=None,
        axis_name="model",
        kernel_path=".*class_sharded_classifier.*kernel",
    ):
        """The `keras.distribution.ModelParallel` that splits a head's classes over devices.

        One mesh axis `axis_name` over `devices`. The variables whose path fully matches
        `kernel_path` are laid out `(None, axis_name)` (their columns split over the
        devices, their optimizer slots alike); every other variable is replicated, and
        the batch is split over the same axis (the backbone is data parallel). The
        default pattern matches the kernel of a `ClassShardedClassifier` of default
        name; pass another one for another layer name.

        Args:
            num_classes: int. Number of classes times sub-centres (the kernel's columns);
                must divide by the number of devices.
            devices: list of device strings. Defaults to `None`: every device of the
                backend (`keras.distribution.list_devices()`).
            axis_name: str. Name of the mesh axis. Defaults to `"model"`.
            kernel_path: str. Regular expression of the kernel's variable path (full
                match). Defaults to `".*class_sharded_classifier.*kernel"`.

        Returns:
            A `keras.distribution.ModelParallel`; use it with `.scope()` or
            `keras.distribution.set_distribution`.

        Example:
            ```python
            distribution = keras_face.heads.ClassShardedClassifier.model_parallel(
                num_classes=64, kernel_path=".*my_head.*kernel")
            ```
        """
        devices = keras.distribution.list_devices() if devices is None else list(devices)
        if num_classes % len(devices):
            raise ValueError(
                "num_classes must be divisible by the number of devices of the class "
                f"axis. Received: num_classes={num_classes} with {len(devices)} devices"
            )
        mesh = keras.distribution.DeviceMesh((len(devices),), (axis_name,), devices)
        layout_map = keras.distribution.LayoutMap(mesh)
        layout_map[kernel_path] = (None, axis_name)
        return keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name=axis_name)

    @property
    def columns_per_shard(self):
        """Static number of logit columns per shard in a sampled training step (for `B`)."""
        return self._columns_per_shard(None)

    def _columns_per_shard(self, global_batch):
        if global_batch is None:
            return self.num_sample if self.num_sample else self.classes_per_shard
        return max(self.num_sample, min(int(global_batch), self.classes_per_shard))

    def build(self, input_shape):
        if self.samples and type(self.head).update_state is not MarginHead.update_state:
            raise ValueError(
                "ClassShardedClassifier samples with a stateless head only (a state "
                "would see one shard's sampled columns). "
                f"Received: head={self.head.__class__.__name__} with "
                f"sample_rate={self.sample_rate}"
            )
        super().build(input_shape)

    def _local_sample(self, labels, step, shard, num_columns):
        """One shard's sampled local classes `(S,)` (padding `>= C/n`) and their count."""
        local = self.classes_per_shard
        local_labels = labels - shard * local
        keys = sampling_keys(self.seed, step * self.num_shards + shard, local)
        # Labels of other shards are out of the local range: select_classes drops them.
        return select_classes(local_labels, keys, self.num_sample, num_columns)

    def _shard_cosines(self, normalized, labels, kernel_shard, step, shard, num_columns):
        """`(B, S)` cosines of one shard's sampled columns and its `(S,)` global classes."""
        local = self.classes_per_shard
        classes, count = self._local_sample(labels, step, shard, num_columns)
        column = ops.arange(num_columns, dtype="int32")
        valid = column < count
        gather = ops.minimum(classes, local - 1)
        per_class = self.head.columns_per_class
        if per_class > 1:
            offsets = ops.arange(per_class, dtype="int32")
            gather = ops.reshape(gather[:, None] * per_class + offsets[None, :], (-1,))
        cosine = self.head.cosine_matrix(normalized, ops.take(kernel_shard, gather, axis=1))
        cosine = ops.where(valid[None, :], cosine, 0.0)
        global_classes = ops.where(valid, classes + shard * local, self.num_classes)
        return cosine, global_classes

    def _sharded_jax(self, normalized, labels, step, num_columns):
        # JAX-only: `shard_map` runs the per-shard sample and product where each kernel
        # shard lives (imported here so that the module loads on every backend).
        import jax
        from jax.sharding import PartitionSpec

        distribution = keras.distribution.distribution()
        mesh = distribution.device_mesh.backend_mesh
        axis = self.axis_name

        def per_shard(normalized, labels, kernel_shard, step):
            shard = jax.lax.axis_index(axis)
            return self._shard_cosines(normalized, labels, kernel_shard, step, shard, num_columns)

        return jax.shard_map(
            per_shard,
            mesh=mesh,
            in_specs=(PartitionSpec(), PartitionSpec(), PartitionSpec(None, axis), PartitionSpec()),
            out_specs=(PartitionSpec(None, axis), PartitionSpec(axis)),
            check_vma=False,
        )(normalized, labels, self.head.kernel.value, step)

    def _sharded_loop(self, normalized, labels, step, num_columns):
        width = self.classes_per_shard * self.head.columns_per_class
        kernel = self.head.kernel
        cosines, classes = [], []
        for shard in range(self.num_shards):
            cosine, shard_classes = self._shard_cosines(
                normalized,
                labels,
                kernel[:, shard * width : (shard + 1) * width],
                step,
                shard,
                num_columns,
            )
            cosines.append(cosine)
            classes.append(shard_classes)
        return ops.concatenate(cosines, axis=1), ops.concatenate(classes, axis=0)

    def _uses_shard_map(self):
        """Whether the kernel is laid out `(None, axis_name)` over `num_shards` devices (JAX)."""
        if keras.backend.backend() != "jax" or self.num_shards == 1:
            return False
        layout = getattr(self.head.kernel, "_layout", None)
        if tuple(getattr(layout, "axes", ())) != (None, self.axis_name):
            return False
        return _kernel_shards(self.axis_name) == self.num_shards

    def call(self, inputs, training=None):
        head = self.head
        embeddings, labels = head._split_inputs(inputs)
        if labels is None or not training:
            return head(inputs, training=training)
        if len(embeddings.shape) != 2:
            raise ValueError(
                "ClassShardedClassifier expects embeddings of rank 2. "
                f"Received: embeddings shape={tuple(embeddings.shape)}"
            )
        if not self.samples:
            if self._uses_shard_map():
                return self._full_call(embeddings, labels)
            return head(inputs, training=training)
        embeddings = ops.cast(embeddings, "float32")
        labels = head._validate_labels(labels, embeddings)
        num_columns = self._columns_per_shard(labels.shape[0])
        step = self.step.value
        normalized, norms = head.normalize(embeddings)
        if self._uses_shard_map():
            cosine, classes = self._sharded_jax(normalized, labels, step, num_columns)
        else:
            cosine, classes = self._sharded_loop(normalized, labels, step, num_columns)
        self.step.assign(step + 1)
        valid = classes < self.num_classes
        column = ops.arange(ops.shape(classes)[0], dtype="int32")
        table = ops.full((self.num_classes + 1,), -1, dtype="int32")
        table = ops.scatter_update(table, classes[:, None], ops.where(valid, column, -1))
        self.class_columns.assign(table)
        in_range = ops.logical_and(labels >= 0, labels < self.num_classes)
        target_columns = ops.take(table, ops.where(in_range, labels, self.num_classes))
        logits = _margin_logits(head, cosine, target_columns, norms)
        return ops.where(valid[None, :], logits, PADDING_LOGIT)

    def _full_call(self, embeddings, labels):
        """The head's training call with a class-axis target gather (values identical)."""
        head = self.head
        embeddings = ops.cast(embeddings, "float32")
        labels = head._validate_labels(labels, embeddings)
        normalized, norms = head.normalize(embeddings)
        cosine = head.cosine_matrix(normalized)
        if head.has_margin:
            # "Update, then use", as `MarginHead.call`.
            head.update_state(cosine, _target_cosines(cosine, labels), norms)
        return _margin_logits(head, cosine, labels, norms)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "head": keras.saving.serialize_keras_object(self.head),
                "sample_rate": self.sample_rate,
                "num_shards": self.num_shards,
                "seed": self.seed,
                "axis_name": self.axis_name,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["head"] = keras.saving.deserialize_keras_object(config["head"])
        return cls(**config)
