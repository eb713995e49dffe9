"""`DCQTrainingModel` against the golden toy run of the DCQ reference (ref_dcq.py)."""

import keras
import numpy as np
import pytest
import toy_runs
from keras import ops

from keras_face import class_pools


def test_golden_two_step_run():
    model, steps = toy_runs.dcq_model()
    a0 = ops.convert_to_numpy(model.probe.weights[0])
    losses = []
    for step, batch in enumerate(steps):
        queue_before = ops.convert_to_numpy(model.queue.pool)[0]
        losses.append(float(model.train_on_batch(batch, toy_runs.dummy_targets(batch))))
        if step == 0:
            # The keys of step 1 replace slots 0..3: unit G features, G = P at step 1.
            keys = batch["key_images"] @ a0
            keys /= np.linalg.norm(keys, axis=1, keepdims=True)
            queue = ops.convert_to_numpy(model.queue.pool)[0]
            np.testing.assert_allclose(queue[:4], keys, atol=1e-6)
            np.testing.assert_array_equal(queue[4:], queue_before[4:])
            np.testing.assert_array_equal(
                ops.convert_to_numpy(model.queue.slot_ids), [0, 1, 2, 3, -1, -1, -1, -1]
            )
            assert int(ops.convert_to_numpy(model.queue.cursor)) == 4
    np.testing.assert_allclose(losses, toy_runs.DCQ_LOSSES, rtol=1e-5)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(model.queue.slot_ids), [0, 1, 2, 3, 2, 5, 0, 6]
    )
    assert int(ops.convert_to_numpy(model.queue.cursor)) == 0  # wrapped
    gallery = ops.convert_to_numpy(model.gallery.weights[0])
    np.testing.assert_allclose(gallery[0], toy_runs.DCQ_B_STEP2_ROW0, atol=1e-6)
    probe = ops.convert_to_numpy(model.probe.weights[0])
    np.testing.assert_allclose(probe[0], toy_runs.DCQ_A_AFTER_STEP2_ROW0, atol=1e-5)


def test_same_identity_entries_are_masked_before_the_enqueue():
    model, steps = toy_runs.dcq_model()
    model.train_on_batch(steps[0], toy_runs.dummy_targets(steps[0]))
    batch = steps[1]
    queries = model.probe_features(batch["query_images"])
    keys = model.gallery_features(batch["key_images"])
    state = model.queue.state()
    losses = model.query_losses(queries, keys, batch["labels"], state)
    # The same losses with the two masked entries (row 0 -> slot 2, row 2 -> slot 0)
    # written out by hand.
    q = ops.convert_to_numpy(queries)
    k = ops.convert_to_numpy(keys)
    queue = ops.convert_to_numpy(state["pool"])[0]
    negatives = q @ queue.T
    negatives[0, 2] = negatives[2, 0] = -1e9
    logits = 50.0 * np.concatenate([np.sum(q * k, axis=1, keepdims=True) - 0.3, negatives], 1)
    shifted = logits - logits.max(axis=1, keepdims=True)
    expected = -(shifted[:, 0] - np.log(np.exp(shifted).sum(axis=1)))
    np.testing.assert_allclose(ops.convert_to_numpy(losses), expected, rtol=1e-5)


def test_gradient_reaches_the_probe_only_and_embedding_is_the_gallery():
    model, _ = toy_runs.dcq_model()
    assert [id(v) for v in model.trainable_weights] == [id(model.probe.weights[0])]
    assert model.embedding_model is model.gallery
    probe, _ = toy_runs.dcq_model(embedding="probe")
    assert probe.embedding_model is probe.probe


def test_keras_round_trip(tmp_path):
    model, steps = toy_runs.dcq_model()
    model.train_on_batch(steps[0], toy_runs.dummy_targets(steps[0]))
    model.save(tmp_path / "dcq.keras")
    restored = keras.saving.load_model(tmp_path / "dcq.keras")
    assert isinstance(restored, class_pools.DCQTrainingModel)
    for original, loaded in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(ops.convert_to_numpy(original), ops.convert_to_numpy(loaded))
    loss = float(restored.train_on_batch(steps[1], toy_runs.dummy_targets(steps[1])))
    np.testing.assert_allclose(loss, toy_runs.DCQ_LOSSES[1], rtol=1e-5)


def test_bad_inputs_name_the_values():
    _, steps = toy_runs.dcq_model()
    backbone = toy_runs.linear_backbone(5, 4, np.eye(5, 4))
    model = class_pools.DCQTrainingModel(backbone, queue_size=6)
    with pytest.raises(ValueError, match=r"queue_size=6, global batch=4"):
        model(steps[0], training=True)
    checked = class_pools.DCQTrainingModel(
        toy_runs.linear_backbone(5, 4, np.eye(5, 4)), queue_size=8, num_classes=6
    )
    with pytest.raises(Exception, match=r"num_classes=6.*containing 6"):
        checked(steps[1], training=True)
    with pytest.raises(ValueError, match=r"queue_size=0"):
        class_pools.DCQTrainingModel(backbone, queue_size=0)
    with pytest.raises(ValueError, match=r"Received: loss="):
        model.compile(optimizer="sgd", loss="mse")
