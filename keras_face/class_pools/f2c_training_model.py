"""F²C: a dynamic class pool of gallery features as the classifier (Wang et al., CVPR 2022)."""

import keras
from keras import ops

from keras_face.class_pools.class_pool import ClassPool
from keras_face.class_pools.dcq_training_model import check_labels
from keras_face.class_pools.dcq_training_model import margin_head_from
from keras_face.class_pools.probe_gallery import ProbeGalleryModel
from keras_face.heads import backend_ops
from keras_face.heads.cos_face import CosFace

UNTOUCHED_ROWS = ("row0", "latest")


def default_hard_negatives(pool_size):
    """The authors' `h = min(max(int(0.0002 K), 3), 10)` of the top-h cosine loss."""
    return min(max(int(pool_size * 0.0002), 3), 10)


@keras.saving.register_keras_serializable(package="keras_face")
class F2CTrainingModel(ProbeGalleryModel):
    """F²C training: a probe net classified against an LRU pool of gallery features.

    Each step takes `B` identities with two images each (identity loader) and `B`
    instances, and forms `x = [id image 1, first half of the instances]`,
    `y = [id image 2, second half]` (1.5 B each). Then, in the authors' order
    (tiandunx/FFC `FFC.forward`):

    1. **trial pass**: `p = P(x)`; G's moving average (once per step, m = 0.99); G(y)
       all-gathered is written into the pool *tentatively* (never committed: the
       authors' roll-back); the x probes are scored against it;
    2. **commit pass**: `p = P(y)`; G(x) is written into the pool for good; the y probes
       are scored against it.

    A probe whose identity holds a slot gets a margin cross-entropy over the K slots
    (the margin head's `target_logits`); one that does not gets the mean of its `h`
    largest cosines to the pool, clipped at 0 (a push away from the nearest classes).
    Each pass scores the probes against two weight sets, `W1` (row 0) and `W2` (row 1 on
    the slots written by the pass), so the step loss sums 8 terms. The means are over the
    global batch (replica-invariant; the authors' DDP takes per-GPU means). Only P gets a
    gradient. The model outputs per-probe loss contributions (`PrecomputedLoss`).

    Args:
        backbone: `keras.Model` from images to embeddings (P).
        pool_size: int. Slots K, at least 1.5 times the global batch `B`.
        momentum: float. Rate of G's moving average. Defaults to `0.99` (`--alpha`).
        margin_head: a stateless `keras_face.heads` head (scale and target logit).
            Defaults to `CosFace(num_classes=1, scale=32.0, margin=0.4)` (the class
            default of `ffc_ddp.py`; `main.py` defaults to ArcFace m = 0.5 and
            `train_ffc.sh` runs CosFace m = 0.5).
        hard_negatives: int. `h` of the top-h cosine loss; `0` drops it. Defaults to
            `None`: `min(max(int(0.0002 K), 3), 10)` (the authors').
        untouched_row: str. The row that scores slots not written by a pass: `"row0"`
            (the authors', even when row 1 is newer) or `"latest"`. Defaults to `"row0"`.
        num_classes: int. When given, labels outside `[0, num_classes)` raise an error.
            Defaults to `None`.
        embedding: str. `"probe"` (the authors' evaluation) or `"gallery"`.
            Defaults to `"probe"`.
        seed: int. Seed of the initial pool rows. Defaults to `None`.
        **kwargs: other keyword arguments of `keras.Model`.

    Inputs are a dict `{"id_images": (B, 2, ...), "id_labels": (B,),
    "instance_images": (B, ...), "instance_labels": (B,)}` with `B` even per replica
    (`keras_face.class_pools.make_dual_loader_dataset`).

    Example:
        ```python
        model = keras_face.class_pools.F2CTrainingModel(backbone, pool_size=1000)
        model.compile(optimizer=keras_face.training.L2SGD(0.1, nesterov=True, l2=1e-4))
        model.fit(keras_face.class_pools.make_dual_loader_dataset(images, labels, 64, 5))
        ```

    References:
        - [Wang et al., An Efficient Training Approach for Very Large Scale Face
          Recognition, CVPR 2022](https://arxiv.org/abs/2105.10375)
    """

    def __init__(
        self,
        backbone,
        pool_size,
        momentum=0.99,
        margin_head=None,
        hard_negatives=None,
        untouched_row="row0",
        num_classes=None,
        embedding="probe",
        seed=None,
        **kwargs,
    ):
        kwargs.setdefault("name", "f2c_training_model")
        super().__init__(backbone, momentum, embedding, **kwargs)
        head = margin_head_from(margin_head, CosFace(num_classes=1, scale=32.0, margin=0.4))
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(f"pool_size must be a positive int. Received: pool_size={pool_size!r}")
        if hard_negatives is not None and (
            isinstance(hard_negatives, bool)
            or not isinstance(hard_negatives, int)
            or not 0 <= hard_negatives <= pool_size
        ):
            raise ValueError(
                f"hard_negatives must be an int in [0, pool_size={pool_size}] or None. "
                f"Received: hard_negatives={hard_negatives!r}"
            )
        if untouched_row not in UNTOUCHED_ROWS:
            raise ValueError(
                f"untouched_row must be one of {UNTOUCHED_ROWS}. "
                f"Received: untouched_row={untouched_row!r}"
            )
        dim = int(backbone.outputs[0].shape[-1])
        self.pool_size = pool_size
        self.hard_negatives = hard_negatives
        self.num_hard_negatives = (
            default_hard_negatives(pool_size) if hard_negatives is None else hard_negatives
        )
        self.untouched_row = untouched_row
        self.num_classes = num_classes
        self.seed = seed
        self.pool = ClassPool(
            pool_size, dim, policy="lru", initializer="uniform", seed=seed, name="class_pool"
        )
        # Not tracked: an unbuilt head with no weights; only its formula is used.
        object.__setattr__(self, "_margin_head", head)
        self.built = True

    @property
    def margin_head(self):
        """The margin head of the in-pool cross-entropy."""
        return self._margin_head

    def _split(self, inputs):
        id_images = inputs["id_images"]
        instances = inputs["instance_images"]
        half = instances.shape[0]
        if half is not None and half % 2:
            raise ValueError(
                "F2CTrainingModel splits each replica's instance batch into halves, so the "
                f"local batch must be even. Received: local batch={half}"
            )
        half = ops.shape(instances)[0] // 2
        id_labels = check_labels(inputs["id_labels"], self.num_classes, self.name)
        instance_labels = check_labels(inputs["instance_labels"], self.num_classes, self.name)
        x = ops.concatenate([id_images[:, 0], instances[:half]], axis=0)
        y = ops.concatenate([id_images[:, 1], instances[half:]], axis=0)
        x_labels = ops.concatenate([id_labels, instance_labels[:half]], axis=0)
        y_labels = ops.concatenate([id_labels, instance_labels[half:]], axis=0)
        return x, y, x_labels, y_labels

    def _check_pool_size(self, gallery_batch):
        global_batch = None if gallery_batch is None else (2 * gallery_batch) // 3
        if global_batch is not None and 2 * self.pool_size < 3 * global_batch:
            raise ValueError(
                "The pool must hold at least 1.5 times the global batch (one gallery batch "
                f"of 1.5 B identities). Received: pool_size={self.pool_size}, "
                f"global batch={global_batch}"
            )

    def call(self, inputs, training=None):
        training = bool(training)
        x, y, x_labels, y_labels = self._split(inputs)
        # 1. Trial pass: G(y) written to a state that is never committed.
        probes = self.probe_features(x, training)
        if training:
            self.update_gallery()
        gallery = self.all_gather(self.gallery_features(y, training))
        self._check_pool_size(gallery.shape[0])
        state = self.pool.state()
        trial, touched = self.pool.insert(gallery, self.all_gather(y_labels), state)
        trial_part = self.pass_contributions(
            probes, self.pool_weights(trial, touched), self.pool.lookup(x_labels, trial)
        )
        # 2. Commit pass: G(x) written for good.
        probes = self.probe_features(y, training)
        gallery = self.all_gather(self.gallery_features(x, training))
        new_state, touched = self.pool.insert(gallery, self.all_gather(x_labels), state)
        if training:
            self.pool.commit(new_state)
        commit_part = self.pass_contributions(
            probes, self.pool_weights(new_state, touched), self.pool.lookup(y_labels, new_state)
        )
        return trial_part + commit_part

    def pool_weights(self, state, touched):
        """`(W1, W2)` of a pass; untouched slots read row 0 or their newer row."""
        first, second = self.pool.weight_sets(state, touched)
        if self.untouched_row == "row0":
            return first, second
        rows = state["pool"]
        # row_ptr is the next row to write, so the newer feature is the other row.
        newest = ops.where((state["row_ptr"] == 0)[:, None], rows[1], rows[0])
        newest = ops.where((state["slot_ids"] >= 0)[:, None], newest, rows[0])
        return ops.where(touched[:, None], first, newest), ops.where(
            touched[:, None], second, newest
        )

    def pass_contributions(self, probes, weight_sets, slots):
        """Each probe's share of one pass's loss, times the global number of probes.

        In-pool probes: margin cross-entropy over the K slots, divided by the global
        number of in-pool probes; the others: mean of the top-h cosines clipped at 0,
        divided by the global number of out-of-pool probes; summed over the weight sets.
        """
        head = self._margin_head
        in_pool = slots >= 0
        counts = ops.stack(
            [
                ops.sum(ops.cast(in_pool, "float32")),
                ops.sum(ops.cast(ops.logical_not(in_pool), "float32")),
                ops.cast(ops.shape(slots)[0], "float32"),
            ]
        )
        counts = backend_ops.cross_replica_sum(counts)
        n_in = ops.maximum(counts[0], 1.0)
        n_out = ops.maximum(counts[1], 1.0)
        target = ops.maximum(slots, 0)
        target_mask = ops.one_hot(target, self.pool_size) > 0.5
        ones = ops.ones_like(probes[:, :1])
        h = self.num_hard_negatives
        total = 0.0
        for weights in weight_sets:
            cosine = ops.matmul(probes, ops.transpose(weights))
            target_cosine = ops.sum(ops.where(target_mask, cosine, 0.0), axis=1)
            target_logit = head.target_logits(target_cosine, ones)
            logits = ops.where(target_mask, target_logit[:, None], head.logit_scale(ones) * cosine)
            cross_entropy = ops.logsumexp(logits, axis=1) - target_logit
            if h > 0:
                top, _ = ops.top_k(cosine, h)
                negative = ops.sum(ops.maximum(top, 0.0), axis=1) / h
            else:
                negative = ops.zeros_like(cross_entropy)
            total = total + ops.where(in_pool, cross_entropy / n_in, negative / n_out)
        return counts[2] * total

    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.probe),
            "pool_size": self.pool_size,
            "momentum": self.momentum,
            "margin_head": keras.saving.serialize_keras_object(self._margin_head),
            "hard_negatives": self.hard_negatives,
            "untouched_row": self.untouched_row,
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
