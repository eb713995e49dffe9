import json
import os

import numpy as np
import pytest

from keras_face import training
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
    results = training.train(output_dir=output, overrides=SMALL_RUN, backbone=backbone, progress=True)
    for name in (
        "config.yaml", "embedding_model.keras", "models/last.keras", "models/best.keras",
        "logs/training_log.csv", "roc.png", "training_curves.png", "results.json", "backup/latest.json",
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
    assert saved["history"]["learning_rate"][0] == pytest.approx(base * (1 - 3 / 6) ** 2)  # poly, power 2
    assert results["verification"] == saved["verification"]
    out = capsys.readouterr().out
    assert "keras-face train: held-out verification accuracy" in out
    assert f"-> {output}" in out

    # The same command again: the finished backup is restored, nothing is retrained.
    again = training.train(
        output_dir=output, overrides=SMALL_RUN,
        backbone=training_testing.tiny_backbone(image_size=16), progress=True,
    )
    assert "training already finished" in capsys.readouterr().out
    assert again["resumed_from"]["finished"] is True
    assert again["verification"]["heldout"]["accuracy"] == pytest.approx(heldout["accuracy"])


def test_class_count_mismatch(tmp_path):
    with pytest.raises(training.ConfigError) as error:
        training.train(
            output_dir=str(tmp_path / "run"), overrides=SMALL_RUN + ["data.num_classes=10"],
            backbone=training_testing.tiny_backbone(image_size=16), progress=False,
        )
    message = str(error.value)
    assert "data.num_classes=10 does not match the training data, which has 12 identities" in message
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
        {"loss": [3.0, 2.0], "accuracy": [0.1, 0.5], "learning_rate": [0.1, 0.01],
         "heldout_accuracy": [0.7, np.nan]}
    )
    assert len(figure.axes) == 4
    with pytest.raises(ValueError, match="history has none"):
        training.plot_training_curves({"other": [1.0]})


def test_recordio_run_with_verification_bin(tmp_path):
    """From a .rec pack and a .bin file to an evaluated embedding model, as `keras-face train` does."""
    from keras_face.data import write_bin
    from keras_face.data import write_recordio

    images, labels = training_testing.identity_images(6, 8, image_size=16, seed=3)
    rec_path = str(tmp_path / "pack" / "train.rec")
    os.makedirs(os.path.dirname(rec_path))
    samples = list(zip(images, labels))
    samples[5] = (b"\xff\xd8\xff\xe0 not an image", labels[5])  # skipped and counted, key 6
    write_recordio(rec_path, samples, image_format="png", progress=False)
    first, second = images[0::8], images[1::8]  # two images of each identity
    pairs = np.stack([first[0], second[0], first[1], second[2], first[3], second[3], first[4], second[5]])
    write_bin(str(tmp_path / "pack" / "tiny_pairs.bin"), pairs, np.array([True, False, True, False]), progress=False)
    results = training.train(
        output_dir=str(tmp_path / "run"),
        overrides=[
            "data.source=recordio", f"data.path={rec_path}", "data.image_size=16",
            f"data.verification=[{tmp_path / 'pack' / 'tiny_pairs.bin'}]", "data.num_classes=6",
            "training.epochs=1", "training.batch_size=16", "evaluation.n_folds=2",
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
