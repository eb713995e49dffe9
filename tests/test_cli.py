import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras_face.distillation
from keras_face import cli
from keras_face import data as keras_face_data
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
    for command in ("train", "eval", "pack", "export", "convert"):
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


def test_eval_writes_the_error_versus_discard_of_norm_and_kappa(tmp_path, capsys):
    import json

    import keras
    import numpy as np

    from keras_face import evaluation
    from keras_face import uncertainty
    from keras_face.data import read_bin
    from keras_face.data import write_bin

    keras.utils.set_random_seed(0)
    backbone = training_testing.tiny_backbone(image_size=16)
    confidence = uncertainty.SphericalConfidenceHead("mlp", hidden_units=(4,), name="confidence")
    image = keras.Input((16, 16, 3), name="image")
    embedding = backbone(image)
    kappa = confidence(embedding)
    # Random last-layer weights, so that kappa differs between images.
    confidence.output_layer.kernel.assign(np.random.default_rng(1).normal(size=(4, 1)))
    outputs = {
        "embedding": keras.layers.Identity(name="embedding")(embedding),
        "kappa": keras.layers.Identity(name="kappa")(kappa),
    }
    model_path = tmp_path / "scf.keras"
    keras.Model(image, outputs, name="tiny_scf").save(model_path)

    images, _ = training_testing.identity_images(4, 10)
    pair_images, issame = [], []
    for index in range(40):
        same = index % 2 == 0
        first = (index % 4) * 10 + index // 8
        second = first + 1 + index // 8 if same else ((index % 4 + 1) % 4) * 10 + index // 8
        pair_images += [images[first], images[second]]
        issame.append(same)
    pair_images, issame = np.stack(pair_images), np.array(issame)
    bin_path = tmp_path / "tiny.bin"
    write_bin(str(bin_path), pair_images, issame, progress=False)
    json_path = tmp_path / "eval.json"
    argv = ["eval", "--model", str(model_path), "--bin", str(bin_path), "--folds", "2"]
    argv += ["--edc", "--edc-fmr", "0.1", "--json", str(json_path)]
    assert cli.main(argv) == 0
    table = capsys.readouterr().out
    assert "accuracy % (2-fold)" in table and "EDC area to 0.2" in table
    curves = json.loads(json_path.read_text())["tiny"]["edc"]["curves"]
    assert sorted(curves) == ["kappa", "norm", "random"]

    # The same curves from the model's own outputs on the stored (JPEG-decoded) images.
    pair_images, issame = read_bin(str(bin_path))
    loaded = keras.saving.load_model(model_path)
    raw = loaded.predict(pair_images.astype("float32"), verbose=0)
    norms = np.linalg.norm(raw["embedding"], axis=1)
    flipped = loaded.predict(pair_images[:, :, ::-1].astype("float32"), verbose=0)["embedding"]
    fused = raw["embedding"].astype("float64") + flipped
    fused /= np.linalg.norm(fused, axis=1, keepdims=True)
    scores = np.sum(fused[0::2] * fused[1::2], axis=1)
    for name, quality in {"norm": norms, "kappa": np.asarray(raw["kappa"]).reshape(-1)}.items():
        expected = evaluation.error_versus_discard(
            scores, issame, quality[0::2], quality[1::2], fmr=0.1, discard_limit=0.2
        )
        assert len(np.unique(quality)) > 20  # a real ranking, not all ties
        np.testing.assert_allclose(curves[name]["partial_area"], expected.partial_area, atol=1e-6)
        np.testing.assert_allclose(
            curves[name]["discard_fraction"], expected.discard_fraction, atol=1e-12
        )
        assert curves[name]["fmr"] <= 0.1

    # A one-output embedding model gets the norm and the random floor only.
    backbone_path = tmp_path / "embedding.keras"
    backbone.save(backbone_path)
    argv = ["eval", "--model", str(backbone_path), "--bin", str(bin_path), "--edc"]
    assert cli.main(argv + ["--folds", "2", "--json", str(json_path)]) == 0
    assert sorted(json.loads(json_path.read_text())["tiny"]["edc"]["curves"]) == [
        "norm",
        "random",
    ]
    capsys.readouterr()
    assert cli.main(["eval", "--model", str(model_path), "--edc", "--ijb", str(tmp_path)]) == 1
    assert "--edc needs --bin files" in capsys.readouterr().err
    assert cli.main(argv + ["--edc-fmr", "0"]) == 1
    assert "Received: --edc-fmr=0.0" in capsys.readouterr().err


def test_help_does_not_load_keras_or_tensorflow():
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from keras_face import cli\n"
            "try:\n"
            "    cli.main(['--help'])\n"
            "except SystemExit:\n"
            "    pass\n"
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))",
        ],
        env=training_testing.script_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "train" in completed.stdout
    assert completed.stdout.strip().splitlines()[-1] == "[]"


def test_tensorflow_start_up_noise_is_hidden():
    env = training_testing.script_environment()
    env.pop("TF_CPP_MIN_LOG_LEVEL")  # what a new user has
    completed = subprocess.run(
        [sys.executable, "-m", "keras_face.cli", "train", "--set", "training.epochz=1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 1
    assert completed.stdout == ""
    # One line: no oneDNN / CUDA / absl start-up lines around the error.
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("keras-face train: error: Unknown config key")


def test_train_and_eval_options_all_have_help():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for command in ("train", "eval"):
        subparser = subparsers.choices[command]
        for action in subparser._actions:
            if action.dest != "help":
                assert action.help, f"keras-face {command} {action.option_strings}"


def test_ctrl_c_prints_how_to_resume(tmp_path, monkeypatch, capsys):
    output = str(tmp_path / "run")

    def interrupted(*args, **kwargs):
        raise training.trainer.TrainingInterrupted(output, has_backup=True)

    monkeypatch.setattr(training, "train", interrupted)
    status = cli.main(["train", "--set", "training.epochs=2", "--output", "old", "--restart"])
    assert status == cli.EXIT_INTERRUPTED == 130
    error = capsys.readouterr().err
    assert error == (
        f"keras-face train: interrupted; the backup is in {output}/backup. To resume: "
        f"keras-face train --set training.epochs=2 --output {output}\n"
    )
    # Without --output the message says where the run went.
    assert cli.main(["train", "data.identities=20"]) == 130
    assert capsys.readouterr().err.endswith(
        f"To resume: keras-face train data.identities=20 --output {output}\n"
    )

    def interrupted_early(*args, **kwargs):
        raise training.trainer.TrainingInterrupted(output, has_backup=False)

    monkeypatch.setattr(training, "train", interrupted_early)
    assert cli.main(["train", "--output=" + output]) == 130
    assert capsys.readouterr().err == (
        f"keras-face train: interrupted before the first backup of {output}; to start "
        f"again: keras-face train --output {output}\n"
    )


def test_eval_of_a_model_with_an_unknown_layer_is_one_line(tmp_path, capsys):
    import keras

    @keras.saving.register_keras_serializable(package="elsewhere")
    class NotKerasFace(keras.layers.Layer):
        def call(self, inputs):
            return inputs

    inputs = keras.Input((4,))
    path = str(tmp_path / "m.keras")
    keras.Model(inputs, NotKerasFace()(inputs)).save(path)
    keras.saving.get_custom_objects().pop("elsewhere>NotKerasFace")
    images = np.zeros((2, 8, 8, 3), np.uint8)
    keras_face_data.write_bin(str(tmp_path / "p.bin"), images, np.array([True]), progress=False)
    assert cli.main(["eval", "--model", path, "--bin", str(tmp_path / "p.bin")]) == 1
    error = capsys.readouterr().err
    assert error.startswith(
        f"keras-face eval: error: {path}: Could not locate class 'NotKerasFace' (a custom layer"
    )
    assert error.count("\n") == 1


def test_a_saved_model_loads_in_a_fresh_process_with_load_model(tmp_path):
    # keras_face.load_model registers every layer of the package before loading.
    path = tmp_path / "tiny.keras"
    script = (
        "import keras, numpy as np, keras_face\n"
        "from keras_face import models\n"
        f"models.mobilefacenet(input_shape=(32, 32, 3), embedding_size=16).save({str(path)!r})\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=600)
    loader = (
        "import keras_face\n"
        f"model = keras_face.load_model({str(path)!r})\n"
        "print(type(model).__name__, model.outputs[0].shape[-1])\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", loader], capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split()[-2:] == ["Functional", "16"]


def test_train_with_generations_runs_the_recursive_distillation(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(
        keras_face.distillation,
        "train_generations",
        lambda config, output_dir, overrides, progress: calls.append(("generations", overrides)),
    )
    monkeypatch.setattr(training, "train", lambda *args, **kwargs: calls.append(("train", None)))
    overrides = ["training.method=distillation", "distillation.generations=2"]
    assert cli.main(["train", "--output", str(tmp_path / "run"), *overrides]) in (0, None)
    assert calls == [("generations", overrides)]
    calls.clear()
    assert cli.main(["train", "--output", str(tmp_path / "run"), "training.epochs=1"]) in (0, None)
    assert calls == [("train", None)]


def test_a_data_error_inside_tf_data_is_one_line(monkeypatch, capsys, tmp_path):
    # A strict reader raises inside the pipeline; TensorFlow wraps the message.
    folder = tmp_path / "faces"
    for identity in ("a", "b"):
        (folder / identity).mkdir(parents=True)
        for index in range(2):
            (folder / identity / f"{index}.jpg").write_bytes(
                tf.io.encode_jpeg(tf.zeros((8, 8, 3), tf.uint8)).numpy()
            )
    (folder / "b" / "1.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 40)
    faces = keras_face_data.read_image_folder(str(folder), batch_size=2, strict=True)
    with pytest.raises(tf.errors.OpError) as wrapped:
        for _ in faces.dataset:
            pass
    message = cli.data_error_inside(wrapped.value)
    assert message is not None and "b/1.jpg" in message.replace("\\\\", "/")
    assert "\\n" not in message

    def fail(args):
        raise wrapped.value

    monkeypatch.setitem(cli.COMMANDS, "pack", fail)
    assert cli.main(["pack", "--images", str(folder), "--output", str(tmp_path / "o.rec")]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("keras-face pack: error: ") and len(error.splitlines()) == 1
