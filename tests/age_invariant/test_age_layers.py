"""MTLFace's layers: age groups, DEX, pyramid pooling, AFD, task router (spec 3.8, 1-6)."""

import numpy as np
import pytest
from keras import ops

from keras_face.age_invariant.age_estimation_head import AGE_GROUP_THRESHOLDS
from keras_face.age_invariant.age_estimation_head import AgeEstimationHead
from keras_face.age_invariant.age_estimation_head import age_groups
from keras_face.age_invariant.age_estimation_head import age_loss
from keras_face.age_invariant.age_estimation_head import check_ages
from keras_face.age_invariant.age_estimation_head import dex_expectation
from keras_face.age_invariant.attention_feature_decomposition import AttentionFeatureDecomposition
from keras_face.age_invariant.identity_conditional_module import IdentityConditionalModule
from keras_face.age_invariant.identity_conditional_module import task_router_layout
from keras_face.age_invariant.identity_conditional_module import task_router_masks
from keras_face.age_invariant.spatial_pyramid_pooling import SpatialPyramidPooling
from keras_face.age_invariant.spatial_pyramid_pooling import adaptive_bins
from tests.layer_testing import run_layer_test


def _numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def test_age_groups_of_the_authors_tables():
    np.testing.assert_array_equal(
        _numpy(age_groups([5, 10, 11, 35, 60, 61, 100], 7)), [0, 0, 1, 3, 5, 6, 6]
    )
    ages = np.arange(0, 101, 0.5)
    for groups, thresholds in AGE_GROUP_THRESHOLDS.items():
        expected = [sum(age > t for t in thresholds) for age in ages]
        np.testing.assert_array_equal(_numpy(age_groups(ages, groups)), expected)
    assert _numpy(age_groups([12, 12.5, 65, 66], 8)).tolist() == [0, 1, 6, 7]


@pytest.mark.parametrize("groups", [3, 9, 7.0, True])
def test_group_count_outside_the_tables_is_named(groups):
    with pytest.raises(ValueError, match=f"num_groups={groups!r}"):
        age_groups([30.0], groups)


@pytest.mark.parametrize("age", [-1.0, 120.5, float("nan"), float("inf")])
def test_bad_ages_are_named(age):
    with pytest.raises(ValueError, match=r"ages\[1\]="):
        check_ages([30.0, age])


def test_dex_expectation():
    assert _numpy(dex_expectation(np.zeros((1, 101), np.float32)))[0] == pytest.approx(50.0)
    one_hot = np.full((3, 101), -1e4, np.float32)
    one_hot[[0, 1, 2], [0, 37, 100]] = 0.0
    np.testing.assert_allclose(_numpy(dex_expectation(one_hot)), [0.0, 37.0, 100.0], atol=1e-4)


def test_age_loss_per_sample():
    rng = np.random.default_rng(0)
    age_logits = rng.normal(size=(4, 101)).astype(np.float32)
    group_logits = rng.normal(size=(4, 7)).astype(np.float32)
    ages = np.array([3.0, 25.0, 50.5, 90.0], np.float32)
    probs = np.exp(age_logits - age_logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    dex = probs @ np.arange(101)
    groups = [0, 2, 5, 6]
    log_softmax = group_logits - np.log(np.exp(group_logits).sum(1, keepdims=True))
    expected = (dex - ages) ** 2 - log_softmax[np.arange(4), groups]
    np.testing.assert_allclose(
        _numpy(age_loss(age_logits, group_logits, ages, 7)), expected, rtol=1e-5
    )


def test_adaptive_bins_are_pytorchs():
    assert adaptive_bins(7, 2) == [(0, 4), (3, 7)]
    assert adaptive_bins(7, 3) == [(0, 3), (2, 5), (4, 7)]
    assert adaptive_bins(7, 1) == [(0, 7)]
    assert adaptive_bins(2, 3) == [(0, 1), (0, 2), (1, 2)]


def _reference_pyramid(x, sizes, reduce):
    # PyTorch: AdaptivePool2d(n) on (B, C, H, W), Flatten, concat over sizes.
    batch, height, width, channels = x.shape
    parts = []
    for n in sizes:
        grid = np.zeros((batch, channels, n, n), np.float32)
        for i, (top, bottom) in enumerate(adaptive_bins(height, n)):
            for j, (left, right) in enumerate(adaptive_bins(width, n)):
                grid[:, :, i, j] = reduce(x[:, top:bottom, left:right, :], axis=(1, 2))
        parts.append(grid.reshape(batch, -1))
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_spatial_pyramid_pooling_against_adaptive_pooling(mode):
    x = np.arange(49, dtype=np.float32).reshape(1, 7, 7, 1)
    out = _numpy(SpatialPyramidPooling((1, 2, 3), mode)(x))
    assert out.shape == (1, 14)
    reduce = np.mean if mode == "avg" else np.max
    np.testing.assert_allclose(out, _reference_pyramid(x, (1, 2, 3), reduce), rtol=1e-6)
    if mode == "avg":
        # n = 3, bin (0, 0): rows 0..2, columns 0..2 of arange(49) -> mean 8.
        assert out[0, 5] == pytest.approx(8.0)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype(np.float32)
    run_layer_test(
        SpatialPyramidPooling,
        {"pool_sizes": (1, 2, 3), "mode": mode},
        [x],
        expected_output_shape=(2, 42),
        run_fit=False,
        mixed_output_dtype="compute",
    )
    np.testing.assert_allclose(
        _numpy(SpatialPyramidPooling((1, 2, 3), mode)(x)),
        _reference_pyramid(x, (1, 2, 3), reduce),
        rtol=1e-5,
        atol=1e-6,
    )


def test_afd_with_zero_kernels_halves_the_map():
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 16)).astype(np.float32)
    afd = AttentionFeatureDecomposition(reduction=4, kernel_initializer="zeros")
    x_id, x_age = afd(x, training=False)
    np.testing.assert_array_equal(_numpy(x_age), 0.5 * x)
    np.testing.assert_array_equal(_numpy(x_id), 0.5 * x)


def test_afd_parts_sum_to_the_input_and_serialize():
    x = np.random.default_rng(1).normal(size=(3, 4, 4, 16)).astype(np.float32)
    layer = run_layer_test(
        AttentionFeatureDecomposition,
        {"reduction": 4, "spatial_kernel": 3},
        [x],
        run_fit=False,
        mixed_output_dtype="compute",
        expected_num_trainable_weights=7,
        expected_num_non_trainable_weights=4,
    )
    x_id, x_age = layer(x, training=True)
    np.testing.assert_allclose(_numpy(x_id) + _numpy(x_age), x, atol=1e-6)
    # Hidden width: C * (1 + 4 + 9) / reduction = 16 * 14 / 4.
    assert layer.squeeze.units == 56


def test_age_estimation_head_shapes_and_serialization():
    x = np.random.default_rng(2).normal(size=(3, 2, 2, 8)).astype(np.float32)
    layer = run_layer_test(
        AgeEstimationHead,
        {"num_groups": 4, "hidden": 16},
        [x],
        run_fit=False,
        mixed_precision_atol=5e-2,
        expected_num_trainable_weights=8,
        expected_num_non_trainable_weights=2,
    )
    age_logits, group_logits = layer(x)
    assert age_logits.shape == (3, 101) and group_logits.shape == (3, 4)
    with pytest.raises(ValueError, match="num_groups=9"):
        AgeEstimationHead(num_groups=9)


def test_task_router_layout():
    conv_dim, starts = task_router_layout(7, 128, 0.1)
    assert conv_dim == 819 and starts == [0, 115, 230, 345, 460, 575, 690]
    masks = task_router_masks(7, 128, 0.1)
    assert masks.shape == (7, 819) and (masks.sum(1) == 128).all()
    assert (masks[:-1] * masks[1:]).sum(1).tolist() == [13] * 6
    assert task_router_layout(4, 16, 0.1) == (59, [0, 14, 28, 42])


def test_identity_conditional_module_routes_by_group():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 2, 2, 8)).astype(np.float32)
    groups = np.array([0, 3], np.int32)
    layer = run_layer_test(
        IdentityConditionalModule,
        {"num_groups": 4, "unit_count": 16, "num_blocks": 1},
        [x, groups],
        expected_output_shape=(2, 2, 2, 8),
        run_fit=False,
        mixed_output_dtype="compute",
    )
    same = _numpy(layer([x, np.array([1, 1], np.int32)]))
    other = _numpy(layer([x, np.array([1, 2], np.int32)]))
    np.testing.assert_array_equal(same[0], other[0])
    assert np.abs(same[1] - other[1]).max() > 1e-4
