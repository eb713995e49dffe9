"""OcclusionAdversarialModel: worst-of-K against NumPy, the gradient path, fit (spec 4.5, 3)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_face import data
from keras_face import heads
from keras_face import training
from keras_face.models import apply_embedding_output
from keras_face.occlusion import OcclusionAdversarialModel
from keras_face.occlusion import half_masks
from keras_face.occlusion import imitation_loss
from keras_face.occlusion import mirror_landmarks
from tests.training.test_trainer import SMALL_RUN

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the training model runs on TensorFlow"
)
SIZE = 4
CLASSES = 3
SCALE = 8.0


def _linear_backbone(kernel):
    # images -> (trunk: identity) -> Flatten -> Dense: the feature map is the image itself.
    image = keras.Input((SIZE, SIZE, 1), name="image")
    x = keras.layers.Activation("linear", name="trunk")(image)
    x = keras.layers.Flatten(name="embedding_flatten")(x)
    dense = keras.layers.Dense(kernel.shape[1], use_bias=False, name="embedding_fc")
    embeddings = dense(x)
    backbone = keras.Model(image, embeddings, name="linear")
    dense.set_weights([kernel])
    return backbone


def _setup(seed=0):
    rng = np.random.default_rng(seed)
    backbone_kernel = rng.normal(size=(SIZE * SIZE, 5)).astype(np.float32)
    head = heads.CosFace(CLASSES, scale=SCALE, margin=0.0)
    head.build([(None, 5), (None,)])
    class_kernel = rng.normal(size=(5, CLASSES)).astype(np.float32)
    head.kernel.assign(class_kernel)
    images = rng.uniform(-1, 1, (4, SIZE, SIZE, 1)).astype(np.float32)
    labels = np.array([0, 1, 2, 1], np.int32)
    model = OcclusionAdversarialModel(
        _linear_backbone(backbone_kernel), head, families=("halves",), seed=0
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    return model, backbone_kernel, class_kernel, images, labels


def _numpy_losses(images, labels, backbone_kernel, class_kernel):
    embeddings = images.reshape(len(images), -1) @ backbone_kernel
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    centres = class_kernel / np.linalg.norm(class_kernel, axis=0, keepdims=True)
    logits = SCALE * embeddings @ centres
    logits -= logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels]


def test_worst_of_k_against_numpy():
    model, backbone_kernel, class_kernel, images, labels = _setup()
    masks = half_masks(SIZE)
    candidate = np.stack(
        [
            _numpy_losses(images * (1 - m[None, :, :, None]), labels, backbone_kernel, class_kernel)
            for m in masks
        ]
    )
    chosen = np.argmax(candidate, axis=0)
    assert len(set(chosen.tolist())) > 1  # the images do not all pick the same half
    clean = _numpy_losses(images, labels, backbone_kernel, class_kernel).mean()
    expected = clean + candidate[chosen, np.arange(4)].mean()

    got = model.candidate_losses(tf.constant(images), tf.constant(labels), tf.constant(masks))
    np.testing.assert_allclose(got.numpy(), candidate, rtol=1e-5, atol=1e-6)
    outputs = model([images, labels], training=True)
    loss = model.compute_loss(x=(images, labels), y=labels, y_pred=outputs, training=True)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    counts = model.choice_counts.numpy()
    np.testing.assert_array_equal(counts[0, :4], np.bincount(chosen, minlength=4))


def test_the_choice_is_not_differentiated():
    model, backbone_kernel, _, images, labels = _setup(seed=1)
    masks = half_masks(SIZE)
    with tf.GradientTape() as tape:
        outputs = model([images, labels], training=True)
        loss = model.compute_loss(x=(images, labels), y=labels, y_pred=outputs, training=True)
    got = tape.gradient(loss, model.head.kernel)
    candidate = model.candidate_losses(images, labels, masks).numpy()
    chosen = np.argmax(candidate, axis=0)
    occluded = images * (1 - masks[chosen][:, :, :, None])
    with tf.GradientTape() as tape:
        clean_logits = model.head([model.backbone(images), labels], training=True)
        occluded_logits = model.head([model.backbone(occluded), labels], training=True)
        fixed = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(labels, clean_logits, from_logits=True)
        ) + tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(labels, occluded_logits, from_logits=True)
        )
    expected = tape.gradient(fixed, model.head.kernel)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def _conv_backbone(size):
    image = keras.Input((size, size, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv1")(image)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv2")(x)
    embeddings = apply_embedding_output(x, "E", embedding_size=8)
    return keras.Model(image, embeddings, name="tiny")


@pytest.mark.parametrize("space,adversary", [("image", "worst_of_k"), ("feature", "random")])
def test_fit_and_save(space, adversary, tmp_path):
    keras.utils.set_random_seed(0)
    model = OcclusionAdversarialModel(
        _conv_backbone(16), heads.ArcFace(4, scale=16.0), adversary=adversary, space=space
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (16, 16, 16, 3)).astype(np.float32)
    labels = rng.integers(0, 4, 16).astype(np.int32)
    history = model.fit((images, labels), labels, batch_size=8, epochs=2, verbose=0)
    for name in ("loss", "clean_loss", "occluded_loss"):
        assert np.all(np.isfinite(history.history[name])), name
    assert history.history["loss"][0] > history.history["clean_loss"][0]
    assert model.choice_counts.numpy().sum() == 4 * 8
    if adversary == "worst_of_k":
        assert history.history["adversary_gain"][0] > 0
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    revived = keras.saving.load_model(path)
    np.testing.assert_allclose(
        revived.embedding_model.predict(images, verbose=0),
        model.embedding_model.predict(images, verbose=0),
        rtol=1e-6,
    )


def test_bad_arguments_are_named():
    backbone = _conv_backbone(16)
    with pytest.raises(
        ValueError, match="this backbone gives 2x2 at 8x8 images .use images of at least 16 px"
    ):
        OcclusionAdversarialModel(_conv_backbone(8), heads.ArcFace(4), space="feature")
    with pytest.raises(ValueError, match="families="):
        OcclusionAdversarialModel(backbone, heads.ArcFace(4), families=("eyes",))
    with pytest.raises(ValueError, match="adversary='best'"):
        OcclusionAdversarialModel(backbone, heads.ArcFace(4), adversary="best")


def test_train_selects_the_method(tmp_path):
    results = training.train(
        output_dir=str(tmp_path / "run"),
        overrides=SMALL_RUN
        + [
            "training.method=occlusion_adversarial",
            "occlusion.families=[halves,landmarks]",
            "occlusion.landmarks=input",
        ],
        backbone=_conv_backbone(16),
        progress=False,
    )
    assert 0.4 < results["verification"]["heldout"]["accuracy"] <= 1.0
    assert os.path.exists(tmp_path / "run" / "embedding_model.keras")
    with pytest.raises(training.ConfigError, match="occlusion.space='pixels'"):
        training.load_config(None, ["occlusion.space=pixels"])


def test_imitation_loss_keeps_the_successful_attacks_only():
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]], np.float32))
    worst = np.array([0, 2, 2])
    # p_y(clean) - p_y(worst): 0.9 - 0.5 = 0.4 (kept), 0.5 - 0.45 = 0.05 (dropped), 0.3 - 0.1.
    clean_loss = -np.log(np.array([0.9, 0.5, 0.3], np.float32))
    worst_loss = -np.log(np.array([0.5, 0.45, 0.1], np.float32))
    got = keras.ops.convert_to_numpy(imitation_loss(logits, worst, clean_loss, worst_loss, 0.1))
    np.testing.assert_allclose(got, [-np.log(0.7), 0.0, -np.log(0.6)], rtol=1e-5)


def test_the_generator_learns_the_worst_mask():
    recogniser, *_ = _setup()
    # The recogniser frozen: each sample keeps its worst half, which the generator learns.
    recogniser.backbone.trainable = False
    recogniser.head.trainable = False
    model = OcclusionAdversarialModel(
        recogniser.backbone,
        recogniser.head,
        adversary="generator",
        families=("halves",),
        generator_weight=1.0,
        score_threshold=0.0,
        temperature=0.3,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    assert [v.path for v in model.trainable_variables] == [
        "occlusion_generator/generator_scores/kernel",
        "occlusion_generator/generator_scores/bias",
    ]
    _, _, _, images, labels = _setup()
    images = np.concatenate([images] * 16)
    labels = np.concatenate([labels] * 16)
    history = model.fit((images, labels), labels, batch_size=16, epochs=15, verbose=0)
    agreement = history.history["generator_agreement"]
    assert agreement[0] < 0.9 and agreement[-1] == 1.0
    assert history.history["generator_loss"][-1] < 0.1 * history.history["generator_loss"][0]
    assert np.all(np.isfinite(history.history["loss"]))


def test_landmarks_flow_through_the_pipeline_and_follow_flips():
    faces = data.synthetic_faces(4, 4, seed=0, image_size=16, jpeg=False)
    mirrored = mirror_landmarks(faces.landmarks, 16).astype(np.float32)
    dataset = training.make_training_dataset(
        faces.images,
        faces.labels,
        8,
        epochs=2,
        seed=1,
        extras=(faces.landmarks,),
        flipped_extras=(mirrored,),
    )
    flat = faces.images.reshape(len(faces), -1)
    mirror_flat = faces.images[:, :, ::-1].reshape(len(faces), -1)
    flips = 0
    for (images, _, landmarks), _ in dataset:
        for image, points in zip(images.numpy().astype(np.uint8), landmarks.numpy()):
            same = np.flatnonzero((flat == image.reshape(-1)).all(1))
            if same.size:
                np.testing.assert_array_equal(points, faces.landmarks[same[0]])
            else:  # a flipped image: its landmarks are the mirrored ones
                index = np.flatnonzero((mirror_flat == image.reshape(-1)).all(1))[0]
                np.testing.assert_array_equal(points, mirrored[index])
                flips += 1
    assert 0 < flips < 32


def test_per_image_landmark_masks_train():
    faces = data.synthetic_faces(4, 4, seed=0, image_size=16, jpeg=False)
    model = OcclusionAdversarialModel(
        _conv_backbone(16),
        heads.ArcFace(4, scale=16.0),
        families=("landmarks",),
        landmarks="input",
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    dataset = training.make_training_dataset(
        faces.images,
        faces.labels,
        8,
        epochs=2,
        seed=1,
        extras=(faces.landmarks,),
        flipped_extras=(mirror_landmarks(faces.landmarks, 16).astype(np.float32),),
    )
    history = model.fit(dataset, epochs=2, steps_per_epoch=2, verbose=0)
    assert np.all(np.isfinite(history.history["occluded_loss"]))
    assert model.choice_counts.numpy().sum() == 4 * 8
    with pytest.raises(ValueError, match="space='feature'"):
        OcclusionAdversarialModel(
            _conv_backbone(16), heads.ArcFace(4), landmarks="input", space="feature"
        )
