"""The state of a classifier-free pool: G features that serve as class weights (F²C, DCQ)."""

import keras
from keras import ops

POLICIES = ("lru", "fifo")
INITIALIZERS = ("uniform", "normal")
# Stamps are rank-compressed (1..K) when the gallery counter passes this value, so that
# the int32 recency never overflows (2^30 gallery items: 34 epochs of WebFace42M).
STAMP_REBASE = 2**30
_STATE_NAMES = ("pool", "slot_ids", "stamp", "row_ptr", "cursor")


def _unit_rows(values):
    norm = ops.sqrt(ops.sum(ops.square(values), axis=-1, keepdims=True))
    return values / ops.maximum(norm, 1e-12)


@keras.saving.register_keras_serializable(package="keras_face")
class ClassPool(keras.layers.Layer):
    """A pool of `capacity` class slots holding unit features, as FIFO queue or LRU pool.

    The pool replaces a learned classifier: a gallery network writes the features of the
    current batch into the slots, and the probe network is classified against them. Two
    policies:

    - `"fifo"` (DCQ, Li et al. 2021): one row `(1, K, D)`; a batch of `n` features is
      written to slots `cursor .. cursor + n - 1` (mod K), whatever their identities;
      `K % n == 0` as the authors assert. `slot_ids` holds the identity of each entry
      (`-1`: empty), used to mask same-identity entries.
    - `"lru"` (F²C, Wang et al. 2022): two rows `(2, K, D)` and one slot per identity;
      a known identity writes its slot's next row (`row_ptr`, alternating), a new one
      takes a free slot or the least recently written one. The update is
      batch-atomic: every identity of a batch is looked up in the pool as it was before
      the batch; when an identity occurs several times the last write of each
      (row, slot) wins (deterministic, unlike the authors' CUDA `index_put`).

    The layer holds the state as non-trainable variables (`pool`, `slot_ids`, `stamp`,
    `row_ptr`, `cursor`; replica aggregation `"only_first_replica"`: every replica computes
    the same update), so checkpoints and `BackupAndRestore` keep it. Its methods are pure
    functions of a state dict, `insert(features, labels, state) -> (new_state, touched)`,
    `lookup(labels, state)`, `weight_sets(state, touched)`, and `commit(new_state)` assigns
    them: a trial update (F²C's rolled-back pass) is simply never committed.

    Args:
        capacity: int. Number of slots K.
        embedding_dim: int. Feature dimension D.
        policy: str. `"lru"` (F²C's dynamic class pool) or `"fifo"` (DCQ's queue).
            Defaults to `"lru"`.
        initializer: str. Initial rows: `"uniform"` (F²C: `torch.rand`, normalised) or
            `"normal"` (DCQ: `randn`, normalised). Defaults to `"uniform"`.
        seed: int. Seed of the initial rows. Defaults to `None`.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Example:
        ```python
        pool = keras_face.class_pools.ClassPool(capacity=8, embedding_dim=4)
        state = pool.state()
        new_state, touched = pool.insert(features, labels, state)
        slots = pool.lookup(labels, new_state)  # -1: not in the pool
        pool.commit(new_state)
        ```

    References:
        - [Wang et al., An Efficient Training Approach for Very Large Scale Face
          Recognition, CVPR 2022](https://arxiv.org/abs/2105.10375)
        - [Li et al., Dynamic Class Queue for Large Scale Face Recognition In the Wild,
          CVPR 2021](https://arxiv.org/abs/2105.11113)
    """

    def __init__(
        self,
        capacity,
        embedding_dim,
        policy="lru",
        initializer="uniform",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive int. Received: capacity={capacity!r}")
        if (
            isinstance(embedding_dim, bool)
            or not isinstance(embedding_dim, int)
            or embedding_dim < 1
        ):
            raise ValueError(
                f"embedding_dim must be a positive int. Received: embedding_dim={embedding_dim!r}"
            )
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}. Received: policy={policy!r}")
        if initializer not in INITIALIZERS:
            raise ValueError(
                f"initializer must be one of {INITIALIZERS}. Received: initializer={initializer!r}"
            )
        self.capacity = capacity
        self.embedding_dim = embedding_dim
        self.policy = policy
        self.initializer = initializer
        self.seed = seed
        self.rows = 2 if policy == "lru" else 1
        self.build()

    def build(self, input_shape=None):
        if self.built:
            return
        shape = (self.rows, self.capacity, self.embedding_dim)
        sample = keras.random.uniform if self.initializer == "uniform" else keras.random.normal
        seed = self.seed

        def unit_rows(shape, dtype=None):
            return _unit_rows(sample(shape, dtype="float32", seed=seed))

        def state(name, shape, dtype, initializer):
            return self.add_weight(
                shape=shape,
                dtype=dtype,
                initializer=initializer,
                trainable=False,
                name=name,
                aggregation="only_first_replica",
            )

        self.pool = state("pool", shape, "float32", unit_rows)
        self.slot_ids = state(
            "slot_ids", (self.capacity,), "int32", keras.initializers.Constant(-1)
        )
        self.stamp = state("stamp", (self.capacity,), "int32", "zeros")
        self.row_ptr = state("row_ptr", (self.capacity,), "int32", "zeros")
        self.cursor = state("cursor", (), "int32", "zeros")
        self.built = True

    # ----------------------------------------------------------------------------------
    # Pure functions of a state.
    def state(self):
        """The current state: dict of tensors `pool`, `slot_ids`, `stamp`, `row_ptr`, `cursor`."""
        return {name: getattr(self, name).value for name in _STATE_NAMES}

    def commit(self, state):
        """Assign every state variable from `state` (once per step)."""
        for name in _STATE_NAMES:
            getattr(self, name).assign(state[name])

    def lookup(self, labels, state):
        """Slot of each label in `state`, `-1` where absent (LRU: one slot per identity).

        Args:
            labels: int tensor `(n,)`.
            state: dict, as `state()` returns.

        Returns:
            int32 tensor `(n,)`.
        """
        labels = ops.cast(labels, "int32")
        equal = ops.equal(labels[:, None], state["slot_ids"][None, :])
        found = ops.any(equal, axis=1)
        slot = ops.cast(ops.argmax(ops.cast(equal, "int32"), axis=1), "int32")
        return ops.where(found, slot, -1)

    def weight_sets(self, state, touched):
        """The two weight sets `(W1, W2)`, each `(K, D)`, of F²C's loss (LRU pools).

        `W1` is row 0; `W2` is row 1 on the slots `touched` by the last insert (identities
        already in the pool, or repeated in the batch) and row 0 elsewhere, as the authors.
        A FIFO pool returns its one row twice.
        """
        pool = state["pool"]
        if self.rows == 1:
            return pool[0], pool[0]
        return pool[0], ops.where(touched[:, None], pool[1], pool[0])

    def insert(self, features, labels, state):
        """Write a gallery batch into the pool; nothing is assigned.

        Args:
            features: float tensor `(n, D)` of unit features (the global batch).
            labels: int tensor `(n,)` of identities (non-negative).
            state: dict, as `state()` returns.

        Returns:
            `(new_state, touched)`: `touched` is a bool `(K,)` tensor, the slots whose
            row 1 enters `W2` (LRU); all `False` for a FIFO queue.

        Raises:
            ValueError: `n` exceeds the evictable slots (LRU: `K < n`) or does not divide
                `K` (FIFO).
        """
        n = features.shape[0]
        if self.policy == "fifo":
            if n is not None and self.capacity % n != 0:
                raise ValueError(
                    f"The queue size must be a multiple of the global batch, as DCQ's authors "
                    f"assert. Received: queue_size={self.capacity}, global batch={n}"
                )
            return self._fifo_insert(features, labels, state)
        if n is not None and n > self.capacity:
            raise ValueError(
                "An LRU pool must hold a whole gallery batch. "
                f"Received: capacity={self.capacity}, gallery batch={n}"
            )
        return self._lru_insert(features, labels, state)

    def _fifo_insert(self, features, labels, state):
        n = ops.shape(features)[0]
        cursor = state["cursor"]
        slots = (cursor + ops.arange(n, dtype="int32")) % self.capacity
        pool = ops.scatter_update(state["pool"][0], slots[:, None], ops.cast(features, "float32"))[
            None
        ]
        slot_ids = ops.scatter_update(state["slot_ids"], slots[:, None], ops.cast(labels, "int32"))
        new_state = dict(state)
        new_state.update(pool=pool, slot_ids=slot_ids, cursor=(cursor + n) % self.capacity)
        return new_state, ops.zeros((self.capacity,), dtype="bool")

    def _lru_insert(self, features, labels, state):
        size = self.capacity
        labels = ops.cast(labels, "int32")
        features = ops.cast(features, "float32")
        n = ops.shape(labels)[0]
        slot_ids, stamp, row_ptr = state["slot_ids"], state["stamp"], state["row_ptr"]
        positions = ops.arange(n, dtype="int32")
        # 1. Every identity against the pool as it was before the batch.
        slot_before = self.lookup(labels, state)
        found = slot_before >= 0
        slot_index = ops.arange(size, dtype="int32")
        hit = ops.any(ops.equal(slot_index[None, :], slot_before[:, None]), axis=0)
        # 2. Occurrences inside the batch: first one, 1-based number, total count.
        same = ops.equal(labels[:, None], labels[None, :])
        first_index = ops.cast(ops.argmax(ops.cast(same, "int32"), axis=1), "int32")
        first = ops.equal(first_index, positions)
        earlier = ops.logical_and(same, positions[None, :] <= positions[:, None])
        occurrence = ops.sum(ops.cast(earlier, "int32"), axis=1)
        total = ops.sum(ops.cast(same, "int32"), axis=1)
        last = ops.equal(occurrence, total)
        # 3. New identities take the free slots in slot order, then the least recently
        #    written slots not hit by this batch (keys unique except among hit slots, which
        #    are never allocated since n <= K).
        is_new = ops.logical_and(first, ops.logical_not(found))
        new_rank = ops.cumsum(ops.cast(is_new, "int32")) - 1
        key = ops.where(
            slot_ids < 0,
            slot_index - size,
            ops.where(hit, ops.full((size,), 2**31 - 1, dtype="int32"), stamp),
        )
        allocation = ops.cast(ops.argsort(key), "int32")
        slot_first = ops.where(found, slot_before, ops.take(allocation, ops.maximum(new_rank, 0)))
        slot = ops.take(slot_first, first_index)
        # 4. Rows: occurrence k of an identity writes row (p0 + k - 1) mod 2.
        start_row = ops.where(found, ops.take(row_ptr, slot), 0)
        row = (start_row + occurrence - 1) % 2
        pair = slot * 2 + row
        later_same_pair = ops.logical_and(
            ops.equal(pair[:, None], pair[None, :]), positions[None, :] > positions[:, None]
        )
        writes = ops.logical_not(ops.any(later_same_pair, axis=1))
        sink = 2 * size
        rows = ops.reshape(ops.transpose(state["pool"], (1, 0, 2)), (2 * size, -1))
        rows = ops.concatenate([rows, ops.zeros_like(rows[:1])], axis=0)
        rows = ops.scatter_update(rows, ops.where(writes, pair, sink)[:, None], features)
        pool = ops.transpose(ops.reshape(rows[:sink], (size, 2, -1)), (1, 0, 2))
        # 5. Per-slot state, written once per identity (a sink entry takes the rest).
        first_slot = ops.where(first, slot, size)[:, None]
        last_slot = ops.where(last, slot, size)[:, None]

        def write(values, index, updates):
            extended = ops.concatenate([values, ops.zeros_like(values[:1])], axis=0)
            return ops.scatter_update(extended, index, ops.cast(updates, values.dtype))[:size]

        new_slot_ids = write(slot_ids, first_slot, labels)
        new_row_ptr = write(row_ptr, first_slot, (start_row + total) % 2)
        cursor = state["cursor"]
        new_stamp = write(stamp, last_slot, cursor + positions + 1)
        touched = write(
            ops.zeros((size,), dtype="int32"),
            first_slot,
            ops.logical_or(found, total >= 2),
        )
        cursor = cursor + n
        # 6. Keep the int32 recency far from overflow: rank-compress it when needed.
        ranks = ops.cast(ops.argsort(ops.argsort(new_stamp)), "int32") + 1
        rebase = cursor > STAMP_REBASE
        new_stamp = ops.where(rebase, ops.where(new_slot_ids >= 0, ranks, 0), new_stamp)
        cursor = ops.where(rebase, size + 1, cursor)
        new_state = {
            "pool": pool,
            "slot_ids": new_slot_ids,
            "stamp": new_stamp,
            "row_ptr": new_row_ptr,
            "cursor": ops.cast(cursor, "int32"),
        }
        return new_state, ops.cast(touched, "bool")

    def recency(self, state=None):
        """`[(identity, slot)]` from the most to the least recently written (NumPy; tests).

        Args:
            state: dict. Defaults to the current state.
        """
        state = state or self.state()
        slot_ids = ops.convert_to_numpy(state["slot_ids"])
        stamp = ops.convert_to_numpy(state["stamp"])
        occupied = [int(slot) for slot in range(self.capacity) if slot_ids[slot] >= 0]
        occupied.sort(key=lambda slot: -int(stamp[slot]))
        return [(int(slot_ids[slot]), slot) for slot in occupied]

    def compute_output_shape(self, input_shape):
        return (self.rows, self.capacity, self.embedding_dim)

    def call(self, inputs=None):
        """The pool rows `(rows, K, D)` (the layer is used through its methods)."""
        return self.pool.value

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "capacity": self.capacity,
                "embedding_dim": self.embedding_dim,
                "policy": self.policy,
                "initializer": self.initializer,
                "seed": self.seed,
            }
        )
        return config
