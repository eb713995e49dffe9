"""The pools as training methods: resume, replicas, `train` and the `keras-face` CLI."""

import json

import keras
import numpy as np
import pytest
from keras import ops

from keras_face import class_pools
from keras_face import cli
from keras_face import training
from tests.training import training_testing

pytestmark = pytest.mark.tf_only

SMALL_RUN = [
    "data.identities=12",
    "data.images_per_identity=4",
    "data.image_size=16",
    "data.heldout_identities=6",
    "data.heldout_images_per_identity=4",
    "data.heldout_pairs=40",
    "training.batch_size=8",
    "training.epochs=2",
    "training.backup_every_steps=3",
    "training.verbose=0",
    "evaluation.n_folds=2",
]


def test_pool_size_rules():
    assert class_pools.pool_size_for("f2c", 10_000, 64) == 1000
    assert class_pools.pool_size_for("f2c", 300, 64) == 96  # raised to 1.5 B
    assert class_pools.pool_size_for("dcq", 300, 64) == 64
    assert class_pools.pool_size_for("dcq", 10_000, 64) == 1024  # a multiple of B
    assert class_pools.pool_size_for("f2c", 300, 64, size=96) == 96
    with pytest.raises(training.ConfigError, match=r"pool.size=95, training.batch_size=64"):
        class_pools.pool_size_for("f2c", 300, 64, size=95)
    with pytest.raises(training.ConfigError, match=r"pool.size=100, training.batch_size=64"):
        class_pools.pool_size_for("dcq", 300, 64, size=100)


def make_model(kind, seed):
    keras.utils.set_random_seed(seed)
    backbone = training_testing.tiny_backbone()
    if kind == "f2c":
        model = class_pools.F2CTrainingModel(backbone, pool_size=12, seed=seed)
    else:
        model = class_pools.DCQTrainingModel(backbone, queue_size=16, seed=seed)
    model.compile(optimizer=training.L2SGD(0.05, momentum=0.9, nesterov=True, l2=1e-4))
    return model


def make_dataset(kind, first_epoch):
    images, labels = training_testing.identity_images(8, 3, seed=2)  # 24 images: 3 x 8
    make = class_pools.make_dual_loader_dataset if kind == "f2c" else class_pools.make_pair_dataset
    return make(images, labels, 8, epochs=2, seed=4, first_epoch=first_epoch)


class Crash(Exception):
    pass


class CrashAt(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step
        self.count = 0

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1
        if self.count == self.step:
            raise Crash()


@pytest.mark.parametrize("kind", ["f2c", "dcq"])
def test_resume_after_a_crash_restores_pool_gallery_and_counters(tmp_path, kind):
    reference = make_model(kind, seed=0)
    reference.fit(make_dataset(kind, 0), epochs=2, steps_per_epoch=3, verbose=0)
    crashed = make_model(kind, seed=0)
    backup = training.BackupAndRestore(tmp_path / "backup", save_freq=2)
    with pytest.raises(Crash):
        crashed.fit(
            make_dataset(kind, 0),
            epochs=2,
            steps_per_epoch=3,
            verbose=0,
            callbacks=[backup, CrashAt(5)],
        )
    # A new process: other initial weights and pool, restored from the step-5 backup
    # (mid-epoch: the resumed fit skips the epoch's first two batches).
    resumed = make_model(kind, seed=7)
    backup = training.BackupAndRestore(tmp_path / "backup", save_freq=2)
    backup.set_model(resumed)
    state = backup.read_state()
    assert state["global_step"] == 5 and state["epoch"] == 1 and state["step_in_epoch"] == 2
    resumed.fit(
        make_dataset(kind, state["epoch"]),
        epochs=2,
        steps_per_epoch=3,
        verbose=0,
        callbacks=[backup],
    )
    assert int(resumed.optimizer.iterations.numpy()) == 6
    pool = reference.pool if kind == "f2c" else reference.queue
    assert pool.weights[0].path.endswith("pool")
    for expected, actual in zip(reference.weights, resumed.weights):
        np.testing.assert_allclose(
            ops.convert_to_numpy(actual),
            ops.convert_to_numpy(expected),
            rtol=1e-5,
            atol=1e-6,
            err_msg=expected.path,
        )


@pytest.mark.slow
def test_two_replicas_equal_one_replica(tmp_path):
    # ref_f2c.two_rank_check: 2 ranks x (2 pairs + 2 instances), global normalisation;
    # the same numbers as 1 rank on the rank-order concatenation.
    outputs = {}
    for replicas in (1, 2):
        path = tmp_path / f"replicas{replicas}.npz"
        training_testing.run_script("../class_pools/replica_script.py", replicas, path, timeout=600)
        with np.load(path) as data:
            outputs[replicas] = {key: data[key] for key in data.files}
    two = outputs[2]
    np.testing.assert_allclose(
        two["f2c_losses"], [119.57160866006802, 110.64862132813965], rtol=1e-5
    )
    one = outputs[1]
    for key in ("dcq_losses", "dcq_a", "dcq_b", "dcq_queue", "dcq_slot_ids"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(
        one["dcq_losses"], [11.21245115158208, 5.6226784500103175], rtol=1e-5
    )


@pytest.mark.parametrize("method, embedding", [("f2c", "probe"), ("dcq", "gallery")])
def test_train_method_end_to_end(tmp_path, method, embedding):
    backbone = training_testing.tiny_backbone()
    results = training.train(
        overrides=SMALL_RUN + [f"training.method={method}"],
        output_dir=tmp_path / "run",
        backbone=backbone,
        progress=False,
    )
    assert results["steps_per_epoch"] == 6 and results["head"] == "ArcFace"
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    history = saved.get("history", {})
    assert all(np.isfinite(value) for value in history.get("loss", [0.0]))
    assert saved["verification"]["heldout"]["accuracy"] > 0
    exported = keras.saving.load_model(tmp_path / "run" / "embedding_model.keras")
    assert exported.output.shape[-1] == training_testing.EMBEDDING_SIZE
    # The exported network is P (the backbone passed in, trained) for F2C, G for DCQ.
    same = [np.array_equal(a, b) for a, b in zip(exported.get_weights(), backbone.get_weights())]
    assert all(same) == (embedding == "probe")


def test_config_errors_name_the_values(tmp_path):
    with pytest.raises(training.ConfigError, match=r"pool.size=10, training.batch_size=8"):
        training.train(
            overrides=SMALL_RUN + ["training.method=f2c", "pool.size=10"],
            output_dir=tmp_path / "run",
            backbone=training_testing.tiny_backbone(),
            progress=False,
        )


def test_train_pool_model_reports_step_time():
    images, labels = training_testing.identity_images(8, 3, seed=1)
    model = make_model("f2c", seed=0)
    result = class_pools.train_pool_model(model, images, labels, batch_size=8, epochs=1)
    assert result["steps"] == 3 and result["images_per_step"] == 24
    uncompiled = class_pools.DCQTrainingModel(training_testing.tiny_backbone(), queue_size=8)
    result = class_pools.train_pool_model(uncompiled, images, labels, batch_size=8, epochs=1)
    assert result["steps"] == 3 and result["images_per_step"] == 8
    assert isinstance(uncompiled.optimizer, training.L2SGD)
    assert result["step_seconds"] > 0 and len(result["history"]["loss"]) == 1


@pytest.mark.slow
def test_cli_trains_f2c_on_the_synthetic_default(tmp_path):
    arguments = [
        "train",
        "--quiet",
        "--output",
        str(tmp_path / "run"),
        "--set",
        "training.method=f2c",
    ]
    for override in SMALL_RUN:
        arguments += ["--set", override]
    assert cli.main(arguments) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["head"] == "ArcFace" and results["backbone"] == "mobilefacenet"
