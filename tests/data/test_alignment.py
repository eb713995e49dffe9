import numpy as np
import pytest

pytest.importorskip("tensorflow")  # keras_face.data imports TensorFlow

from keras_face.data.alignment import ARCFACE_TEMPLATE  # noqa: E402
from keras_face.data.alignment import align_face  # noqa: E402
from keras_face.data.alignment import arcface_template  # noqa: E402
from keras_face.data.alignment import estimate_similarity_transform  # noqa: E402
from keras_face.data.alignment import warp_affine  # noqa: E402


def similarity(scale, angle_degrees, tx, ty):
    angle = np.deg2rad(angle_degrees)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.concatenate([rotation, [[tx], [ty]]], axis=1)


def apply(matrix, points):
    return points @ matrix[:, :2].T + matrix[:, 2]


@pytest.mark.parametrize(
    "scale, angle, tx, ty",
    [
        (1.0, 0.0, 0.0, 0.0),
        (0.37, 23.0, 14.5, -3.25),
        (2.4, -171.0, -80.0, 40.0),
        (1.3, 90.0, 5.0, 7.0),
    ],
)
def test_recovers_a_known_similarity_transform(scale, angle, tx, ty):
    true = similarity(scale, angle, tx, ty)
    landmarks = apply(np.linalg.inv(np.vstack([true, [0, 0, 1]]))[:2], ARCFACE_TEMPLATE)
    estimated = estimate_similarity_transform(landmarks, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(estimated, true, atol=1e-4)
    random_points = np.random.default_rng(3).uniform(-50, 50, (7, 2))
    np.testing.assert_allclose(
        estimate_similarity_transform(random_points, apply(true, random_points)), true, atol=1e-4
    )


def test_least_squares_with_noise_and_no_reflection():
    rng = np.random.default_rng(4)
    true = similarity(0.8, 35.0, 10.0, 20.0)
    src = rng.uniform(0, 100, (200, 2))
    dst = apply(true, src) + rng.normal(0, 0.05, (200, 2))
    # Independent reference: x' = a x - b y + tx, y' = b x + a y + ty is linear in (a, b, tx, ty).
    design = np.zeros((400, 4))
    design[0::2] = np.stack([src[:, 0], -src[:, 1], np.ones(200), np.zeros(200)], 1)
    design[1::2] = np.stack([src[:, 1], src[:, 0], np.zeros(200), np.ones(200)], 1)
    a, b, tx, ty = np.linalg.lstsq(design, dst.reshape(-1), rcond=None)[0]
    estimated = estimate_similarity_transform(src, dst)
    np.testing.assert_allclose(estimated, [[a, -b, tx], [b, a, ty]], atol=1e-8)
    np.testing.assert_allclose(estimated, true, atol=1e-2)
    # A mirrored target cannot be matched by a reflection: the result stays a rotation.
    mirrored = estimate_similarity_transform(src, src * [-1, 1])
    assert np.linalg.det(mirrored[:, :2]) > 0
    with pytest.raises(ValueError, match="coincide"):
        estimate_similarity_transform(np.ones((5, 2)), ARCFACE_TEMPLATE)
    with pytest.raises(ValueError, match="same shape"):
        estimate_similarity_transform(ARCFACE_TEMPLATE[:4], ARCFACE_TEMPLATE)


def test_warp_matches_the_mapping():
    image = np.zeros((40, 50, 3), np.uint8)
    image[10, 20] = [255, 128, 7]
    matrix = similarity(1.0, 0.0, 5.0, -3.0)  # integer shift: exact
    warped = warp_affine(image, matrix, (40, 50))
    assert warped.dtype == np.uint8 and tuple(np.argwhere(warped[..., 0] == 255)[0]) == (7, 25)
    np.testing.assert_array_equal(warped[7, 25], [255, 128, 7])
    np.testing.assert_array_equal(warp_affine(image, similarity(1, 0, 0, 0), (40, 50)), image)
    # Bilinear: half-pixel shift averages neighbours; outside reads the border value.
    ramp = np.tile(np.arange(10, dtype=np.float32), (4, 1))
    shifted = warp_affine(ramp, similarity(1.0, 0.0, -0.5, 0.0), (4, 10), border_value=-1)
    np.testing.assert_allclose(shifted[0, :9], np.arange(9) + 0.5)
    assert shifted[0, 9] == pytest.approx(0.5 * 9 + 0.5 * -1)


def test_align_face_undoes_a_similarity_distortion():
    ys, xs = np.mgrid[0:112, 0:112]
    aligned = np.stack([xs * 2, ys * 2, (xs + ys)], -1).clip(0, 255).astype(np.uint8)
    for x, y in ARCFACE_TEMPLATE:
        aligned[int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2] = 255
    distortion = similarity(1.7, 18.0, 40.0, 10.0)  # aligned crop -> "photo"
    photo = warp_affine(aligned, distortion, (260, 280))
    landmarks = apply(distortion, ARCFACE_TEMPLATE)
    crop = align_face(photo, landmarks)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    error = np.abs(crop.astype(int) - aligned.astype(int))[4:-4, 4:-4]
    assert error.mean() < 2.0
    np.testing.assert_allclose(arcface_template((112, 96)), ARCFACE_TEMPLATE - [8, 0])
    np.testing.assert_allclose(arcface_template(224), ARCFACE_TEMPLATE * 2)
    assert align_face(photo, landmarks, image_size=(112, 96)).shape == (112, 96, 3)
