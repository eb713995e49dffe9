"""The mask dictionary (spec 4.5, 1, 2 and 6)."""

import numpy as np
import pytest
from keras import ops

from keras_face.data import arcface_template
from keras_face.data import synthetic_faces
from keras_face.data import synthetic_pairs
from keras_face.occlusion import ApplyOcclusion
from keras_face.occlusion import grid_masks
from keras_face.occlusion import half_masks
from keras_face.occlusion import landmark_box_masks
from keras_face.occlusion import landmark_masks
from keras_face.occlusion import mask_family
from keras_face.occlusion import mask_to_feature_grid
from keras_face.occlusion import mirror_landmarks
from keras_face.occlusion import occluded_pairs
from keras_face.occlusion import random_half_masks
from tests.layer_testing import run_layer_test


def test_half_masks_are_exact():
    left, right, upper, lower = half_masks(8)
    expected_left = np.zeros((8, 8), np.float32)
    expected_left[:, :4] = 1
    np.testing.assert_array_equal(left, expected_left)
    np.testing.assert_array_equal(right, 1 - expected_left)
    np.testing.assert_array_equal(upper, expected_left.T)
    np.testing.assert_array_equal(lower, 1 - expected_left.T)
    # With landmarks the upper/lower split is the eye-mouth midline.
    template = arcface_template(112)
    upper = half_masks(112, template)[2]
    midline = int(np.floor((template[:2, 1].mean() + template[3:, 1].mean()) / 2 + 0.5))
    assert upper[:, 0].sum() == midline == 72


def test_random_half_masks_drop_half_the_cells():
    masks = random_half_masks(8, grid=4, count=6, seed=3)
    assert masks.shape == (6, 8, 8)
    # 8 of the 16 cells of 2x2 pixels: 32 pixels each.
    np.testing.assert_array_equal(masks.sum(axis=(1, 2)), 32)
    cells = masks[:, ::2, ::2]
    np.testing.assert_array_equal(cells.sum(axis=(1, 2)), 8)
    np.testing.assert_array_equal(masks, random_half_masks(8, grid=4, count=6, seed=3))
    assert not np.array_equal(masks, random_half_masks(8, grid=4, count=6, seed=4))


def test_grid_masks_are_froms_patterns():
    for pattern, count in ((2, 10), (3, 37), (4, 101)):
        masks = grid_masks(8, pattern) if pattern != 3 else grid_masks(9, 3)
        assert len(masks) == count
        assert masks[0].sum() == 0
        assert len({mask.tobytes() for mask in masks}) == count
    with pytest.raises(ValueError, match="pattern=5"):
        grid_masks(8, 5)


def test_landmark_boxes_contain_their_landmarks():
    size = 64
    template = arcface_template(size)
    masks = landmark_masks(size)
    half = 0.12 * size
    for mask, point in zip(masks[[0, 1, 3]], template[[0, 1, 2]]):
        x, y = np.floor(point + 0.5).astype(int)
        assert mask[y, x] == 1
        rows, columns = np.nonzero(mask)
        assert rows.max() - rows.min() + 1 == pytest.approx(2 * half + 1, abs=1)
        assert columns.max() - columns.min() + 1 == pytest.approx(2 * half + 1, abs=1)
    for point in template[:2]:
        x, y = np.floor(point + 0.5).astype(int)
        assert masks[2][y, x] == 1  # both eyes in one band
    for point in template[3:]:
        x, y = np.floor(point + 0.5).astype(int)
        assert masks[4][y, x] == 1  # both mouth corners
    with pytest.raises(ValueError, match=r"shape \(4, 2\)"):
        landmark_masks(size, template[:4])


def test_mirrored_landmarks_put_the_left_eye_box_on_the_flipped_left_eye():
    size = 32
    rng = np.random.default_rng(0)
    landmarks = arcface_template(size) + rng.uniform(-2, 2, (5, 2))
    image_box = landmark_masks(size, landmarks)[0]  # the left eye of the image
    flipped = mirror_landmarks(landmarks, size)
    np.testing.assert_allclose(flipped[0, 0], size - 1 - landmarks[1, 0])  # was the right eye
    np.testing.assert_allclose(flipped[3], [size - 1 - landmarks[4, 0], landmarks[4, 1]])
    # The left-eye box of the flipped image is the mirror of the right-eye box.
    np.testing.assert_array_equal(
        landmark_masks(size, flipped)[0], landmark_masks(size, landmarks)[1][:, ::-1]
    )
    assert image_box.sum() > 0


def test_feature_grid_and_family_names():
    grid = mask_to_feature_grid(half_masks(64), 4)
    assert grid.shape == (4, 4, 4)
    np.testing.assert_array_equal(grid[0][:, :2], 1)
    np.testing.assert_array_equal(grid[0][:, 2:], 0)
    assert mask_family("halves", 16).shape == (4, 16, 16)
    with pytest.raises(ValueError, match="name='eyes'"):
        mask_family("eyes", 16)


def test_apply_occlusion():
    x = np.ones((2, 4, 4, 3), np.float32)
    masks = np.repeat(half_masks(4)[:1], 2, axis=0)
    out = ops.convert_to_numpy(ApplyOcclusion(fill=0.5)([x, masks]))
    np.testing.assert_array_equal(out[:, :, :2], 0.5)
    np.testing.assert_array_equal(out[:, :, 2:], 1.0)
    run_layer_test(
        ApplyOcclusion,
        {"fill": 0.5},
        [x, masks],
        expected_output_shape=(2, 4, 4, 3),
        run_fit=False,
        mixed_output_dtype="compute",
    )
    with pytest.raises(ValueError, match="fill=nan"):
        ApplyOcclusion(float("nan"))


def test_occluded_pairs_occlude_only_the_probe():
    faces = synthetic_faces(6, 4, seed=0, image_size=32, quality=None, occlusion_probability=0.0)
    clean, issame = synthetic_pairs(faces, 20, seed=1, n_folds=2)
    images, same = occluded_pairs(faces, 2, 20, seed=1, n_folds=2)
    np.testing.assert_array_equal(same, issame)
    np.testing.assert_array_equal(images[0::2], clean[0::2])
    changed = np.abs(images[1::2].astype(int) - clean[1::2].astype(int)).reshape(20, -1).max(1)
    assert (changed > 0).all()
    with pytest.raises(ValueError, match="kind=4"):
        occluded_pairs(faces, 4, 20)


def test_in_graph_landmark_boxes_equal_the_numpy_ones():
    rng = np.random.default_rng(0)
    landmarks = np.stack([arcface_template(32) + rng.uniform(-3, 3, (5, 2)) for _ in range(6)])
    got = ops.convert_to_numpy(landmark_box_masks(landmarks.astype(np.float32), 32))
    expected = np.stack([landmark_masks(32, points) for points in landmarks])
    np.testing.assert_array_equal(got, expected)
