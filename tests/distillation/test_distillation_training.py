"""Distillation training: online and offline teachers, flip pairing, recursion, config runs."""

import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from keras_face import data as face_data
from keras_face import heads
from keras_face import training
from keras_face.distillation import DistillationTrainingModel
from keras_face.distillation import TeacherEmbeddings
from keras_face.distillation import check_teacher_embeddings
from keras_face.distillation import load_teacher_embeddings
from keras_face.distillation import make_distillation_dataset
from keras_face.distillation import precompute_teacher_embeddings
from keras_face.distillation import recursive_distillation
from keras_face.distillation import train_generations
from keras_face.errors import ConfigError
from tests.training import training_testing

pytestmark = pytest.mark.tf_only

NUM_CLASSES = 4
REPLICA_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "replica_script.py")
BATCH = 8


def _data():
    return training_testing.identity_images(NUM_CLASSES, 6, seed=2)


def _teacher(embedding_size=12, name="teacher"):
    keras.utils.set_random_seed(7)
    return training_testing.tiny_backbone(embedding_size=embedding_size, name=name)


def _batch_norm_state(model):
    return [
        np.asarray(variable)
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for variable in (layer.moving_mean, layer.moving_variance)
    ]


def test_online_teacher_is_frozen_and_its_statistics_untouched():
    images, labels = _data()
    teacher = _teacher(embedding_size=8)
    before = [np.asarray(w) for w in teacher.weights]
    statistics = _batch_norm_state(teacher)
    keras.utils.set_random_seed(0)
    student = training_testing.tiny_backbone(name="student")
    with pytest.warns(UserWarning, match="frozen"):
        model = DistillationTrainingModel(student, heads.ArcFace(NUM_CLASSES, scale=16.0), teacher)
    assert teacher.trainable is False and model.embedding_model is student
    student_before = [np.asarray(w) for w in student.weights]
    model.compile(optimizer=training.L2SGD(0.05, momentum=0.9))
    dataset = training.make_training_dataset(images, labels, BATCH, epochs=2, seed=1)
    history = model.fit(dataset, epochs=2, verbose=0)
    for name in ("loss", "distillation_loss", "teacher_cosine", "accuracy"):
        assert np.all(np.isfinite(history.history[name])), name
    assert 0.0 < history.history["distillation_loss"][0] <= 4.0
    for old, new in zip(before, teacher.weights):
        np.testing.assert_array_equal(old, np.asarray(new))
    for old, new in zip(statistics, _batch_norm_state(teacher)):
        np.testing.assert_array_equal(old, new)
    # while the student's batch norm did move
    assert any(
        not np.array_equal(old, np.asarray(new))
        for old, new in zip(student_before, student.weights)
    )


def test_total_loss_is_head_loss_plus_weighted_distillation():
    images, labels = _data()
    teacher = _teacher(embedding_size=8)
    keras.utils.set_random_seed(0)
    student = training_testing.tiny_backbone(name="student")
    head = heads.ArcFace(NUM_CLASSES, scale=16.0)
    model = DistillationTrainingModel(student, head, teacher, weight=5.0, loss="cosine")
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    x = (images[:BATCH].astype("float32"), labels[:BATCH])
    logs = model.train_on_batch(x, labels[:BATCH], return_dict=True)
    student_out = np.asarray(student(x[0], training=True))
    teacher_out = np.asarray(teacher(x[0], training=False))
    cos = np.sum(student_out * teacher_out, 1) / (
        np.linalg.norm(student_out, axis=1) * np.linalg.norm(teacher_out, axis=1)
    )
    logits = np.asarray(head([student_out, x[1]], training=True))
    shifted = logits - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    cross_entropy = -log_probs[np.arange(BATCH), x[1]].mean()
    assert logs["distillation_loss"] == pytest.approx(np.mean(1 - cos), rel=1e-4)
    assert logs["teacher_cosine"] == pytest.approx(np.mean(cos), rel=1e-4, abs=1e-5)
    assert logs["loss"] == pytest.approx(cross_entropy + 5.0 * np.mean(1 - cos), rel=1e-4)


def test_offline_dataset_pairs_flipped_embeddings():
    # Two distinct images; "teacher embeddings" that say which image and which side.
    images = np.zeros((2, 4, 4, 3), np.uint8)
    images[0, :, 0] = 255  # left column white
    images[1, 0, :] = 100  # top row grey (symmetric, but its row still tells the index)
    labels = np.array([0, 1], np.int32)
    embeddings = TeacherEmbeddings(
        np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32),
        np.array([[-1.0, 0.0, 1.0], [0.0, -1.0, 1.0]], np.float32),
    )
    dataset = make_distillation_dataset(images, labels, embeddings, 2, epochs=6, seed=5)
    reference = training.make_training_dataset(images, labels, 2, epochs=6, seed=5)
    flips = 0
    for ((fed, fed_labels, teacher), target), ((ref_images, ref_labels), _) in zip(
        dataset, reference
    ):
        np.testing.assert_array_equal(fed.numpy(), ref_images.numpy())  # same batches
        np.testing.assert_array_equal(fed_labels.numpy(), ref_labels.numpy())
        np.testing.assert_array_equal(target.numpy(), fed_labels.numpy())
        for image, label, row in zip(fed.numpy(), fed_labels.numpy(), teacher.numpy()):
            flipped = label == 0 and image[0, -1, 0] == 255
            flips += int(flipped)
            table = embeddings.flipped_embeddings if flipped else embeddings.embeddings
            np.testing.assert_array_equal(row, table[label])
            if label == 0 and not flipped:
                assert image[0, 0, 0] == 255
    assert 0 < flips < 6  # both cases occurred for image 0


def test_offline_training_and_round_trip(tmp_path):
    images, labels = _data()
    teacher = _teacher(embedding_size=12)
    embeddings = precompute_teacher_embeddings(teacher, images)
    np.testing.assert_allclose(
        embeddings.flipped_embeddings[:3],
        np.asarray(teacher(images[:3, :, ::-1].astype("float32"), training=False)),
        rtol=1e-5,
        atol=1e-5,
    )
    path = tmp_path / "teacher.npz"
    embeddings.save(path)
    loaded = load_teacher_embeddings(path, num_images=len(images), dim=12)
    assert loaded.teacher == "teacher"
    keras.utils.set_random_seed(0)
    student = training_testing.tiny_backbone(name="student")
    model = DistillationTrainingModel(
        student, heads.ArcFace(NUM_CLASSES, scale=16.0), teacher_dim=12, projection="dense"
    )
    assert model.offline and [tensor.name for tensor in model.inputs][2] == "teacher_embedding"
    model.compile(optimizer=training.L2SGD(0.05, momentum=0.9))
    dataset = make_distillation_dataset(images, labels, loaded, BATCH, epochs=3, seed=1)
    history = model.fit(dataset, epochs=3, verbose=0)
    losses = history.history["distillation_loss"]
    assert losses[-1] < losses[0]  # the student moves towards the teacher
    assert student.outputs[0].shape[-1] == 8  # the deployed student keeps its dimension
    saved = tmp_path / "model.keras"
    model.save(saved)
    restored = keras.saving.load_model(saved)
    assert isinstance(restored, DistillationTrainingModel)
    batch = (images[:4].astype("float32"), labels[:4], loaded.embeddings[:4])
    for name in ("logits", "distillation_loss", "teacher_cosine"):
        np.testing.assert_allclose(
            np.asarray(restored(batch)[name]), np.asarray(model(batch)[name]), rtol=1e-5, atol=1e-5
        )
    assert restored.distillation.get_config()["projection"] == "dense"


def test_mixed_precision_online():
    images, labels = _data()
    teacher = _teacher(embedding_size=8)
    keras.config.set_dtype_policy("mixed_float16")
    keras.utils.set_random_seed(0)
    student = training_testing.tiny_backbone(name="student")
    model = DistillationTrainingModel(student, heads.ArcFace(NUM_CLASSES, scale=16.0), teacher)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    dataset = training.make_training_dataset(images, labels, BATCH, epochs=1, seed=1)
    history = model.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert np.isfinite(history.history["distillation_loss"][0])


def test_bad_inputs():
    images, labels = _data()
    student = training_testing.tiny_backbone(name="student")
    head = heads.ArcFace(NUM_CLASSES)
    wrong_size = training_testing.tiny_backbone(image_size=8, name="small_teacher")
    with pytest.raises(
        ValueError,
        match=r"teacher input shape=\(None, 8, 8, 3\), student input "
        r"shape=\(None, 16, 16, 3\)",
    ):
        DistillationTrainingModel(student, head, wrong_size)
    other_dim = _teacher(embedding_size=12)
    with pytest.raises(ValueError, match=r"student shape=\(None, 8\), teacher shape=\(None, 12\)"):
        DistillationTrainingModel(student, heads.ArcFace(NUM_CLASSES), other_dim)
    with pytest.raises(ValueError, match="teacher_dim=None"):
        DistillationTrainingModel(student, heads.ArcFace(NUM_CLASSES))
    good = np.ones((len(images), 4), np.float32)
    bad = good.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"non-finite values in 1 rows \(first rows: \[3\]\)"):
        TeacherEmbeddings(bad, good)
    with pytest.raises(ValueError, match="non-finite"):
        check_teacher_embeddings(good, np.full_like(good, np.inf))
    short = TeacherEmbeddings(good[:-1], good[:-1])
    with pytest.raises(ValueError, match=r"23 rows but there are 24 training images"):
        make_distillation_dataset(images, labels, short, BATCH, epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an already frozen teacher: no warning
        frozen = _teacher(embedding_size=8)
        frozen.trainable = False
        DistillationTrainingModel(
            training_testing.tiny_backbone(name="s2"), heads.ArcFace(NUM_CLASSES), frozen
        )


def _build_generation_model(generation, teacher):
    keras.utils.set_random_seed(generation)  # a different initialisation each generation
    student = training_testing.tiny_backbone(name="student")
    model = DistillationTrainingModel(student, heads.ArcFace(NUM_CLASSES, scale=16.0), teacher)
    model.compile(optimizer=training.L2SGD(0.05, momentum=0.9))
    return model


def test_recursive_generations_start_from_the_previous_one():
    images, labels = _data()
    teacher = _teacher(embedding_size=8)
    teacher_weights = [np.asarray(w) for w in teacher.weights]
    starts, finals = {}, {}

    def train_generation(model, generation):
        starts[generation] = [np.asarray(w) for w in model.backbone.weights + model.head.weights]
        assert int(model.optimizer.iterations) == 0
        dataset = training.make_training_dataset(images, labels, BATCH, epochs=1, seed=generation)
        history = model.fit(dataset, epochs=1, steps_per_epoch=len(images) // BATCH, verbose=0)
        finals[generation] = [np.asarray(w) for w in model.backbone.weights + model.head.weights]
        return history.history

    models, histories = recursive_distillation(
        _build_generation_model, train_generation, teacher, generations=2
    )
    assert len(models) == 2 and len(histories) == 2
    for start, final in zip(starts[2], finals[1]):
        np.testing.assert_array_equal(start, final)
    assert models[1].teacher is teacher  # fixed teacher
    for old, new in zip(teacher_weights, teacher.weights):
        np.testing.assert_array_equal(old, np.asarray(new))
    # each generation's optimizer counted its own steps only
    assert models[1].optimizer is not models[0].optimizer
    assert int(models[1].optimizer.iterations) == int(models[0].optimizer.iterations) == 3


def test_recursive_previous_student_and_bad_builders():
    images, labels = _data()
    teacher = _teacher(embedding_size=8)

    def train_generation(model, generation):
        dataset = training.make_training_dataset(images, labels, BATCH, epochs=1, seed=generation)
        return model.fit(dataset, epochs=1, verbose=0)

    models, _ = recursive_distillation(
        _build_generation_model, train_generation, teacher, generations=2, mode="previous_student"
    )
    second_teacher = models[1].teacher
    assert second_teacher.name == "generation_1_student" and not second_teacher.trainable
    for copied, original in zip(second_teacher.weights, models[0].embedding_model.weights):
        np.testing.assert_array_equal(np.asarray(copied), np.asarray(original))
    with pytest.raises(ValueError, match="Received: mode='born_again'"):
        recursive_distillation(
            _build_generation_model, train_generation, teacher, mode="born_again"
        )
    with pytest.raises(ValueError, match="Received: generations=0"):
        recursive_distillation(_build_generation_model, train_generation, teacher, generations=0)

    reused = _build_generation_model(1, teacher)
    reused.fit(training.make_training_dataset(images, labels, BATCH, 1), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="new optimizer"):
        recursive_distillation(lambda g, t: reused, train_generation, teacher, generations=1)


SMALL_RUN = [
    "data.identities=6",
    "data.images_per_identity=4",
    "data.heldout_identities=4",
    "data.heldout_images_per_identity=2",
    "data.heldout_pairs=20",
    "data.image_size=16",
    "evaluation.n_folds=2",
    "evaluation.every_n_epochs=0",
    "training.epochs=1",
    "training.batch_size=8",
    "training.backup_every_steps=null",
    "training.verbose=0",
    "training.method=distillation",
]


def _student():
    return training_testing.tiny_backbone(image_size=16, name="student")


def _run_teacher(tmp_path):
    # 16-d teacher, 8-d students: the runs use distillation.projection=dense.
    teacher = training_testing.tiny_backbone(embedding_size=16, name="config_teacher")
    path = os.fspath(tmp_path / "teacher.keras")
    teacher.save(path)
    return teacher, path


def test_config_run_with_online_teacher_and_errors(tmp_path):
    _, path = _run_teacher(tmp_path)
    results = training.train(
        overrides=SMALL_RUN + [f"distillation.teacher={path}", "distillation.projection=dense"],
        output_dir=tmp_path / "run",
        backbone=_student(),
        progress=False,
    )
    assert np.isfinite(results["history"]["distillation_loss"][0])
    with open(tmp_path / "run" / "config.yaml") as file:
        assert path in file.read()  # the run folder records the teacher
    bad_runs = {
        "Received: distillation.teacher=None": [],
        r"student shape=\(None, 8\), teacher shape=\(None, 16\)": [f"distillation.teacher={path}"],
        "distillation.generations=2": [
            f"distillation.teacher={path}",
            "distillation.projection=dense",
            "distillation.generations=2",
        ],
    }
    for index, (message, overrides) in enumerate(bad_runs.items()):
        with pytest.raises(ConfigError, match=message):
            training.train(
                overrides=SMALL_RUN + overrides,
                output_dir=tmp_path / f"bad{index}",
                backbone=_student(),
                progress=False,
            )


def test_config_offline_embeddings_and_generations(tmp_path):
    teacher, _ = _run_teacher(tmp_path)
    faces = face_data.synthetic_faces(6, 4, seed=0, image_size=16, quality="realistic")
    embeddings = precompute_teacher_embeddings(teacher, faces.images)
    path = os.fspath(tmp_path / "teacher.npz")
    embeddings.save(path)
    overrides = SMALL_RUN + [
        f"distillation.teacher={path}",
        "distillation.projection=dense",
        "distillation.generations=2",
    ]
    results = train_generations(
        overrides=overrides, output_dir=tmp_path / "gen", backbone=_student, progress=False
    )
    assert [result["generation"] for result in results] == [1, 2]
    assert [result["teacher"] for result in results] == [path, path]
    for number in (1, 2):
        with open(tmp_path / "gen" / f"generation_{number}" / "results.json") as file:
            assert np.isfinite(json.load(file)["history"]["distillation_loss"][0])
    short = TeacherEmbeddings(embeddings.embeddings[:-1], embeddings.flipped_embeddings[:-1])
    short_path = os.fspath(tmp_path / "short.npz")
    short.save(short_path)
    with pytest.raises(ConfigError, match="23 rows but there are 24 training images"):
        training.train(
            overrides=SMALL_RUN + [f"distillation.teacher={short_path}"],
            output_dir=tmp_path / "short",
            backbone=_student(),
            progress=False,
        )


@pytest.mark.slow  # two subprocesses per mode, ~1.5 min each on a shared 2-core machine
@pytest.mark.parametrize("mode", ["online", "offline"])
def test_two_cpu_replicas_match_one(mode, tmp_path):
    outputs = {}
    for replicas in (1, 2):
        path = tmp_path / f"{replicas}.npz"
        completed = subprocess.run(
            [sys.executable, REPLICA_SCRIPT, str(replicas), os.fspath(path), mode],
            env=training_testing.script_environment(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert completed.returncode == 0, completed.stderr[-4000:]
        with np.load(path) as data:
            outputs[replicas] = {key: data[key] for key in data.files}
    one, two = outputs[1], outputs[2]
    assert int(one["iterations"]) == int(two["iterations"]) == 5
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    np.testing.assert_allclose(two["distillation"], one["distillation"], rtol=1e-5)
    assert one["distillation"][-1] < one["distillation"][0]
    np.testing.assert_array_equal(two["teacher_mean"], one["teacher_mean"])
    for key in one:
        if key.startswith("w"):
            np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=2e-5, err_msg=key)
