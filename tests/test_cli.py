import subprocess
import sys

import pytest

from keras_face import cli
from keras_face import training
from tests.training import training_testing

pytestmark = pytest.mark.tf_only


def run_cli(*args, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "keras_face.cli", *map(str, args)],
        env=training_testing.script_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_lists_the_commands():
    completed = run_cli("--help")
    assert completed.returncode == 0
    for command in ("train", "eval", "pack", "export"):
        assert command in completed.stdout


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as error:
        cli.main(["export", "--model", "m.keras", "--format", "pb"])
    assert error.value.code == 2
    assert "invalid choice: 'pb'" in capsys.readouterr().err


def test_config_typo(capsys):
    assert cli.main(["train", "--set", "training.epoch=3"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(
        "keras-face train: error: Unknown config key 'training.epoch'. Did you mean 'epochs'?"
    )
    assert "Valid keys of 'training': backup_every_steps, batch_size" in error


def test_missing_files(tmp_path, capsys):
    assert cli.main(["train", "--config", str(tmp_path / "none.yaml")]) == 1
    assert (
        capsys.readouterr().err.strip()
        == f"keras-face train: error: config file not found: {tmp_path / 'none.yaml'}"
    )
    assert (
        cli.main(["eval", "--model", str(tmp_path / "m.keras"), "--bin", str(tmp_path / "lfw.bin")])
        == 1
    )
    assert "verification file not found" in capsys.readouterr().err
    assert cli.main(["export", "--model", str(tmp_path / "m.keras"), "--format", "onnx"]) == 1
    assert (
        capsys.readouterr().err.strip()
        == f"keras-face export: error: model not found: {tmp_path / 'm.keras'}"
    )
    assert cli.main(["pack", "--images", str(tmp_path / "faces"), "--output", "x.rec"]) == 1
    assert "image folder not found" in capsys.readouterr().err


def test_class_count_mismatch(tmp_path, capsys):
    status = cli.main(
        [
            "train",
            "--output",
            str(tmp_path / "run"),
            "--quiet",
            "data.identities=6",
            "data.images_per_identity=3",
            "data.num_classes=5",
            "data.heldout_identities=4",
            "data.heldout_pairs=20",
            "data.image_size=16",
        ]
    )
    assert status == 1
    assert (
        "data.num_classes=5 does not match the training data, which has 6 identities"
        in capsys.readouterr().err
    )


def test_batch_not_divisible_by_replicas(tmp_path):
    completed = run_cli(
        "train",
        "--output",
        tmp_path / "run",
        "--quiet",
        "--set",
        "training.cpu_replicas=2",
        "--set",
        "training.batch_size=15",
    )
    assert completed.returncode == 1, completed.stderr[-3000:]
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "keras-face train: error: The global batch size must be a multiple of the 2 replicas"
    )
    assert last.endswith("Received: batch_size=15")


def test_export_and_eval_commands(tmp_path, capsys):
    import numpy as np

    from keras_face.data import write_bin

    model = training_testing.tiny_backbone(image_size=16)
    model_path = tmp_path / "embedding.keras"
    model.save(model_path)
    assert cli.main(["export", "--model", str(model_path), "--format", "tflite", "--check"]) == 0
    out = capsys.readouterr().out
    assert "Exported tiny (tflite, float32 input)" in out and "max abs difference" in out
    assert (tmp_path / "embedding.tflite").exists()

    images, labels = training_testing.identity_images(4, 10)
    pairs_images, issame = [], []
    for index in range(20):
        same = index % 2 == 0
        first = (index % 4) * 10
        second = first + 1 if same else ((index % 4 + 1) % 4) * 10
        pairs_images += [images[first], images[second]]
        issame.append(same)
    bin_path = tmp_path / "tiny.bin"
    write_bin(str(bin_path), np.stack(pairs_images), np.array(issame), progress=False)
    assert (
        cli.main(
            [
                "eval",
                "--model",
                str(model_path),
                "--bin",
                str(bin_path),
                "--folds",
                "2",
                "--json",
                str(tmp_path / "eval.json"),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "tiny" in table and "accuracy % (2-fold)" in table
    assert (tmp_path / "eval.json").exists()


def test_pack_pairs_into_bin(tmp_path, capsys):
    from PIL import Image

    from keras_face.data import read_bin

    images, labels = training_testing.identity_images(2, 2)
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "faces" / f"id{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index}.png")
    (tmp_path / "pairs.txt").write_text("id0/0.png id0/1.png 1\nid0/0.png id1/2.png 0\n")
    assert (
        cli.main(
            [
                "pack",
                "--images",
                str(tmp_path / "faces"),
                "--pairs",
                str(tmp_path / "pairs.txt"),
                "--output",
                str(tmp_path / "pairs.bin"),
            ]
        )
        == 0
    )
    assert "Wrote 2 pairs (1 genuine)" in capsys.readouterr().out
    loaded, issame = read_bin(str(tmp_path / "pairs.bin"), progress=False)
    assert loaded.shape == (4, 16, 16, 3) and issame.tolist() == [True, False]
    assert (
        cli.main(
            ["pack", "--images", str(tmp_path / "faces"), "--output", str(tmp_path / "faces.rec")]
        )
        == 0
    )
    assert "Packed 4 images of 2 identities" in capsys.readouterr().out
    assert (tmp_path / "faces.idx").exists()
    (tmp_path / "bad.txt").write_text("only_one_token\n")
    assert (
        cli.main(
            [
                "pack",
                "--images",
                str(tmp_path / "faces"),
                "--pairs",
                str(tmp_path / "bad.txt"),
                "--output",
                str(tmp_path / "bad.bin"),
            ]
        )
        == 1
    )
    assert "expected 'path_a path_b 1|0'" in capsys.readouterr().err


def test_bad_data_file_is_one_line(tmp_path, capsys):
    # A .rec pack whose records are not RecordIO: the reader's error, one line, status 1.
    rec_path = tmp_path / "train.rec"
    rec_path.write_bytes(b"this is not a RecordIO pack" * 4)
    (tmp_path / "train.idx").write_text("0\t0\n")
    status = cli.main(
        [
            "train",
            "--output",
            str(tmp_path / "run"),
            "--quiet",
            "data.source=recordio",
            f"data.path={rec_path}",
            "data.image_size=16",
        ]
    )
    assert status == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("keras-face train: error: ") and "\n" not in error
    assert "wrong magic word" in error and "Traceback" not in error


def test_bad_pairs_line_is_a_project_error(tmp_path, capsys):
    (tmp_path / "faces" / "a").mkdir(parents=True)
    (tmp_path / "pairs.txt").write_text("a/1.png\n")
    status = cli.main(
        [
            "pack",
            "--images",
            str(tmp_path / "faces"),
            "--pairs",
            str(tmp_path / "pairs.txt"),
            "--output",
            str(tmp_path / "pairs.bin"),
        ]
    )
    assert status == 1
    error = capsys.readouterr().err.strip()
    assert error == (
        f"keras-face pack: error: {tmp_path / 'pairs.txt'}:1: expected 'path_a path_b 1|0' or an "
        "LFW pairs line ('name n1 n2' or 'name1 n1 name2 n2'). Received: line='a/1.png'"
    )


@pytest.mark.parametrize("error_type", [TypeError, ValueError, KeyError])
def test_programming_error_keeps_its_traceback(monkeypatch, error_type, capsys):
    # A bug (any exception that is not a keras_face error or a missing file) propagates.
    def broken_step(*args, **kwargs):
        raise error_type("a bug in a training step")

    monkeypatch.setattr(training, "train", broken_step)
    with pytest.raises(error_type, match="a bug in a training step"):
        cli.main(["train", "--quiet"])
    assert "keras-face train: error" not in capsys.readouterr().err


def test_expected_errors_are_the_project_errors():
    from keras_face import errors

    expected = cli.expected_errors()
    assert issubclass(training.ConfigError, errors.KerasFaceError)
    assert issubclass(training.TrainingDivergedError, errors.KerasFaceError)
    assert isinstance(training.ConfigError("x"), expected)
    assert isinstance(training.TrainingDivergedError("x"), expected)
    assert isinstance(FileNotFoundError(2, "No such file", "x.rec"), expected)
    assert not isinstance(ValueError("x"), expected)
    assert not isinstance(TypeError("x"), expected)
    assert issubclass(training.ConfigError, ValueError)  # callers catching ValueError still do
