"""`F2CTrainingModel` against the golden toy run of the F2C reference (ref_f2c.py)."""

import keras
import numpy as np
import pytest
import toy_runs
from keras import ops

from keras_face import class_pools
from keras_face import heads


def run_toy(model, batches):
    losses = []
    for batch in batches:
        losses.append(float(model.train_on_batch(batch, toy_runs.dummy_targets(batch))))
    return losses


def test_golden_toy_run_arcface():
    model, batches = toy_runs.f2c_model()
    for step, batch in enumerate(batches):
        loss = float(model.train_on_batch(batch, toy_runs.dummy_targets(batch)))
        np.testing.assert_allclose(loss, toy_runs.F2C_LOSSES[step], rtol=1e-5)
        # P after the Nesterov SGD step; G used in the step (EMA once, before G's forward).
        probe = ops.convert_to_numpy(model.probe.weights[0])
        np.testing.assert_allclose(probe[0], toy_runs.F2C_A_AFTER_ROW0[step], atol=5e-5)
        gallery = ops.convert_to_numpy(model.gallery.weights[0])
        np.testing.assert_allclose(gallery[0], toy_runs.F2C_B_USED_ROW0[step], atol=1e-6)
        # The pool holds the commit pass only (the trial pass is rolled back), in the
        # authors' LRU order, with their row pointers.
        assert model.pool.recency() == toy_runs.F2C_RECENCY[step]
        row_ptr = ops.convert_to_numpy(model.pool.row_ptr)
        slot_ids = ops.convert_to_numpy(model.pool.slot_ids)
        occupied = slot_ids >= 0
        np.testing.assert_array_equal(
            row_ptr[occupied], np.asarray(toy_runs.F2C_ROW_PTR[step])[occupied]
        )
        rows = ops.convert_to_numpy(model.pool.pool)
        np.testing.assert_allclose(np.linalg.norm(rows, axis=2), 1.0, rtol=1e-6)


def test_golden_toy_run_cosface_default_margin():
    model, batches = toy_runs.f2c_model(margin_head=heads.CosFace(1, scale=32.0, margin=0.4))
    np.testing.assert_allclose(run_toy(model, batches), toy_runs.F2C_LOSSES_COSFACE, rtol=1e-5)


def test_first_step_gradient_reaches_the_probe_only():
    model, batches = toy_runs.f2c_model()
    gallery_before = ops.convert_to_numpy(model.gallery.weights[0])
    probe_before = ops.convert_to_numpy(model.probe.weights[0])
    assert [id(v) for v in model.trainable_weights] == [id(model.probe.weights[0])]
    assert all(not v.trainable for v in model.pool.weights + model.gallery.weights)
    model.train_on_batch(batches[0], toy_runs.dummy_targets(batches[0]))
    # Nesterov SGD from a zero buffer: A1 = A0 - lr (1 + mu) (g + l2 A0).
    step = probe_before - ops.convert_to_numpy(model.probe.weights[0])
    gradient = step / (0.1 * 1.9) - 1e-4 * probe_before
    np.testing.assert_allclose(gradient[0], toy_runs.F2C_GRAD_A_STEP1_ROW0, rtol=2e-4, atol=2e-4)
    # G moved by the moving average only: 0.99 A0 + 0.01 A0 = A0.
    np.testing.assert_allclose(
        ops.convert_to_numpy(model.gallery.weights[0]), gallery_before, atol=1e-6
    )


def test_identity_pairs_are_always_in_the_pool_and_losses_are_exclusive():
    model, batches = toy_runs.f2c_model()
    batch = batches[0]
    x_labels = np.concatenate([batch["id_labels"], batch["instance_labels"][:2]])
    state = model.pool.state()
    model(batch, training=True)
    slots = ops.convert_to_numpy(model.pool.lookup(x_labels, model.pool.state()))
    assert (slots[:4] >= 0).all() and state is not None
    # Out-of-pool probes: only the top-h cosine term (at most h non-zero gradients).
    probes = ops.convert_to_tensor(np.eye(4, dtype=np.float32)[:2])
    weights = ops.convert_to_tensor(np.eye(8, 4, dtype=np.float32) * 0.5 + 0.1)
    contributions = model.pass_contributions(
        probes, (weights,), ops.convert_to_tensor(np.asarray([-1, -1], np.int32))
    )
    cosine = ops.convert_to_numpy(probes) @ ops.convert_to_numpy(weights).T
    top = -np.sort(-cosine, axis=1)[:, :3]
    expected = 2 * np.maximum(top, 0).sum(axis=1) / 3 / 2
    np.testing.assert_allclose(ops.convert_to_numpy(contributions), expected, rtol=1e-6)


def test_hard_negatives_default_follows_the_authors():
    assert [class_pools.default_hard_negatives(k) for k in (8, 7409, 20000, 49999, 50000)] == [
        3,
        3,
        4,
        9,
        10,
    ]


def test_latest_row_changes_only_untouched_slots_with_a_newer_row_1():
    # After step 3 slots 2, 6 and 7 hold their newer feature in row 1 (the reference's
    # defect 7); a fourth step that does not write them scores them differently.
    steps = toy_runs.F2C_STEPS + (((1, 3, 4, 9), (10, 11, 5, 8)),)
    model, batches = toy_runs.f2c_model(steps=steps)
    latest, _ = toy_runs.f2c_model(steps=steps, untouched_row="latest")
    losses = run_toy(model, batches)
    latest_losses = run_toy(latest, batches)
    # Up to step 3 every slot a pass did not write holds its newer feature in row 0.
    np.testing.assert_allclose(latest_losses[:3], losses[:3], rtol=1e-6)
    np.testing.assert_allclose(losses[:3], toy_runs.F2C_LOSSES, rtol=1e-5)
    assert abs(latest_losses[3] - losses[3]) > 1e-3


def test_embedding_model_is_the_probe_and_keras_round_trip(tmp_path):
    model, batches = toy_runs.f2c_model()
    run_toy(model, batches[:1])
    assert model.embedding_model is model.probe
    path = tmp_path / "f2c.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, class_pools.F2CTrainingModel)
    assert restored.get_config()["margin_head"] == model.get_config()["margin_head"]
    for original, loaded in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(
            ops.convert_to_numpy(original), ops.convert_to_numpy(loaded), err_msg=original.path
        )
    # The restored model continues exactly.
    np.testing.assert_allclose(
        run_toy(restored, batches[1:]), run_toy(model, batches[1:]), rtol=1e-6
    )


def test_bad_inputs_name_the_values():
    model, batches = toy_runs.f2c_model()
    odd = dict(batches[0])
    odd["instance_images"] = odd["instance_images"][:3]
    odd["instance_labels"] = odd["instance_labels"][:3]
    with pytest.raises(ValueError, match=r"local batch=3"):
        model(odd, training=True)
    backbone = toy_runs.linear_backbone(6, 4, np.eye(6, 4))
    small = class_pools.F2CTrainingModel(backbone, pool_size=5)
    with pytest.raises(ValueError, match=r"pool_size=5, global batch=4"):
        small(batches[0], training=True)
    checked = class_pools.F2CTrainingModel(
        toy_runs.linear_backbone(6, 4, np.eye(6, 4)), pool_size=8, num_classes=10
    )
    with pytest.raises(Exception, match=r"num_classes=10.*containing 10"):
        checked(batches[1], training=True)
    for kwargs, message in (
        ({"pool_size": 0}, "pool_size=0"),
        ({"hard_negatives": 9}, "hard_negatives=9"),
        ({"untouched_row": "row1"}, "untouched_row='row1'"),
        ({"momentum": 1.0}, "momentum=1.0"),
        ({"embedding": "teacher"}, "embedding='teacher'"),
        ({"margin_head": heads.CurricularFace(1)}, "stateless"),
    ):
        arguments = {"pool_size": 8, **kwargs}
        with pytest.raises(ValueError, match=message):
            class_pools.F2CTrainingModel(toy_runs.linear_backbone(6, 4, np.eye(6, 4)), **arguments)


def test_inference_call_changes_no_state():
    model, batches = toy_runs.f2c_model()
    before = [ops.convert_to_numpy(v).copy() for v in model.weights]
    losses = ops.convert_to_numpy(model(batches[0], training=False))
    assert losses.shape == (6,) and np.isfinite(losses).all()
    for variable, value in zip(model.weights, before):
        np.testing.assert_array_equal(ops.convert_to_numpy(variable), value)
