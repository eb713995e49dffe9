import keras
import numpy as np
import pytest

from keras_face import models
from keras_face.models.mobile_face_net import VARIANTS
from tests.models.backbone_testing import randomize_weights

# Chen et al. 2018: 0.99 M parameters, 221 M MAdds (128-d, 112x112).
PAPER_PARAMETERS = 0.99e6
PAPER_MADDS = 221e6
# insightface arcface_torch "mobilefacenet-0.45G" (512-d, 112x112), counted by ptflops.
MBF_PUBLISHED_FLOPS = 0.45e9


@pytest.fixture(scope="module")
def paper_model():
    """The paper's MobileFaceNet (112x112, 128-d), built once for this module."""
    return models.mobilefacenet()


def test_paper_sizes(paper_model):
    backbone = paper_model
    assert backbone.output.shape == (None, 128)
    assert models.count_flops(backbone) == 220_965_376
    assert abs(models.count_flops(backbone) - PAPER_MADDS) <= 0.01 * PAPER_MADDS
    parameters = models.count_parameters(backbone)
    assert parameters == 1_003_136
    # 1.3 % above the paper: BN scales/offsets and PReLU slopes (27 k) are counted; the
    # convolution and FC weights alone are 0.976 M (see docs/models.md).
    assert abs(parameters - PAPER_PARAMETERS) <= 0.015 * PAPER_PARAMETERS
    conv_and_fc = sum(
        int(np.prod(layer.kernel.shape))
        for layer in backbone.layers
        if isinstance(
            layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
        )
    )
    assert conv_and_fc == 976_000


def test_paper_table_structure(paper_model):
    backbone = paper_model
    # Table 1: 56x56x64 after the stem, then 28, 14, 7 with 64, 128, 128 channels.
    assert backbone.get_layer("stem_depthwise_prelu").output.shape == (None, 56, 56, 64)
    assert backbone.get_layer("stage1_block5_add").output.shape == (None, 28, 28, 64)
    assert backbone.get_layer("stage3_block6_add").output.shape == (None, 14, 14, 128)
    assert backbone.get_layer("stage5_block2_add").output.shape == (None, 7, 7, 128)
    assert backbone.get_layer("head_prelu").output.shape == (None, 7, 7, 512)
    assert isinstance(backbone.get_layer("stem_depthwise_conv"), keras.layers.DepthwiseConv2D)
    # Expansion factors t = 2, 4, 2, 4, 2.
    assert backbone.get_layer("stage1_block2_expand_conv").filters == 128
    assert backbone.get_layer("stage2_block1_expand_conv").filters == 256
    assert backbone.get_layer("stage4_block1_expand_conv").filters == 512
    adds = [layer for layer in backbone.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 4 + 6 + 2
    assert backbone.get_layer("embedding_gdc_conv").kernel_size == (7, 7)


def test_mbf_sizes():
    backbone = models.mobilefacenet_mbf()
    assert backbone.output.shape == (None, 512)
    flops = models.count_flops(backbone)
    assert abs(flops - MBF_PUBLISHED_FLOPS) <= 0.03 * MBF_PUBLISHED_FLOPS, flops
    assert models.count_parameters(backbone) == 2_059_520
    # The second layer is a grouped conv of 64 groups of 2 channels.
    assert backbone.get_layer("stem_depthwise_conv").groups == 64
    assert backbone.get_layer("head_prelu").input.shape == (None, 7, 7, 512)


@pytest.mark.parametrize("factory", [models.mobilefacenet, models.mobilefacenet_mbf])
@pytest.mark.parametrize("input_shape", [(112, 112, 3), (112, 96, 3)])
def test_output_shapes_at_face_crop_sizes(factory, input_shape):
    backbone = factory(input_shape=input_shape)
    images = np.random.default_rng(0).integers(0, 256, (2,) + input_shape).astype("uint8")
    embeddings = backbone(images, training=False)
    expected_size = 128 if factory is models.mobilefacenet else 512
    assert embeddings.shape == (2, expected_size)
    assert keras.backend.standardize_dtype(embeddings.dtype) == "float32"
    map_shape = (input_shape[0] // 16, input_shape[1] // 16)
    assert backbone.get_layer("embedding_gdc_conv").kernel_size == map_shape


@pytest.mark.parametrize(
    "scale, factory", [(1, models.mobilefacenet), (2, models.mobilefacenet_mbf)]
)
def test_matches_a_pytorch_reimplementation(scale, factory):
    torch_reference = pytest.importorskip("tests.models.torch_reference")
    keras.utils.set_random_seed(4)
    backbone = factory(input_shape=(48, 40, 3), embedding_size=16)
    randomize_weights(backbone)
    images = np.random.default_rng(0).integers(0, 256, (2, 48, 40, 3)).astype("uint8")
    expected = torch_reference.mobilefacenet_forward(backbone, images, scale).numpy()
    embeddings = keras.ops.convert_to_numpy(backbone(images, training=False))
    np.testing.assert_allclose(
        embeddings, expected, rtol=1e-3, atol=1e-3 * np.max(np.abs(expected))
    )


@pytest.mark.parametrize("name", ["mobilefacenet", "mobilefacenet_mbf"])
def test_variants_table_is_what_the_factories_build(name):
    variant = VARIANTS[name]
    backbone = models.get(name)
    assert backbone.output.shape == (None, variant["embedding_size"])
    assert models.count_parameters(backbone) == variant["parameters"]
    if variant["flops"] is not None:
        assert models.count_flops(backbone) == variant["flops"]
    same = models.build_mobilefacenet(
        variant["width_scale"], embedding_size=variant["embedding_size"]
    )
    assert [layer.name for layer in same.layers] == [layer.name for layer in backbone.layers]


def test_build_mobilefacenet_rejects_a_bad_width_scale():
    with pytest.raises(ValueError, match="width_scale=0"):
        models.build_mobilefacenet(0)
    assert models.build_mobilefacenet(3, input_shape=(16, 16, 3)).name == "mobilefacenet_x3"
