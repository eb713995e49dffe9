"""IJB-B/C template protocol on small meta files written here."""

import os

import numpy as np
import pytest

from keras_face.evaluation import IJBMeta
from keras_face.evaluation import evaluate_ijb
from keras_face.evaluation import ijb_image_features
from keras_face.evaluation import image_to_template_features
from keras_face.evaluation import read_ijb_meta
from keras_face.evaluation import template_pair_scores

metrics = pytest.importorskip("sklearn.metrics")

# image -> (template, media): template 3 mixes a 3-frame video (media 30), a single photo
# (31) and a 2-frame video (32); template 7 has one photo; template 5 two photos.
IMAGES = [
    ("1.jpg", 3, 30),
    ("2.jpg", 3, 30),
    ("3.jpg", 7, 70),
    ("4.jpg", 3, 31),
    ("5.jpg", 5, 50),
    ("6.jpg", 3, 30),
    ("7.jpg", 5, 51),
    ("8.jpg", 3, 32),
    ("9.jpg", 3, 32),
    ("10.jpg", 9, 90),
]
PAIRS = [(3, 7, 1), (3, 5, 0), (7, 5, 0), (5, 9, 1), (9, 3, 0), (7, 9, 1)]


def write_meta(folder, target="ijbc", landmarks=None, scores=None, shuffle_names=False):
    meta = folder / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    landmarks = rng.uniform(20, 90, (len(IMAGES), 10)) if landmarks is None else landmarks
    scores = rng.uniform(0.5, 1.0, len(IMAGES)) if scores is None else scores
    with open(meta / f"{target}_face_tid_mid.txt", "w") as file:
        for name, template, media in IMAGES:
            file.write(f"{name} {template} {media}\n")
    with open(meta / f"{target}_template_pair_label.txt", "w") as file:
        for first, second, label in PAIRS:
            file.write(f"{first} {second} {label}\n")
    names = [name for name, _, _ in IMAGES]
    if shuffle_names:
        names = names[::-1]
    with open(meta / f"{target}_name_5pts_score.txt", "w") as file:
        for name, points, score in zip(names, landmarks, scores):
            file.write(
                name + " " + " ".join(f"{value:.4f}" for value in points) + f" {score:.6f}\n"
            )
    return landmarks, scores


def reference_template_features(features, templates, medias):
    """Literal per-template loop of insightface's image2template_feature."""
    unique_templates = np.unique(templates)
    template_features = np.zeros((len(unique_templates), features.shape[1]))
    for row, template in enumerate(unique_templates):
        (in_template,) = np.where(templates == template)
        template_images = features[in_template]
        template_medias = medias[in_template]
        unique_medias, counts = np.unique(template_medias, return_counts=True)
        media_features = []
        for media, count in zip(unique_medias, counts):
            (in_media,) = np.where(template_medias == media)
            if count == 1:
                media_features.append(template_images[in_media])
            else:
                media_features.append(np.mean(template_images[in_media], axis=0, keepdims=True))
        template_features[row] = np.sum(np.array(media_features), axis=0)
    norms = np.sqrt(np.einsum("ij,ij->i", template_features, template_features))
    return template_features / norms[:, None], unique_templates


def reference_scores(template_features, unique_templates, first, second):
    lookup = {int(template): row for row, template in enumerate(unique_templates)}
    return np.array(
        [
            np.sum(template_features[lookup[a]] * template_features[lookup[b]])
            for a, b in zip(first, second)
        ]
    )


def test_read_meta(tmp_path):
    landmarks, scores = write_meta(tmp_path / "IJBC")
    meta = read_ijb_meta(tmp_path / "IJBC", "IJBC")
    assert isinstance(meta, IJBMeta)
    np.testing.assert_array_equal(meta.image_names, [name for name, _, _ in IMAGES])
    np.testing.assert_array_equal(meta.templates, [t for _, t, _ in IMAGES])
    np.testing.assert_array_equal(meta.medias, [m for _, _, m in IMAGES])
    np.testing.assert_allclose(meta.landmarks, landmarks.reshape(-1, 5, 2), atol=1e-4)
    np.testing.assert_allclose(meta.detector_scores, scores, atol=1e-6)
    np.testing.assert_array_equal(meta.pair_templates1, [p[0] for p in PAIRS])
    np.testing.assert_array_equal(meta.pair_templates2, [p[1] for p in PAIRS])
    np.testing.assert_array_equal(meta.pair_labels, [p[2] for p in PAIRS])
    assert meta.image_dir is None  # no loose_crop folder
    # Files directly in the folder and IJB-B naming.
    write_meta(tmp_path / "flat", target="ijbb")
    flat = tmp_path / "flat"
    for name in os.listdir(flat / "meta"):
        os.rename(flat / "meta" / name, flat / name)
    assert len(read_ijb_meta(flat, "IJB-B").templates) == len(IMAGES)
    with pytest.raises(ValueError, match="target='LFW'"):
        read_ijb_meta(flat, "LFW")
    with pytest.raises(FileNotFoundError, match="ijbc_face_tid_mid.txt"):
        read_ijb_meta(flat, "IJBC")
    write_meta(tmp_path / "bad", shuffle_names=True)
    with pytest.raises(ValueError, match="different orders"):
        read_ijb_meta(tmp_path / "bad")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_template_features_match_insightface_loop(dtype):
    rng = np.random.default_rng(1)
    templates = np.array([t for _, t, _ in IMAGES])
    medias = np.array([m for _, _, m in IMAGES])
    features = rng.normal(size=(len(IMAGES), 16)).astype(dtype)
    ours, unique = image_to_template_features(features, templates, medias)
    reference, reference_unique = reference_template_features(features, templates, medias)
    np.testing.assert_array_equal(unique, reference_unique)
    np.testing.assert_array_equal(ours, reference)
    assert ours.dtype == np.float64
    # Template 7 is its single image, normalised.
    row = list(unique).index(7)
    np.testing.assert_allclose(ours[row], features[2] / np.linalg.norm(features[2]), rtol=1e-6)
    # Template 3: mean of frames 0, 1, 5 + photo 3 + mean of frames 7, 8.
    expected = (
        features[[0, 1, 5]].astype(float).mean(0)
        + features[3]
        + features[[7, 8]].astype(float).mean(0)
    )
    np.testing.assert_allclose(
        ours[list(unique).index(3)], expected / np.linalg.norm(expected), rtol=1e-5
    )


def test_template_scores_and_unknown_template():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(4, 8))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    unique = np.array([3, 5, 7, 9])
    first = np.array([3, 3, 7, 5, 9])
    second = np.array([7, 5, 5, 9, 3])
    scores = template_pair_scores(features, unique, first, second, batch_size=2)
    np.testing.assert_array_equal(scores, reference_scores(features, unique, first, second))
    with pytest.raises(ValueError, match="templates2 id 8"):
        template_pair_scores(features, unique, first, np.array([7, 5, 5, 8, 3]))


@pytest.mark.parametrize(
    "use_norm_score, use_detector_score", [(True, True), (False, False), (True, False)]
)
def test_evaluate_matches_reference_pipeline(tmp_path, use_norm_score, use_detector_score):
    write_meta(tmp_path)
    meta = read_ijb_meta(tmp_path)
    rng = np.random.default_rng(3)
    features = rng.normal(size=(len(IMAGES), 12)).astype(np.float32) * rng.uniform(
        0.5, 3.0, (len(IMAGES), 1)
    ).astype(np.float32)
    result = evaluate_ijb(
        features, meta, use_norm_score=use_norm_score, use_detector_score=use_detector_score
    )

    weighted = features
    if not use_norm_score:
        weighted = weighted / np.sqrt(np.sum(weighted**2, -1, keepdims=True))
    if use_detector_score:
        weighted = weighted * meta.detector_scores[:, None]
    template_features, unique = reference_template_features(weighted, meta.templates, meta.medias)
    scores = reference_scores(template_features, unique, meta.pair_templates1, meta.pair_templates2)
    np.testing.assert_array_equal(result["scores"], scores)
    fpr, tpr, _ = metrics.roc_curve(meta.pair_labels, scores)
    np.testing.assert_array_equal(result["roc"]["fpr"], fpr)
    np.testing.assert_array_equal(result["roc"]["tpr"], tpr)
    assert set(result["tar_at_far"]) == {1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6}
    flipped_fpr, flipped_tpr = np.flipud(fpr), np.flipud(tpr)
    for far, tar in result["tar_at_far"].items():
        assert tar == flipped_tpr[np.argmin(np.abs(flipped_fpr - far))]


@pytest.mark.tf_only
def test_image_features_from_loose_crops(tmp_path):
    from PIL import Image

    from keras_face.data.synthetic import synthetic_faces

    faces = synthetic_faces(2, 5, seed=0, quality=None)
    crop_dir = tmp_path / "loose_crop"
    crop_dir.mkdir()
    landmarks = []
    for index, (name, _, _) in enumerate(IMAGES):
        # A loose crop: the aligned face pasted at an offset into a larger photo.
        canvas = np.full((150, 160, 3), 90, dtype=np.uint8)
        top, left = 10 + index, 20 + 2 * index
        canvas[top : top + 112, left : left + 112] = faces.images[index]
        Image.fromarray(canvas).save(crop_dir / name.replace(".jpg", ".png"))
        os.rename(crop_dir / name.replace(".jpg", ".png"), crop_dir / name)
        landmarks.append((faces.landmarks[index] + [left, top]).reshape(-1))
    write_meta(tmp_path, landmarks=np.array(landmarks))
    meta = read_ijb_meta(tmp_path)
    assert meta.image_dir == str(tmp_path / "loose_crop")

    def model(batch):  # a fixed "embedding": mean colour of 4 vertical bands (flip-sensitive)
        return (
            batch.reshape(batch.shape[0], 112, 4, 28, 3)
            .mean(axis=(1, 3))
            .reshape(batch.shape[0], -1)
        )

    features = ijb_image_features(model, meta, batch_size=4, verbose=False)
    assert features.shape == (len(IMAGES), 12) and features.dtype == np.float32
    from keras_face.data import align_face

    for index, name in enumerate(meta.image_names):
        photo = np.asarray(Image.open(crop_dir / name).convert("RGB"))
        aligned = align_face(photo, meta.landmarks[index]).astype(np.float32)[None]
        expected = model(aligned) + model(aligned[:, :, ::-1])
        np.testing.assert_allclose(features[index], expected[0], rtol=1e-5)
    unflipped = ijb_image_features(model, meta, batch_size=3, flip=False, verbose=False)
    assert not np.allclose(unflipped * 2, features)
