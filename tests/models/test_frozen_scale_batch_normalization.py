import keras
import numpy as np

from keras_face.models import FrozenScaleBatchNormalization
from tests.layer_testing import run_layer_test


def test_layer_battery():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(8, 6)).astype("float32")
    labels = rng.integers(0, 6, size=(8,)).astype("int32")
    # Under a mixed policy the layer computes in float16 like any BN (the embedding
    # outputs give it dtype="float32" explicitly), so the mixed check is left out here.
    run_layer_test(
        FrozenScaleBatchNormalization,
        {"epsilon": 1e-5, "momentum": 0.9},
        [features],
        fit_targets=labels,
        expected_output_shape=(8, 6),
        training_for_outputs=True,
        run_mixed_precision=False,
    )


def test_scale_stays_one_while_the_offset_trains():
    inputs = keras.Input((4,))
    layer = FrozenScaleBatchNormalization(name="features")
    model = keras.Model(inputs, layer(inputs))
    assert [w.name for w in model.trainable_weights] == ["beta"]
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    model.fit(x, x * 3.0 + 1.0, batch_size=8, epochs=2, verbose=0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.gamma), np.ones(4))
    assert np.all(np.abs(keras.ops.convert_to_numpy(layer.beta)) > 0.1)


def test_scale_stays_frozen_when_the_layer_is_unfrozen_again():
    layer = FrozenScaleBatchNormalization()
    layer.build((None, 3))
    layer.trainable = False
    layer.trainable = True
    assert not layer.gamma.trainable
    assert [w.name for w in layer.trainable_weights] == ["beta"]


def test_normalises_like_batch_normalization_with_unit_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(16, 5)).astype("float32")
    layer = FrozenScaleBatchNormalization(epsilon=1e-5)
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    expected = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
