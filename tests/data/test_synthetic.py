"""The synthetic identity set: determinism, structure, quality levels, pairs and writers."""

import numpy as np
import pytest

from keras_face.data.synthetic import SyntheticFaces
from keras_face.data.synthetic import appearance
from keras_face.data.synthetic import degradation
from keras_face.data.synthetic import render_faces
from keras_face.data.synthetic import renderer
from keras_face.data.synthetic import sample_quality
from keras_face.data.synthetic import synthetic_faces
from keras_face.data.synthetic import synthetic_pairs

TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)


def laplacian_variance(image):
    grey = image.astype(np.float64).mean(axis=-1)
    laplacian = (
        grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4.0 * grey[1:-1, 1:-1]
    )
    return float(laplacian.var())


def spearman(x, y):
    rank_x = np.argsort(np.argsort(x)).astype(float)
    rank_y = np.argsort(np.argsort(y)).astype(float)
    return float(np.corrcoef(rank_x, rank_y)[0, 1])


@pytest.fixture(scope="module")
def faces():
    return synthetic_faces(6, 5, seed=7, quality="uniform")


def test_shapes_dtypes_and_labels(faces):
    assert isinstance(faces, SyntheticFaces)
    assert len(faces) == 30 and faces.num_identities == 6
    assert faces.images.shape == (30, 112, 112, 3) and faces.images.dtype == np.uint8
    assert faces.labels.dtype == np.int32
    np.testing.assert_array_equal(faces.labels, np.repeat(np.arange(6), 5))
    np.testing.assert_array_equal(faces.identities, faces.labels)
    assert faces.quality.dtype == np.float32
    assert 0.0 <= faces.quality.min() and faces.quality.max() <= 1.0
    assert faces.landmarks.shape == (30, 5, 2)
    # Every image is different (nuisance), and images are not flat.
    flat = faces.images.reshape(30, -1).astype(np.int64)
    assert len({row.tobytes() for row in faces.images}) == 30
    assert flat.std(axis=1).min() > 10.0


def test_deterministic_and_independent_of_batching(faces):
    again = synthetic_faces(6, 5, seed=7, quality="uniform", batch_size=4, num_workers=1)
    np.testing.assert_array_equal(again.images, faces.images)
    np.testing.assert_array_equal(again.quality, faces.quality)
    np.testing.assert_array_equal(again.landmarks, faces.landmarks)
    other_seed = synthetic_faces(6, 5, seed=8, quality="uniform")
    assert np.mean(np.abs(other_seed.images.astype(int) - faces.images.astype(int))) > 10.0


def test_identity_k_image_j_depends_only_on_seed_k_j(faces):
    # Fewer identities, fewer images each, and an offset: the same faces.
    subset = synthetic_faces(3, 2, seed=7, quality="uniform", identity_offset=2)
    for label in range(3):
        for image in range(2):
            np.testing.assert_array_equal(
                subset.images[label * 2 + image], faces.images[(label + 2) * 5 + image]
            )
    np.testing.assert_array_equal(subset.identities, np.repeat([2, 3, 4], 2))
    np.testing.assert_array_equal(subset.labels, np.repeat([0, 1, 2], 2))


def test_quality_options():
    identities = np.arange(4)
    np.testing.assert_array_equal(sample_quality(identities, 3, quality=None), np.zeros(12))
    np.testing.assert_allclose(sample_quality(identities, 3, quality=0.25), np.full(12, 0.25))
    ranged = sample_quality(identities, 50, quality=(0.2, 0.4))
    assert 0.2 <= ranged.min() and ranged.max() <= 0.4 and ranged.std() > 0.03
    realistic = sample_quality(np.arange(200), 10, quality="realistic")
    assert 0.2 < realistic.mean() < 0.4  # Beta(1.2, 3) has mean 0.286
    explicit = np.linspace(0, 1, 12)
    np.testing.assert_allclose(sample_quality(identities, 3, quality=explicit), explicit, atol=1e-7)
    with pytest.raises(ValueError, match="quality='best'"):
        sample_quality(identities, 3, quality="best")
    with pytest.raises(ValueError, match="quality.shape=\\(5,\\)"):
        sample_quality(identities, 3, quality=np.zeros(5))
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        sample_quality(identities, 3, quality=1.5)


def test_quality_is_monotone_in_sharpness():
    base = synthetic_faces(8, 1, seed=11, quality=None)
    levels = np.linspace(0.0, 1.0, 11)
    correlations = []
    for index in range(len(base)):
        ladder = base.with_quality(levels, indices=[index] * levels.size)
        sharpness = [laplacian_variance(image) for image in ladder.images]
        correlations.append(spearman(levels, sharpness))
        # Identity and nuisance are fixed: only the degradation changes.
        np.testing.assert_array_equal(ladder.images[0], base.images[index])
    correlations = np.array(correlations)
    assert correlations.max() < -0.8, correlations
    assert np.median(correlations) < -0.95, correlations


def test_quality_zero_is_pristine_and_one_is_degraded():
    faces = synthetic_faces(2, 2, seed=1, quality=None)
    worst = faces.with_quality(1.0)
    assert np.all(worst.quality == 1.0)
    for clean, degraded in zip(faces.images, worst.images):
        assert laplacian_variance(degraded) < 0.1 * laplacian_variance(clean)
        # Same face: the low-frequency content matches.
        assert abs(clean.astype(float).mean() - degraded.astype(float).mean()) < 12.0


def test_landmarks_follow_the_arcface_template():
    neutral = synthetic_faces(10, 2, seed=2, quality=None, nuisance=0.0)
    deviation = np.abs(neutral.landmarks - TEMPLATE[None])
    # Without nuisance only the identity geometry moves the points (a few pixels).
    assert deviation.max() < 6.0
    assert deviation.mean() > 0.3
    jittered = synthetic_faces(10, 4, seed=2, quality=None)
    assert 0.5 < np.abs(jittered.landmarks - TEMPLATE[None]).mean() < 6.0
    # The eyes are rendered where the landmarks say: darker than the cheek below.
    image = neutral.images[0].astype(float).mean(-1)
    (left_x, left_y), _, _, _, _ = np.rint(neutral.landmarks[0]).astype(int)
    assert image[left_y, left_x] < image[left_y + 12, left_x] + 40


def test_other_image_sizes():
    small = synthetic_faces(2, 2, seed=3, image_size=64, quality="uniform")
    assert small.images.shape == (4, 64, 64, 3)
    reference = synthetic_faces(2, 2, seed=3, quality="uniform")
    np.testing.assert_allclose(
        small.landmarks, (reference.landmarks + 0.5) * 64 / 112 - 0.5, atol=1e-3
    )
    rectangular = synthetic_faces(1, 2, seed=3, image_size=(96, 80))
    assert rectangular.images.shape == (2, 96, 80, 3)
    with pytest.raises(ValueError, match="image_size=8"):
        synthetic_faces(1, 1, image_size=8)


def test_identities_are_distinguishable_but_vary():
    faces = synthetic_faces(12, 6, seed=4, quality=None, nuisance=0.5)
    # Nearest neighbour on 14x14 thumbnails retrieves the identity far above chance.
    thumbnails = faces.images.reshape(72, 14, 8, 14, 8, 3).mean(axis=(2, 4)).reshape(72, -1)
    distances = ((thumbnails[:, None] - thumbnails[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    nearest = faces.labels[np.argmin(distances, axis=1)]
    accuracy = np.mean(nearest == faces.labels)
    assert accuracy > 0.5
    # ... while images of one identity do differ.
    first = faces.images[faces.labels == 0].astype(float)
    assert np.abs(first - first.mean(0)).mean() > 3.0


def test_render_faces_matches_synthetic_faces(faces):
    index = np.array([3, 17])
    identity = {
        name: value[faces.labels[index]] for name, value in faces.identity_parameters.items()
    }
    nuisance = {name: value[index] for name, value in faces.image_parameters.items()}
    seeds = faces.noise_seeds()
    images, landmarks = render_faces(
        identity, nuisance, faces.quality[index], 112, [seeds[i] for i in index]
    )
    np.testing.assert_array_equal(images, faces.images[index])
    np.testing.assert_array_equal(landmarks, faces.landmarks[index])


def test_rasterise_then_degrade_is_render_faces(faces):
    # The package's seams: parameters (appearance) -> clean image (renderer) -> capture
    # (degradation) compose to exactly what `render_faces` returns.
    index = np.array([0, 9, 22])
    identity = faces.image_identity_parameters()
    identity = {name: value[index] for name, value in identity.items()}
    nuisance = {name: value[index] for name, value in faces.image_parameters.items()}
    clean, landmarks = renderer.rasterise(identity, nuisance, 112, 112)
    assert clean.shape == (3, 3, 112, 112) and clean.dtype == np.float32
    assert 0.0 <= clean.min() and clean.max() <= 255.0
    seeds = faces.noise_seeds()
    images = degradation.degrade(clean, faces.quality[index], [seeds[i] for i in index], True)
    np.testing.assert_array_equal(images, faces.images[index])
    np.testing.assert_array_equal(landmarks, faces.landmarks[index])
    # Identity parameters come from the stream [seed, identity, 0] alone.
    again = appearance.sample_identity_parameters([2, 0], seed=7)
    np.testing.assert_array_equal(again["face_rx"], faces.identity_parameters["face_rx"][[2, 0]])


def test_pairs_structure(faces):
    images, issame = synthetic_pairs(faces, 40, seed=2)
    assert images.shape == (80, 112, 112, 3) and issame.dtype == bool
    assert issame.sum() == 20
    # LFW-like blocks: every one of the 10 contiguous folds holds both kinds of pairs.
    for fold in np.split(issame, 10):
        assert fold.any() and not fold.all()
    lookup = {image.tobytes(): index for index, image in enumerate(faces.images)}
    indices = np.array([lookup[image.tobytes()] for image in images])
    first, second = indices[0::2], indices[1::2]
    same_label = faces.labels[first] == faces.labels[second]
    np.testing.assert_array_equal(same_label, issame)
    assert np.all(first[issame] != second[issame])
    again, _ = synthetic_pairs(faces, 40, seed=2)
    np.testing.assert_array_equal(again, images)


def test_pairs_from_held_out_identities():
    images, issame = synthetic_pairs(4, 12, seed=5, images_per_identity=3, quality=None)
    assert images.shape == (24, 112, 112, 3)
    held_out = synthetic_faces(4, 3, seed=5, identity_offset=10**6, quality=None)
    lookup = {image.tobytes() for image in held_out.images}
    assert all(image.tobytes() in lookup for image in images)
    with pytest.raises(ValueError, match="num_pairs=0"):
        synthetic_pairs(held_out, 0)


def test_argument_validation():
    with pytest.raises(ValueError, match="num_identities=0"):
        synthetic_faces(0, 3)
    with pytest.raises(ValueError, match="images_per_identity=0"):
        synthetic_faces(2, 0)
    with pytest.raises(ValueError, match="nuisance=-1"):
        synthetic_faces(2, 2, nuisance=-1)
    single = synthetic_faces(3, 1)
    with pytest.raises(ValueError, match="at least 2 images"):
        synthetic_pairs(single, 4)


@pytest.mark.tf_only
def test_writes_real_formats(tmp_path, faces):
    data = pytest.importorskip("keras_face.data")
    subset = faces.with_quality(faces.quality[:10], indices=np.arange(10))
    paths = subset.to_folder(tmp_path / "folder", progress=False)
    assert len(paths) == 10 and sorted({p.split("/")[-2] for p in map(str, paths)}) == [
        "00000",
        "00001",
    ]
    info = subset.to_recordio(tmp_path / "rec" / "train.rec", progress=False)
    assert info["num_images"] == 10 and info["num_classes"] == 2
    read = data.read_recordio(str(tmp_path / "rec" / "train.rec"))
    assert read.num_images == 10 and read.num_classes == 2
    records = list(read.dataset.as_numpy_iterator())
    assert len(records) == 10
    assert sorted(int(label) for _, label in records) == sorted(subset.labels.tolist())
    subset.to_bin(tmp_path / "pairs.bin", 10, seed=1, image_format="png", progress=False)
    images, issame = data.read_bin(str(tmp_path / "pairs.bin"), progress=False)
    expected_images, expected_issame = synthetic_pairs(subset, 10, seed=1)
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(issame, expected_issame)
