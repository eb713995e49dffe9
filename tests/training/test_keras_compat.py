"""One test per Keras / TensorFlow internal that keras_face relies on (`keras_compat`).

Each test fails when an upgrade removes the internal or changes what keras_face relies on,
so that the upgrade fails here rather than silently in a distributed training run.
"""

import inspect
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as tensorflow_trainer

from keras_face import heads
from keras_face import training
from keras_face.training import keras_compat
from tests.training import training_testing

pytestmark = pytest.mark.tf_only


def tiny_classifier():
    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    outputs = keras.layers.Dense(2, name="logits")(hidden)
    return keras.Model(inputs, outputs, name="classifier")


def toy_data(count=8):
    rng = np.random.default_rng(0)
    return rng.normal(size=(count, 4)).astype("float32"), (np.arange(count) % 2).astype("int32")


def test_installed_keras_is_a_verified_version():
    # A Keras upgrade lands here first: re-run this file, then add the version to
    # VERIFIED_KERAS_VERSIONS once every test below passes on it.
    assert keras_compat.is_verified_keras_version(), (
        f"keras {keras.__version__} is not in {keras_compat.VERIFIED_KERAS_VERSIONS}"
    )
    assert keras_compat.parse_version("3.15.1") == (3, 15, 1)
    assert keras_compat.parse_version("3.16.0.dev2025120100") == (3, 16, 0)
    assert keras_compat.parse_version("3.15") == (3, 15, 0)
    assert keras_compat.parse_version("3.15.0rc1") == (3, 15, 0)
    assert keras_compat.is_verified_keras_version("3.15.0")
    assert not keras_compat.is_verified_keras_version("3.14.9")
    assert not keras_compat.is_verified_keras_version("3.16.0")


def test_unverified_version_warns_once_naming_it():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert keras_compat.check_keras_version("3.15.2")
        assert not keras_compat.check_keras_version("3.99.7")
        assert not keras_compat.check_keras_version("3.99.7")
    messages = [
        str(warning.message)
        for warning in caught
        if issubclass(warning.category, keras_compat.KerasCompatibilityWarning)
    ]
    assert len(messages) == 1, messages
    assert messages[0].endswith("Received: keras.__version__='3.99.7'")


def test_distribute_strategy_is_the_creation_scope(monkeypatch):
    # `Model._distribute_strategy`: None outside any strategy, while the public property
    # falls back to the default strategy, so it cannot tell the two cases apart.
    outside = tiny_classifier()
    assert keras_compat.distribute_strategy_of(outside) is None
    assert outside.distribute_strategy is tf.distribute.get_strategy()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        inside = tiny_classifier()
    assert keras_compat.distribute_strategy_of(inside) is strategy
    # The JAX and PyTorch trainers have no such attribute (and no tf.distribute strategy).
    with pytest.raises(AttributeError):
        keras_compat.distribute_strategy_of(object())
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert keras_compat.distribute_strategy_of(object()) is None


def test_symbolic_build_hook_is_called_before_fit_and_evaluate():
    # `Model._maybe_symbolic_build(iterator=None, data_batch=None)`: the TensorFlow trainer
    # calls it before running steps; TrainingModel overrides it.
    assert keras_compat.SYMBOLIC_BUILD_HOOK in vars(training.TrainingModel)
    assert issubclass(training.FaceTrainingModel, training.TrainingModel)
    hook = getattr(keras.Model, keras_compat.SYMBOLIC_BUILD_HOOK)
    parameters = inspect.signature(hook).parameters
    assert list(parameters) == ["self", "iterator", "data_batch"]
    calls = []

    class Recording(keras.Model):
        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            calls.append((iterator is not None, data_batch is not None))
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    inputs = keras.Input((4,))
    model = Recording(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    x, y = toy_data()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert calls == [(True, False)]
    model.evaluate(x, y, batch_size=4, verbose=0)
    assert calls[1:] == [(True, False)]
    model.train_on_batch(x, y)
    model.test_on_batch(x, y)
    assert calls[2:] == [(False, True), (False, True)]


def test_symbolic_build_builds_metrics_loss_and_optimizer_from_symbolic_inputs():
    # `Model._symbolic_build(data_batch=...)` with symbolic tensors, no real batch.
    model = tiny_classifier()
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    assert not model.optimizer.built
    before = len(model.metrics_variables)  # the loss tracker's total and count
    features = keras.KerasTensor((None, 4), "float32")
    labels = keras.KerasTensor((None,), "int32")
    keras_compat.symbolic_build(model, data_batch=(features, labels))
    assert model.optimizer.built
    names = [metric.name for metric in model.metrics]
    assert "loss" in names and "compile_metrics" in names
    assert len(model.metrics_variables) == before + 2  # the accuracy's total and count
    # The same build FaceTrainingModel runs under a strategy, from its own inputs.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        face_model = training.build_training_model(
            training_testing.tiny_backbone(), heads.ArcFace(3, scale=16.0)
        )
        face_model.compile(optimizer=training.L2SGD(0.1))
    face_model._maybe_symbolic_build()
    assert face_model.optimizer.built
    assert [metric.name for metric in face_model.metrics] == ["loss", "compile_metrics"]


def test_nested_layers_reach_every_layer_of_sub_models_once():
    # `Layer._flatten_layers(include_self=False, recursive=True)`.
    backbone = training_testing.tiny_backbone()
    model = training.build_training_model(backbone, heads.ArcFace(3, scale=16.0))
    layers = keras_compat.nested_layers(model)
    assert model not in layers
    assert len({id(layer) for layer in layers}) == len(layers)
    names = {layer.name for layer in layers}
    assert {"tiny", "bn", "features", "conv", "fc"} <= names
    batch_norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert sorted(layer.name for layer in batch_norms) == ["bn", "features"]
    # A layer shared by two paths is listed once.
    shared = keras.layers.Dense(2, name="shared")
    inputs = keras.Input((2,))
    twice = keras.Model(inputs, shared(shared(inputs)))
    assert [layer.name for layer in keras_compat.nested_layers(twice)].count("shared") == 1


def test_set_initial_epoch_from_on_train_begin_skips_epochs():
    # `Model._initial_epoch`, read by fit after the callbacks' on_train_begin.
    epochs = []

    class StartAtEpochTwo(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            keras_compat.set_initial_epoch(self.model, 2)

        def on_epoch_begin(self, epoch, logs=None):
            epochs.append(epoch)

        def on_train_end(self, logs=None):
            keras_compat.set_initial_epoch(self.model, None)

    model = tiny_classifier()
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    x, y = toy_data()
    history = model.fit(x, y, batch_size=4, epochs=4, callbacks=[StartAtEpochTwo()], verbose=0)
    assert epochs == [2, 3]
    assert len(history.history["loss"]) == 2
    epochs.clear()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # the hook was reset to None
    assert int(model.optimizer.iterations.numpy()) == 2 * 2 + 2


def test_in_multi_worker_mode_is_the_test_keras_uses():
    # `MultiWorkerMirroredStrategy.extended._in_multi_worker_mode()`: keras_face must
    # reshape the logs exactly when Keras reduces them across workers.
    strategies = [tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(["/cpu:0"])]
    for strategy in strategies:
        assert keras_compat.in_multi_worker_mode(strategy) is False
        assert tensorflow_trainer._collective_all_reduce_multi_worker(strategy) is False
    assert keras_compat.in_multi_worker_mode(None) is False
    # The private method exists on the strategy's `extended` class (a two-worker run in
    # test_strategy.py::test_two_workers_on_localhost exercises its True branch).
    module = inspect.getmodule(tf.distribute.MultiWorkerMirroredStrategy)
    extended = [
        value
        for value in vars(module).values()
        if inspect.isclass(value) and callable(getattr(value, "_in_multi_worker_mode", None))
    ]
    assert extended, f"no _in_multi_worker_mode in {module.__name__}"
    source = inspect.getsource(tensorflow_trainer._collective_all_reduce_multi_worker)
    assert "MultiWorkerMirroredStrategy" in source and "_in_multi_worker_mode()" in source


def test_multi_worker_logs_need_a_leading_axis(monkeypatch):
    # Keras reduces every log value with strategy.reduce("MEAN", value, axis=0) across
    # workers, and TensorFlow cannot reduce a scalar along axis 0 (tensorflow#72388); a
    # leading axis of 1 gives back the mean scalar.
    recorded = []

    class Recorder:
        def reduce(self, reduction, value, axis=None):
            recorded.append((reduction, axis))
            return value

    monkeypatch.setattr(tensorflow_trainer, "_collective_all_reduce_multi_worker", lambda s: True)
    tensorflow_trainer.reduce_per_replica({"loss": tf.constant(1.0)}, Recorder(), "auto")
    assert recorded == [("MEAN", 0)]
    monkeypatch.undo()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    scalar = strategy.run(lambda: tf.constant(2.5))
    with pytest.raises(ValueError, match="Invalid reduction dimension 0"):
        strategy.reduce("MEAN", scalar, axis=0)
    vector = strategy.run(lambda: keras.ops.reshape(tf.constant(2.5), (1,)))
    reduced = strategy.reduce("MEAN", vector, axis=0)
    assert tuple(reduced.shape) == () and float(reduced) == 2.5
