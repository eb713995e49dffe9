import keras
import numpy as np
import pytest

from keras_face import models
from tests.models.backbone_testing import randomize_weights

# Yan et al. 2019: 1.022 G FLOPs at 112x112 (a multiply-accumulate counted as 2 FLOPs).
PAPER_FLOPS = 1.022e9


@pytest.fixture(scope="module")
def backbone():
    """The default VarGFaceNet (112x112, 512-d), built once for this module."""
    return models.vargfacenet()


def test_sizes_against_the_paper(backbone):
    assert backbone.output.shape == (None, 512)
    macs = models.count_flops(backbone)
    assert macs == 512_593_440
    assert abs(2 * macs - PAPER_FLOPS) <= 0.01 * PAPER_FLOPS
    assert models.count_parameters(backbone) == 5_198_292


def test_variable_group_convolutions_have_eight_channels_per_group(backbone):
    grouped = [
        layer
        for layer in backbone.layers
        if isinstance(layer, keras.layers.Conv2D) and layer.groups > 1
    ]
    # Head block: 3 separable units; stages: 4 in each down-sampling block, 2 in each
    # normal block; plus the embedding's group conv.
    assert len(grouped) == 3 + 3 * 4 + (2 + 6 + 3) * 2 + 1
    for layer in grouped:
        assert layer.input.shape[-1] // layer.groups == 8, layer.name


def test_head_stages_and_embedding_setting(backbone):
    # Head setting keeps 112x112 for the first conv, then a stride-2 block.
    assert backbone.get_layer("head_prelu").output.shape == (None, 112, 112, 40)
    assert backbone.get_layer("head_block_prelu").output.shape == (None, 56, 56, 40)
    assert backbone.get_layer("stage1_block3_prelu").output.shape == (None, 28, 28, 80)
    assert backbone.get_layer("stage2_block7_prelu").output.shape == (None, 14, 14, 160)
    assert backbone.get_layer("stage3_block4_prelu").output.shape == (None, 7, 7, 320)
    # SE (reduction 4) in the normal blocks only.
    backbone.get_layer("stage2_block2_se_multiply")
    assert backbone.get_layer("stage2_block2_se_conv1").filters == 40
    with pytest.raises(ValueError):
        backbone.get_layer("stage2_block1_se_multiply")
    # Embedding setting: 1x1 to 1024, 7x7 group conv, 1x1 to 512, FC, BN.
    assert backbone.get_layer("embedding_expand_conv").filters == 1024
    assert backbone.get_layer("embedding_group_conv").kernel_size == (7, 7)
    assert backbone.get_layer("embedding_pointwise_conv").filters == 512
    assert backbone.get_layer("embedding_fc").input.shape == (None, 512)


@pytest.mark.parametrize("input_shape", [(112, 112, 3), (112, 96, 3)])
def test_output_shapes_at_face_crop_sizes(input_shape, backbone):
    if input_shape != (112, 112, 3):
        backbone = models.vargfacenet(input_shape=input_shape)
    images = np.random.default_rng(0).integers(0, 256, (2,) + input_shape).astype("uint8")
    embeddings = backbone(images, training=False)
    assert embeddings.shape == (2, 512)
    assert keras.backend.standardize_dtype(embeddings.dtype) == "float32"
    map_shape = (input_shape[0] // 16, input_shape[1] // 16)
    assert backbone.get_layer("embedding_group_conv").kernel_size == map_shape


def test_matches_a_pytorch_reimplementation():
    torch_reference = pytest.importorskip("tests.models.torch_reference")
    keras.utils.set_random_seed(5)
    backbone = models.vargfacenet(input_shape=(48, 40, 3), embedding_size=16)
    randomize_weights(backbone)
    images = np.random.default_rng(0).integers(0, 256, (2, 48, 40, 3)).astype("uint8")
    expected = torch_reference.vargfacenet_forward(backbone, images).numpy()
    embeddings = keras.ops.convert_to_numpy(backbone(images, training=False))
    np.testing.assert_allclose(
        embeddings, expected, rtol=1e-3, atol=1e-3 * np.max(np.abs(expected))
    )
