import json
import os
import time

import numpy as np
import pytest

from keras_face import training
from keras_face.evaluation import extract_embeddings
from keras_face.evaluation import verify
from keras_face.evaluation.verification_summary import VerificationSummary
from tests.training import training_testing

pytestmark = pytest.mark.tf_only

SMALL_RUN = [
    "data.image_size=16",
    "data.identities=12",
    "data.images_per_identity=4",
    "data.heldout_identities=8",
    "data.heldout_images_per_identity=4",
    "data.heldout_pairs=40",
    "training.epochs=2",
    "training.batch_size=16",
    "training.backup_every_steps=2",
    "evaluation.n_folds=4",
    "evaluation.batch_size=64",
]


def test_small_run_writes_the_run_folder_and_resumes(tmp_path, capsys):
    output = str(tmp_path / "run")
    backbone = training_testing.tiny_backbone(image_size=16)
    results = training.train(
        output_dir=output, overrides=SMALL_RUN, backbone=backbone, progress=True
    )
    for name in (
        "config.yaml",
        "embedding_model.keras",
        "models/last.keras",
        "models/best.keras",
        "logs/training_log.csv",
        "roc.png",
        "training_curves.png",
        "results.json",
        "backup/latest.json",
    ):
        assert os.path.exists(os.path.join(output, name)), name
    assert os.listdir(os.path.join(output, "logs", "tensorboard"))
    with open(os.path.join(output, "results.json")) as file:
        saved = json.load(file)
    heldout = saved["verification"]["heldout"]
    assert 0.0 <= heldout["accuracy"] <= 1.0 and heldout["pairs"] == 40
    assert saved["num_classes"] == 12 and saved["steps_per_epoch"] == 3
    assert len(saved["history"]["loss"]) == 2 and len(saved["history"]["heldout_accuracy"]) == 2
    base = training.DEFAULT_CONFIG["optimizer"]["learning_rate"]
    assert saved["history"]["learning_rate"][0] == pytest.approx(
        base * (1 - 3 / 6) ** 2
    )  # poly, power 2
    assert results["verification"] == saved["verification"]
    out = capsys.readouterr().out
    assert "keras-face train: held-out verification accuracy" in out
    assert f"-> {output}" in out

    # The same command again: the finished backup is restored, nothing is retrained.
    again = training.train(
        output_dir=output,
        overrides=SMALL_RUN,
        backbone=training_testing.tiny_backbone(image_size=16),
        progress=True,
    )
    assert "training already finished" in capsys.readouterr().out
    assert again["resumed_from"]["finished"] is True
    assert again["verification"]["heldout"]["accuracy"] == pytest.approx(heldout["accuracy"])


def test_class_count_mismatch(tmp_path):
    with pytest.raises(training.ConfigError) as error:
        training.train(
            output_dir=str(tmp_path / "run"),
            overrides=SMALL_RUN + ["data.num_classes=10"],
            backbone=training_testing.tiny_backbone(image_size=16),
            progress=False,
        )
    message = str(error.value)
    assert (
        "data.num_classes=10 does not match the training data, which has 12 identities" in message
    )
    assert message.endswith("Received: data.num_classes=10")


def test_missing_training_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="Training data not found"):
        training.train(
            output_dir=str(tmp_path / "run"),
            overrides=["data.source=recordio", f"data.path={tmp_path / 'missing.rec'}"],
            progress=False,
        )


def test_training_curves_plot():
    figure = training.plot_training_curves(
        {
            "loss": [3.0, 2.0],
            "accuracy": [0.1, 0.5],
            "learning_rate": [0.1, 0.01],
            "heldout_accuracy": [0.7, np.nan],
        }
    )
    assert len(figure.axes) == 4
    with pytest.raises(ValueError, match="history has none"):
        training.plot_training_curves({"other": [1.0]})


def test_recordio_run_with_verification_bin(tmp_path):
    """From a .rec pack and a .bin file to an evaluated embedding model, as `keras-face train`."""
    from keras_face.data import write_bin
    from keras_face.data import write_recordio

    images, labels = training_testing.identity_images(6, 8, image_size=16, seed=3)
    rec_path = str(tmp_path / "pack" / "train.rec")
    os.makedirs(os.path.dirname(rec_path))
    samples = list(zip(images, labels))
    samples[5] = (b"\xff\xd8\xff\xe0 not an image", labels[5])  # skipped and counted, key 6
    write_recordio(rec_path, samples, image_format="png", progress=False)
    first, second = images[0::8], images[1::8]  # two images of each identity
    pairs = np.stack(
        [first[0], second[0], first[1], second[2], first[3], second[3], first[4], second[5]]
    )
    write_bin(
        str(tmp_path / "pack" / "tiny_pairs.bin"),
        pairs,
        np.array([True, False, True, False]),
        progress=False,
    )
    results = training.train(
        output_dir=str(tmp_path / "run"),
        overrides=[
            "data.source=recordio",
            f"data.path={rec_path}",
            "data.image_size=16",
            f"data.verification=[{tmp_path / 'pack' / 'tiny_pairs.bin'}]",
            "data.num_classes=6",
            "training.epochs=1",
            "training.batch_size=16",
            "evaluation.n_folds=2",
        ],
        backbone=training_testing.tiny_backbone(image_size=16),
        progress=False,
    )
    assert results["num_classes"] == 6 and results["num_images"] == 48
    assert results["steps_per_epoch"] == 3
    assert results["verification"]["tiny_pairs"]["pairs"] == 4
    assert results["data"]["undecodable_skipped"] >= 1
    assert results["data"]["undecodable_keys"][0] == "6"
    assert results["data"]["images_decoded"] >= 3 * 16
    assert os.path.exists(tmp_path / "run" / "embedding_model.keras")


def test_public_steps_compose_a_run(tmp_path):
    """The steps of `train`, called one by one as notebook 03 and the CLI do."""
    config = training.load_config(overrides=SMALL_RUN)
    run = training.prepare_run(config, tmp_path / "run")
    assert run.global_batch == 16 and run.chief
    assert os.path.exists(os.path.join(run.output_dir, "config.yaml"))
    data = training.load_training_data(config, run.global_batch, progress=False)
    assert (data.num_classes, data.num_images) == (12, 48)
    steps = training.count_steps_per_epoch(config, data, run.global_batch)
    assert steps == 3
    model = training.compile_training_model(
        config,
        data.num_classes,
        steps,
        run.strategy,
        backbone=training_testing.tiny_backbone(image_size=16),
    )
    assert type(model.head).__name__ == "ArcFace" and model.head.num_classes == 12
    callbacks = training.build_callbacks(config, run.output_dir, model, data.verification)
    assert type(callbacks[-1]).__name__ == "StopOnNaN"
    history = training.fit(model, data.make_dataset(0), config, steps, callbacks, progress=False)
    assert len(history.history["loss"]) == 2 and "heldout_accuracy" in history.history

    summaries = training.evaluate(model.embedding_model, data.verification, config, progress=False)
    summary = summaries["heldout"]
    assert isinstance(summary, VerificationSummary)
    images, issame = data.verification["heldout"]
    embeddings = extract_embeddings(
        model.embedding_model, images, batch_size=64, flip=True, verbose=False
    )
    direct = verify(embeddings, issame, n_folds=4)
    assert summary.accuracy == pytest.approx(direct["accuracy"], abs=1e-12)
    assert summary.threshold == pytest.approx(direct["threshold"], abs=1e-12)
    assert (summary.pairs, summary.n_folds) == (40, 4)

    results = training.collect_results(config, run, data, model, steps, 2.0, None, False)
    assert results["training_images_per_second"] == pytest.approx(2 * 3 * 16 / 2.0)
    results["verification"] = {name: s.as_dict() for name, s in summaries.items()}
    training.write_run_folder(
        run, config, results, model.embedding_model, summaries, time.perf_counter()
    )
    with open(os.path.join(run.output_dir, "results.json")) as file:
        saved = json.load(file)
    assert saved["verification"]["heldout"] == summary.as_dict()
    assert len(saved["history"]["loss"]) == 2
    for name in ("embedding_model.keras", "roc.png", "training_curves.png"):
        assert os.path.exists(os.path.join(run.output_dir, name)), name


def test_verification_summary_numbers():
    result = {
        "accuracy": 0.9345,
        "accuracy_std": 0.0123,
        "threshold": 1.2345,
        "val_at_far_1e-3": 0.5,
        "auc": float("nan"),
        "tar_at_far": {1e-2: 0.75, 1e-3: np.nan},
    }
    summary = VerificationSummary.from_result("lfw", result, 6000, n_folds=10)
    assert summary.as_dict() == {
        "accuracy": 0.9345,
        "accuracy_std": 0.0123,
        "threshold": 1.2345,
        "val_at_far_1e-3": 0.5,
        "val_achieved_far": None,
        "auc": None,
        "tar_at_far": {"0.01": 0.75, "0.001": None},
        "pairs": 6000,
    }
    assert summary.table_row() == ["lfw", "6000", "93.45 +- 1.23", "1.234", "50.00", "nan", "nan"]


def test_a_bad_head_value_is_a_config_error(tmp_path):
    with pytest.raises(training.ConfigError, match=r"Received: scale=-1.0"):
        training.train(
            output_dir=str(tmp_path / "run"),
            overrides=SMALL_RUN + ["head.scale=-1.0"],
            backbone=training_testing.tiny_backbone(image_size=16),
            progress=False,
        )
