"""`ClassPool`: FIFO queue and batch-atomic LRU pool (Keras only: every backend)."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_face import class_pools


def numpy_state(state):
    return {key: ops.convert_to_numpy(value) for key, value in state.items()}


def unit_rows(rng, count, dim=2):
    values = rng.normal(size=(count, dim))
    return (values / np.linalg.norm(values, axis=1, keepdims=True)).astype(np.float32)


def test_state_variables_and_initial_rows():
    pool = class_pools.ClassPool(6, 3, policy="lru", seed=1)
    assert [v.name for v in pool.weights] == ["pool", "slot_ids", "stamp", "row_ptr", "cursor"]
    assert not pool.trainable_weights and len(pool.non_trainable_weights) == 5
    rows = ops.convert_to_numpy(pool.pool)
    assert rows.shape == (2, 6, 3)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=2), 1.0, rtol=1e-6)
    assert (rows >= 0).all()  # uniform [0, 1) rows, as torch.rand
    assert (ops.convert_to_numpy(pool.slot_ids) == -1).all()
    queue = class_pools.ClassPool(4, 3, policy="fifo", initializer="normal", seed=1)
    assert tuple(queue.pool.shape) == (1, 4, 3)
    assert (ops.convert_to_numpy(queue.pool) < 0).any()


def test_config_round_trip():
    pool = class_pools.ClassPool(6, 3, policy="fifo", initializer="normal", seed=3, name="q")
    clone = class_pools.ClassPool.from_config(pool.get_config())
    assert clone.get_config() == pool.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(pool))
    assert isinstance(restored, class_pools.ClassPool) and restored.policy == "fifo"


def test_fifo_writes_in_order_and_wraps():
    pool = class_pools.ClassPool(4, 2, policy="fifo")
    rng = np.random.default_rng(0)
    first, second, third = unit_rows(rng, 2), unit_rows(rng, 2), unit_rows(rng, 2)
    state = pool.state()
    for features, labels in ((first, [3, 5]), (second, [3, 7]), (third, [9, 9])):
        state, touched = pool.insert(features, np.asarray(labels, np.int32), state)
        assert not ops.convert_to_numpy(touched).any()
    state = numpy_state(state)
    np.testing.assert_array_equal(state["slot_ids"], [9, 9, 3, 7])
    np.testing.assert_array_equal(state["pool"][0], np.concatenate([third, second]))
    assert int(state["cursor"]) == 2
    # Nothing was assigned: insert is a pure function of the state.
    assert (ops.convert_to_numpy(pool.slot_ids) == -1).all()
    pool.commit(state)
    np.testing.assert_array_equal(ops.convert_to_numpy(pool.slot_ids), [9, 9, 3, 7])


def test_fifo_rejects_a_batch_that_does_not_divide_the_queue():
    pool = class_pools.ClassPool(8, 2, policy="fifo")
    with pytest.raises(ValueError, match=r"queue_size=8, global batch=3"):
        pool.insert(np.ones((3, 2), np.float32), np.zeros(3, np.int32), pool.state())


def test_lru_free_slots_then_least_recent_and_rows_alternate():
    pool = class_pools.ClassPool(3, 2, policy="lru")
    rng = np.random.default_rng(1)
    features = unit_rows(rng, 3)
    state, touched = pool.insert(features, np.asarray([5, 6, 7], np.int32), pool.state())
    assert not ops.convert_to_numpy(touched).any()  # three new identities, once each
    np.testing.assert_array_equal(ops.convert_to_numpy(state["slot_ids"]), [5, 6, 7])
    np.testing.assert_array_equal(ops.convert_to_numpy(state["row_ptr"]), [1, 1, 1])
    assert pool.recency(state) == [(7, 2), (6, 1), (5, 0)]
    # 6 is seen again (row 1 of its slot); 8 is new and evicts 5, the least recent.
    newer = unit_rows(rng, 2)
    state, touched = pool.insert(newer, np.asarray([6, 8], np.int32), state)
    values = numpy_state(state)
    np.testing.assert_array_equal(values["slot_ids"], [8, 6, 7])
    np.testing.assert_array_equal(ops.convert_to_numpy(touched), [False, True, False])
    np.testing.assert_array_equal(values["pool"][1, 1], newer[0])
    np.testing.assert_array_equal(values["pool"][0, 1], features[1])
    np.testing.assert_array_equal(values["pool"][0, 0], newer[1])
    np.testing.assert_array_equal(values["row_ptr"], [1, 0, 1])
    assert pool.recency(state) == [(8, 0), (6, 1), (7, 2)]
    first, second = pool.weight_sets(state, touched)
    np.testing.assert_array_equal(ops.convert_to_numpy(first), values["pool"][0])
    np.testing.assert_array_equal(ops.convert_to_numpy(second)[1], newer[0])
    np.testing.assert_array_equal(ops.convert_to_numpy(second)[2], values["pool"][0, 2])
    np.testing.assert_array_equal(
        ops.convert_to_numpy(pool.lookup(np.asarray([7, 5, 8], np.int32), state)), [2, -1, 0]
    )


def test_lru_repeated_identity_last_write_wins():
    # An identity three times in one batch: rows 0, 1, 0; the third write wins row 0.
    pool = class_pools.ClassPool(4, 2, policy="lru")
    features = unit_rows(np.random.default_rng(2), 3)
    state, touched = pool.insert(features, np.asarray([4, 4, 4], np.int32), pool.state())
    values = numpy_state(state)
    np.testing.assert_array_equal(values["pool"][0, 0], features[2])
    np.testing.assert_array_equal(values["pool"][1, 0], features[1])
    assert values["row_ptr"][0] == 1 and values["slot_ids"][0] == 4
    np.testing.assert_array_equal(ops.convert_to_numpy(touched), [True, False, False, False])


def test_lru_batch_atomic_corner_case():
    # K = 4 holding 10, 11, 12, 13 (10 least recent), then [20, 10]: the authors'
    # sequential LRU lets 20 evict 10 and 10 evict 11; the batch-atomic update keeps 10
    # in its slot (row 1 written) and 20 takes 11's slot. Same ids, same recency order.
    pool = class_pools.ClassPool(4, 2, policy="lru")
    rng = np.random.default_rng(1)
    first = unit_rows(rng, 4)
    state, _ = pool.insert(first, np.asarray([10, 11, 12, 13], np.int32), pool.state())
    pool.commit(state)
    assert pool.recency() == [(13, 3), (12, 2), (11, 1), (10, 0)]
    second = unit_rows(rng, 2)
    state, touched = pool.insert(second, np.asarray([20, 10], np.int32), pool.state())
    assert pool.recency(state) == [(10, 0), (20, 1), (13, 3), (12, 2)]
    np.testing.assert_array_equal(ops.convert_to_numpy(touched), [True, False, False, False])
    values = numpy_state(state)
    np.testing.assert_array_equal(values["pool"][0, 0], first[0])
    np.testing.assert_array_equal(values["pool"][1, 0], second[1])


def test_lru_recency_is_rank_compressed_before_overflow():
    pool = class_pools.ClassPool(3, 2, policy="lru")
    features = unit_rows(np.random.default_rng(3), 3)
    state, _ = pool.insert(features, np.asarray([1, 2, 3], np.int32), pool.state())
    state = dict(state)
    state["cursor"] = ops.convert_to_tensor(class_pools.class_pool.STAMP_REBASE, "int32")
    state["stamp"] = ops.convert_to_tensor(np.asarray([2**30 - 5, 2**30 - 9, 2**30 - 7], np.int32))
    state, _ = pool.insert(features[:1], np.asarray([4], np.int32), state)
    values = numpy_state(state)
    # 4 evicted 2 (the least recent); the order 4, 1, 3 survives with small stamps.
    assert pool.recency(state) == [(4, 1), (1, 0), (3, 2)]
    assert values["stamp"].max() <= 3 and int(values["cursor"]) == 4


def test_lru_rejects_a_batch_larger_than_the_pool():
    pool = class_pools.ClassPool(2, 2, policy="lru")
    with pytest.raises(ValueError, match=r"capacity=2, gallery batch=3"):
        pool.insert(np.ones((3, 2), np.float32), np.arange(3, dtype=np.int32), pool.state())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"capacity": 0}, "capacity=0"),
        ({"embedding_dim": 2.5}, "embedding_dim=2.5"),
        ({"policy": "lfu"}, "policy='lfu'"),
        ({"initializer": "zeros"}, "initializer='zeros'"),
    ],
)
def test_bad_arguments(kwargs, message):
    arguments = {"capacity": 4, "embedding_dim": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        class_pools.ClassPool(**arguments)
