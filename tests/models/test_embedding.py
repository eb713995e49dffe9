import keras
import numpy as np
import pytest

from keras_face import models
from keras_face.models import apply_embedding_output

CHANNELS = 32
EMBEDDING = 8
FLAT = 7 * 7 * CHANNELS
# Parameters of each option on a 7x7x32 map (BN: scale + offset per channel).
EXPECTED_PARAMETERS = {
    "E": 2 * CHANNELS + (FLAT * EMBEDDING + EMBEDDING) + 2 * EMBEDDING,
    "F": 2 * CHANNELS + (FLAT * EMBEDDING + EMBEDDING),
    "J": (FLAT * EMBEDDING + EMBEDDING) + 2 * EMBEDDING,
    "GAP": 2 * CHANNELS + (CHANNELS * EMBEDDING + EMBEDDING) + 2 * EMBEDDING,
    "GDC": 7 * 7 * CHANNELS + 2 * CHANNELS + CHANNELS * EMBEDDING + 2 * EMBEDDING,
}
# Layer types from the feature map to the embedding.
EXPECTED_LAYERS = {
    "E": ["BatchNormalization", "Flatten", "Dropout", "Dense", "FrozenScaleBatchNormalization"],
    "F": ["BatchNormalization", "Flatten", "Dropout", "Dense"],
    "J": ["Flatten", "Dropout", "Dense", "FrozenScaleBatchNormalization"],
    "GAP": [
        "BatchNormalization",
        "ReLU",
        "GlobalAveragePooling2D",
        "Dropout",
        "Dense",
        "FrozenScaleBatchNormalization",
    ],
    "GDC": [
        "DepthwiseConv2D",
        "BatchNormalization",
        "Flatten",
        "Dropout",
        "Dense",
        "FrozenScaleBatchNormalization",
    ],
}


def _model(output, map_shape=(7, 7, CHANNELS), dropout=0.0):
    inputs = keras.Input(map_shape)
    return keras.Model(
        inputs, apply_embedding_output(inputs, output, EMBEDDING, dropout, name="embedding")
    )


@pytest.mark.parametrize("output", models.EMBEDDING_OUTPUTS)
def test_layers_and_parameter_counts(output):
    model = _model(output)
    assert [type(layer).__name__ for layer in model.layers[1:]] == EXPECTED_LAYERS[output]
    assert model.output.shape == (None, EMBEDDING)
    assert models.count_parameters(model) == EXPECTED_PARAMETERS[output]
    last = model.layers[-1]
    assert last.dtype_policy.name == "float32"
    if isinstance(last, models.FrozenScaleBatchNormalization):
        assert last.name == "embedding_features"
        assert not last.gamma.trainable


def test_option_e_follows_the_arcface_paper_order():
    model = _model("E", dropout=0.4)
    names = [layer.name for layer in model.layers[1:]]
    assert names == [
        "embedding_bn",
        "embedding_flatten",
        "embedding_dropout",
        "embedding_fc",
        "embedding_features",
    ]
    assert model.get_layer("embedding_dropout").rate == 0.4
    assert model.get_layer("embedding_fc").use_bias


def test_gdc_kernel_covers_the_whole_map():
    model = _model("GDC", map_shape=(7, 6, CHANNELS))
    assert model.get_layer("embedding_gdc_conv").kernel_size == (7, 6)
    assert model.get_layer("embedding_gdc_conv").output.shape == (None, 1, 1, CHANNELS)
    assert not model.get_layer("embedding_fc").use_bias


@pytest.mark.parametrize("output", models.EMBEDDING_OUTPUTS)
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_embedding_is_float32_under_mixed_policies(output, policy):
    keras.config.set_dtype_policy(policy)
    model = _model(output)
    features = np.random.default_rng(0).normal(size=(4, 7, 7, CHANNELS)).astype("float32")
    embeddings = model(features, training=False)
    assert keras.backend.standardize_dtype(embeddings.dtype) == "float32"
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(embeddings)))


def test_output_name_is_case_insensitive_and_validated():
    assert _model("gdc").layers[1].name == "embedding_gdc_conv"
    inputs = keras.Input((7, 7, CHANNELS))
    with pytest.raises(ValueError, match=r"Received: output='K'"):
        apply_embedding_output(inputs, "K", EMBEDDING, 0.0)
    with pytest.raises(ValueError, match=r"Received: output=None"):
        apply_embedding_output(inputs, None, EMBEDDING, 0.0)
