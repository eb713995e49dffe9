"""Run folders that survive a crash, a resume with other settings and degenerate inputs."""

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from keras_face import training
from keras_face.data import write_image_folder
from keras_face.errors import DataError
from keras_face.models.embedding import apply_embedding_output
from keras_face.training.atomic_write import atomic_write
from keras_face.training.trainer import TrainingInterrupted
from tests.training import training_testing
from tests.training.test_trainer import SMALL_RUN

pytestmark = pytest.mark.tf_only


class _Interrupted(Exception):
    pass


def test_atomic_write_keeps_the_previous_file_when_the_writer_dies(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"old": 1}')
    with pytest.raises(_Interrupted):
        with atomic_write(path) as temporary:
            with open(temporary, "w") as file:
                file.write('{"new": ')  # killed half-way
            raise _Interrupted
    assert path.read_text() == '{"old": 1}'
    assert os.listdir(tmp_path) == ["results.json"]  # no temporary left behind
    with atomic_write(path) as temporary:
        assert os.path.dirname(temporary) == str(tmp_path)
        assert temporary.endswith("results.json") and temporary != str(path)
        with open(temporary, "w") as file:
            file.write('{"new": 2}')
    assert json.loads(path.read_text()) == {"new": 2}


class _DyingModel:
    """Writes half an archive, then dies (a process killed during `model.save`)."""

    def save(self, path):
        with open(path, "wb") as file:
            file.write(b"PK\x03\x04 half a zip")
        raise _Interrupted


def test_write_run_folder_never_leaves_a_truncated_model_or_results(tmp_path):
    config = training.load_config(overrides=SMALL_RUN)
    run = training.prepare_run(config, tmp_path / "run")
    with pytest.raises(_Interrupted):
        training.write_run_folder(run, config, {"verification": {}}, _DyingModel(), {}, 0.0)
    assert sorted(os.listdir(run.output_dir)) == ["config.yaml"]

    results_path = os.path.join(run.output_dir, "results.json")
    with open(results_path, "w") as file:
        json.dump({"from": "the last good run"}, file)
    unserialisable = {"verification": {}, "oops": object()}  # json.dump dies half-way
    tiny = training_testing.tiny_backbone()
    with pytest.raises(TypeError):
        training.write_run_folder(run, config, unserialisable, tiny, {}, 0.0)
    with open(results_path) as file:
        assert json.load(file) == {"from": "the last good run"}
    assert not [name for name in os.listdir(run.output_dir) if name.startswith(".partial-")]


def _checkpoint_after_epoch(directory, backbone, accuracy, epoch):
    """A fresh `EmbeddingModelCheckpoint` (as after a restart) sees one epoch's score."""
    checkpoint = training.EmbeddingModelCheckpoint(
        directory, embedding_model=backbone, monitor="heldout_accuracy"
    )
    checkpoint.set_model(backbone)
    checkpoint.on_train_begin()
    checkpoint.on_epoch_end(epoch, {"heldout_accuracy": accuracy})
    return checkpoint


def test_best_model_survives_a_restart(tmp_path):
    directory = str(tmp_path / "models")
    good = training_testing.tiny_backbone(name="good")
    checkpoint = _checkpoint_after_epoch(directory, good, 0.9, epoch=0)
    assert (checkpoint.best, checkpoint.best_epoch) == (0.9, 1)
    with open(os.path.join(directory, "best.json")) as file:
        assert json.load(file)["best"] == 0.9

    # The process restarts; the next epoch is worse: best.keras stays the good model.
    worse = training_testing.tiny_backbone(name="worse")
    restarted = _checkpoint_after_epoch(directory, worse, 0.7, epoch=1)
    assert (restarted.best, restarted.best_epoch) == (0.9, 1)
    assert keras.saving.load_model(os.path.join(directory, "best.keras")).name == "good"
    assert keras.saving.load_model(os.path.join(directory, "last.keras")).name == "worse"

    better = training_testing.tiny_backbone(name="better")
    _checkpoint_after_epoch(directory, better, 0.95, epoch=2)
    assert keras.saving.load_model(os.path.join(directory, "best.keras")).name == "better"


def _train(output, *overrides, restart=False):
    return training.train(
        output_dir=str(output),
        overrides=SMALL_RUN + list(overrides),
        backbone=training_testing.tiny_backbone(image_size=16),
        progress=False,
        restart=restart,
    )


def test_resume_with_changed_settings_is_refused_or_restarted(tmp_path):
    output = tmp_path / "run"
    first = _train(output, "training.epochs=1")
    assert first["steps_per_epoch"] == 3
    # Each of these would change the step count or the log's columns of the resumed run.
    for override, change, received in [
        ("training.batch_size=8", "training.batch_size: 16 -> 8", "training.batch_size=8"),
        ("training.epochs=3", "training.epochs: 1 -> 3", "training.epochs=3"),
        (
            "evaluation.every_n_epochs=0",
            "evaluation.every_n_epochs: 1 -> 0",
            "evaluation.every_n_epochs=0",
        ),
    ]:
        overrides = (
            [override]
            if override.startswith("training.epochs")
            else [
                "training.epochs=1",
                override,
            ]
        )
        with pytest.raises(training.ConfigError) as error:
            _train(output, *overrides)
        message = str(error.value)
        assert change in message and "--restart" in message
        assert message.endswith(f"Received: {received}")
    # A setting the backup does not depend on (the learning rate) resumes.
    resumed = _train(output, "training.epochs=1", "optimizer.learning_rate=0.01")
    assert resumed["resumed_from"]["finished"] is True
    # ... and nothing of the first run was touched by the refused ones.
    with open(output / "results.json") as file:
        assert json.load(file)["steps_per_epoch"] == 3

    restarted = _train(output, "training.epochs=1", "training.batch_size=8", restart=True)
    assert restarted["resumed_from"] is None
    assert restarted["steps_per_epoch"] == 6
    with open(output / "backup" / "latest.json") as file:
        assert json.load(file)["global_step"] == 6  # not 3 + 6
    with open(output / "logs" / "training_log.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 1
    # Only the columns of the epoch's logs: no always-NA `val_*` columns.
    assert not [column for column in rows[0] if column.startswith("val_")]
    assert all(value not in ("", "NA") for value in rows[0].values())


def test_a_data_error_leaves_no_run_folder(tmp_path):
    output = tmp_path / "run"
    with pytest.raises(FileNotFoundError):
        _train(output, "data.source=folder", f"data.path={tmp_path / 'missing'}")
    assert not output.exists()

    images, labels = training_testing.identity_images(1, 40, image_size=16)
    write_image_folder(str(tmp_path / "one"), images, labels, progress=False)
    with pytest.raises(DataError, match="1 identity") as error:
        _train(output, "data.source=folder", f"data.path={tmp_path / 'one'}")
    assert str(error.value).endswith(f"Received: data.path={str(tmp_path / 'one')!r}")
    assert not output.exists()


def test_batch_norm_with_one_example_per_replica_is_refused(tmp_path):
    output = tmp_path / "run"
    with pytest.raises(training.ConfigError) as error:
        _train(output, "training.batch_size=1")
    message = str(error.value)
    assert "batch normalisation" in message and "gives 1" in message
    assert message.endswith("Received: training.batch_size=1")
    assert not output.exists()


def test_default_run_name_follows_the_data_and_the_head(tmp_path):
    assert training.load_config()["name"] == "synthetic_arcface"
    assert training.load_config(overrides=["head=cosface"])["name"] == "synthetic_cosface"
    pack = tmp_path / "faces_webface_112x112" / "train.rec"
    rec = training.load_config(overrides=["data.source=recordio", f"data.path={pack}"])
    assert rec["name"] == "faces_webface_112x112_arcface"
    folder = training.load_config(
        overrides=["data.source=folder", f"data.path={tmp_path / 'casia'}", "head=adaface"]
    )
    assert folder["name"] == "casia_adaface"
    named = training.load_config(overrides=["name=mine", "data.source=folder", "data.path=x"])
    assert named["name"] == "mine"


def test_images_of_another_size_are_resized_to_data_image_size(tmp_path):
    images, labels = training_testing.identity_images(4, 8, image_size=16)
    paths = write_image_folder(str(tmp_path / "faces"), images, labels, progress=False)
    # One image of another size (a crop the folder's owner forgot to resize).
    Image.fromarray(np.full((20, 24, 3), 128, np.uint8)).save(paths[3])
    results = _train(
        tmp_path / "run",
        "data.source=folder",
        f"data.path={tmp_path / 'faces'}",
        "training.epochs=1",
        "training.batch_size=8",
    )
    assert results["num_images"] == 32 and results["steps_per_epoch"] == 4
    assert results["data"]["undecodable_skipped"] == 0


def test_keyboard_interrupt_names_the_run_folder(tmp_path, monkeypatch):
    def interrupted_fit(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training.trainer, "fit", interrupted_fit)
    with pytest.raises(TrainingInterrupted) as error:
        _train(tmp_path / "run", "training.epochs=1")
    assert error.value.output_dir == str(tmp_path / "run")
    assert error.value.has_backup is False  # stopped before the first backup
    assert isinstance(error.value, KeyboardInterrupt)


def _python(code):
    return subprocess.run(
        [sys.executable, "-c", code],
        env=training_testing.script_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_saved_model_loads_in_a_fresh_process_after_importing_the_models(tmp_path):
    features = keras.Input((2, 2, 4))
    model = keras.Model(features, apply_embedding_output(features, "E", embedding_size=8))
    path = str(tmp_path / "embedding_model.keras")
    model.save(path)
    expected = model.predict(np.ones((1, 2, 2, 4), "float32"), verbose=0)
    load = (
        "import keras, numpy as np; "
        f"model = keras.saving.load_model({path!r}); "
        "print(model.predict(np.ones((1, 2, 2, 4), 'float32'), verbose=0).tolist())"
    )
    # Keras imports no third-party module to find a class: without the import, the
    # package's layers are unknown (what keras_face/__init__.py documents).
    without = _python(load)
    assert without.returncode != 0
    assert "FrozenScaleBatchNormalization" in without.stderr
    loaded = _python("import keras_face.models; " + load)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    np.testing.assert_allclose(json.loads(loaded.stdout.splitlines()[-1]), expected, rtol=1e-6)
