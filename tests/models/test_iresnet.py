import keras
import numpy as np
import pytest

from keras_face import models
from keras_face.models.iresnet import BLOCKS_PER_STAGE
from keras_face.models.iresnet import VARIANTS
from tests.models.backbone_testing import randomize_weights

# insightface arcface_torch, 512-d embeddings at 112x112 (the acceptance table).
PUBLISHED = {
    18: (24.03e6, 2.6e9),
    34: (34.14e6, None),
    50: (43.59e6, 6.3e9),
    100: (65.16e6, 12.1e9),
    200: (118.83e6, 23.5e9),
}
FACTORIES = {
    18: models.iresnet18,
    34: models.iresnet34,
    50: models.iresnet50,
    100: models.iresnet100,
    200: models.iresnet200,
}


def _check_published_size(depth):
    backbone = FACTORIES[depth](embedding_size=512)
    assert backbone.name == f"iresnet{depth}"
    assert backbone.input.shape == (None, 112, 112, 3)
    assert backbone.output.shape == (None, 512)
    published_parameters, published_flops = PUBLISHED[depth]
    parameters = models.count_parameters(backbone)
    assert abs(parameters - published_parameters) <= 0.005 * published_parameters, parameters
    flops = models.count_flops(backbone, (112, 112, 3))
    if published_flops is not None:
        assert abs(flops - published_flops) <= 0.03 * published_flops, flops
    # The layer structure: blocks per stage, and the 7x7x512 map the embedding flattens.
    for stage, blocks in enumerate(BLOCKS_PER_STAGE[depth], start=1):
        backbone.get_layer(f"stage{stage}_block{blocks}_add")
        with pytest.raises(ValueError):
            backbone.get_layer(f"stage{stage}_block{blocks + 1}_add")
    assert backbone.get_layer("embedding_bn").output.shape == (None, 7, 7, 512)
    return backbone, parameters, flops


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_published_sizes(depth):
    backbone, _, _ = _check_published_size(depth)
    images = np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3)).astype("uint8")
    embeddings = backbone(images, training=False)
    assert embeddings.shape == (2, 512)
    assert keras.backend.standardize_dtype(embeddings.dtype) == "float32"


@pytest.mark.slow
@pytest.mark.parametrize("depth", [100, 200])
def test_published_sizes_of_the_deep_models(depth):
    _check_published_size(depth)


def test_exact_sizes_of_iresnet18():
    # Worked out by hand: stem, 8 units (4 with a 1x1 shortcut), Option-E output.
    def unit(cin, cout, shortcut):
        size = 2 * cin + 9 * cin * cout + 2 * cout + cout + 9 * cout * cout + 2 * cout
        return size + (cin * cout + 2 * cout if shortcut else 0)

    expected = 27 * 64 + 2 * 64 + 64
    channels = [64, 64, 128, 256, 512]
    for stage in range(4):
        expected += unit(channels[stage], channels[stage + 1], True)
        expected += unit(channels[stage + 1], channels[stage + 1], False)
    expected += 2 * 512 + (512 * 49 * 512 + 512) + 2 * 512
    backbone = models.iresnet18(input_shape=(112, 112, 3))
    assert models.count_parameters(backbone) == expected == 24_025_600


def test_squeeze_excitation_variant():
    plain = models.iresnet18(input_shape=(32, 32, 3), embedding_size=16)
    se = models.iresnet18(input_shape=(32, 32, 3), embedding_size=16, se=True)
    assert se.name == "iresnet18_se"
    # Per unit: C -> C/16 conv with bias, PReLU slopes, C/16 -> C conv with bias.
    extra = sum(
        2 * (c * (c // 16) + c // 16 + c // 16 + (c // 16) * c + c) for c in (64, 128, 256, 512)
    )
    assert models.count_parameters(se) - models.count_parameters(plain) == extra
    assert se.get_layer("stage3_block2_se_multiply").output.shape == (None, 4, 4, 256)


@pytest.mark.parametrize("output, size", [("GDC", 128), ("GAP", 256), ("F", 64), ("J", 32)])
def test_other_embedding_outputs_and_input_sizes(output, size):
    backbone = models.iresnet18(input_shape=(112, 96, 3), embedding_size=size, output=output)
    assert backbone.output.shape == (None, size)
    # 112x96 -> 7x6 after the four stride-2 stages.
    assert backbone.get_layer("stage4_block2_add").output.shape == (None, 7, 6, 512)


@pytest.mark.parametrize("se", [False, True])
def test_matches_a_pytorch_reimplementation(se):
    torch_reference = pytest.importorskip("tests.models.torch_reference")
    keras.utils.set_random_seed(3)
    backbone = models.iresnet18(input_shape=(48, 40, 3), embedding_size=16, se=se)
    randomize_weights(backbone)
    images = np.random.default_rng(0).integers(0, 256, (2, 48, 40, 3)).astype("uint8")
    expected = torch_reference.iresnet_forward(backbone, images, (2, 2, 2, 2), se=se).numpy()
    embeddings = keras.ops.convert_to_numpy(backbone(images, training=False))
    np.testing.assert_allclose(
        embeddings, expected, rtol=1e-3, atol=1e-3 * np.max(np.abs(expected))
    )


def test_variants_table_is_what_the_factories_build():
    assert sorted(VARIANTS) == sorted(FACTORIES)
    for depth, (parameters, flops) in PUBLISHED.items():
        assert VARIANTS[depth]["published_parameters"] == parameters
        assert VARIANTS[depth]["published_flops"] == flops
        assert abs(VARIANTS[depth]["parameters"] - parameters) <= 0.005 * parameters
    backbone = models.iresnet18(input_shape=(16, 16, 3))
    # The embedding FC depends on the input size; the convolutions do not.
    fc = backbone.get_layer("embedding_fc").kernel.shape
    full_fc = 7 * 7 * 512 * 512
    assert models.count_parameters(backbone) - fc[0] * fc[1] + full_fc == VARIANTS[18]["parameters"]
