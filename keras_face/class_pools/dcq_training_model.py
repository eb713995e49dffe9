"""DCQ: a dynamic class queue of gallery features as the classifier (Li et al., CVPR 2021)."""

import keras
from keras import ops

from keras_face.class_pools.class_pool import ClassPool
from keras_face.class_pools.probe_gallery import ProbeGalleryModel
from keras_face.heads import backend_ops
from keras_face.heads.cos_face import CosFace

# dcq.py: `l_neg * (1 - mask) + (-1e9) * mask` on the cosines, before the scale.
MASKED_COSINE = -1e9


def margin_head_from(margin_head, default):
    """A stateless margin head for its `target_logits` (never built: it has no kernel)."""
    head = default if margin_head is None else margin_head
    if isinstance(head, dict):
        head = keras.saving.deserialize_keras_object(head)
    if not hasattr(head, "target_logits") or not hasattr(head, "logit_scale"):
        raise ValueError(
            "margin_head must be a keras_face.heads margin head (CosFace, ArcFace, ...). "
            f"Received: margin_head={head!r}"
        )
    base = type(head).__mro__
    for method in ("build_state", "update_state"):
        owner = next(cls for cls in base if method in cls.__dict__)
        if owner.__name__ != "MarginHead":
            raise ValueError(
                "A pool's margin head must be stateless (its target logit only); "
                f"{type(head).__name__} keeps batch statistics. Received: margin_head={head!r}"
            )
    return head


def check_labels(labels, num_classes, name):
    """Labels in `[0, num_classes)`, checked also inside a compiled step."""
    labels = ops.cast(labels, "int32")
    if num_classes is None:
        return labels
    return backend_ops.check_label_range(labels, num_classes, name)


@keras.saving.register_keras_serializable(package="keras_face")
class DCQTrainingModel(ProbeGalleryModel):
    """DCQ training: a CosFace over `[positive key, queue]`, with the queue as classifier.

    One step, in the authors' order (bilylee/DCQ `DCQ.forward`):

    1. `q = normalize(P(query))`;
    2. `G <- m G + (1 - m) P` (m = 0.999), before G's forward pass;
    3. `k = normalize(G(key))`, no gradient: the key is another image of the same
       identity, whose G feature is the generated class weight;
    4. logits `s * [cos(q, k) - m_margin, cos(q, queue)]` with target column 0, the
       queue as it was *before* this step, entries of the same identity masked
       (cosine -1e9); the margin of column 0 is the margin head's `target_logits`
       (CosFace s = 50, m = 0.3 by default: the authors' scripts);
    5. the all-gathered keys and labels replace the oldest queue entries (FIFO, `K` a
       multiple of the global batch).

    The loss is the mean cross-entropy over the global batch; only P gets a gradient.
    The model outputs each query's loss contribution (`PrecomputedLoss`). The authors
    evaluate G, so `embedding_model` is G by default.

    Args:
        backbone: `keras.Model` from images to embeddings (P).
        queue_size: int. Queue length `K`, a multiple of the global batch.
            Defaults to `8192` (train_scripts/*.sh; 9.6 % of MS1MV2's identities).
        momentum: float. Rate of G's moving average. Defaults to `0.999` (`--dcq-momentum`).
        margin_head: a stateless `keras_face.heads` head whose `target_logits` and
            scale make the positive logit. Defaults to
            `CosFace(num_classes=1, scale=50.0, margin=0.3)` (the authors' scripts).
        num_classes: int. When given, labels outside `[0, num_classes)` raise an error.
            Defaults to `None`.
        embedding: str. `"gallery"` (the authors' evaluation) or `"probe"`.
            Defaults to `"gallery"`.
        seed: int. Seed of the initial queue. Defaults to `None`.
        **kwargs: other keyword arguments of `keras.Model`.

    Inputs are a dict `{"query_images": (B, ...), "key_images": (B, ...),
    "labels": (B,)}` (`keras_face.class_pools.make_pair_dataset`).

    Example:
        ```python
        model = keras_face.class_pools.DCQTrainingModel(backbone, queue_size=1024)
        model.compile(optimizer=keras_face.training.L2SGD(0.06, l2=1e-4))
        model.fit(keras_face.class_pools.make_pair_dataset(images, labels, 128, epochs=5))
        ```

    References:
        - [Li et al., Dynamic Class Queue for Large Scale Face Recognition In the Wild,
          CVPR 2021](https://arxiv.org/abs/2105.11113)
    """

    def __init__(
        self,
        backbone,
        queue_size=8192,
        momentum=0.999,
        margin_head=None,
        num_classes=None,
        embedding="gallery",
        seed=None,
        **kwargs,
    ):
        kwargs.setdefault("name", "dcq_training_model")
        super().__init__(backbone, momentum, embedding, **kwargs)
        head = margin_head_from(margin_head, CosFace(num_classes=1, scale=50.0, margin=0.3))
        dim = int(backbone.outputs[0].shape[-1])
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(
                f"queue_size must be a positive int. Received: queue_size={queue_size!r}"
            )
        self.queue_size = queue_size
        self.num_classes = num_classes
        self.seed = seed
        self.queue = ClassPool(
            queue_size, dim, policy="fifo", initializer="normal", seed=seed, name="queue"
        )
        # Not tracked: an unbuilt head with no weights; only its formula is used.
        object.__setattr__(self, "_margin_head", head)
        self.built = True

    @property
    def margin_head(self):
        """The margin head whose `target_logits` gives the positive logit."""
        return self._margin_head

    def call(self, inputs, training=None):
        training = bool(training)
        labels = check_labels(inputs["labels"], self.num_classes, self.name)
        queries = self.probe_features(inputs["query_images"], training)
        if training:
            self.update_gallery()
        keys = self.gallery_features(inputs["key_images"], training)
        all_keys, all_labels = self.all_gather(keys), self.all_gather(labels)
        if all_keys.shape[0] is not None and self.queue_size % all_keys.shape[0] != 0:
            raise ValueError(
                "queue_size must be a multiple of the global batch, as DCQ's authors assert. "
                f"Received: queue_size={self.queue_size}, global batch={all_keys.shape[0]}"
            )
        state = self.queue.state()
        losses = self.query_losses(queries, keys, labels, state)
        if training:
            new_state, _ = self.queue.insert(all_keys, all_labels, state)
            self.queue.commit(new_state)
        return losses

    def query_losses(self, queries, keys, labels, state):
        """Per-query cross-entropy over `[key, queue]` with target 0 (before the enqueue)."""
        head = self._margin_head
        positive = ops.sum(queries * keys, axis=1)
        ones = ops.ones_like(positive)[:, None]
        positive_logit = head.target_logits(positive, ones)
        queue = state["pool"][0]
        same = ops.equal(labels[:, None], state["slot_ids"][None, :])
        negatives = ops.where(same, MASKED_COSINE, ops.matmul(queries, ops.transpose(queue)))
        logits = ops.concatenate(
            [positive_logit[:, None], head.logit_scale(ones) * negatives], axis=1
        )
        return ops.logsumexp(logits, axis=1) - positive_logit

    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.probe),
            "queue_size": self.queue_size,
            "momentum": self.momentum,
            "margin_head": keras.saving.serialize_keras_object(self._margin_head),
            "num_classes": self.num_classes,
            "embedding": self.embedding,
            "seed": self.seed,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        backbone = keras.saving.deserialize_keras_object(
            config.pop("backbone"), custom_objects=custom_objects
        )
        return cls(backbone, **config)
