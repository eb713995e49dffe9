"""One helper that every keras_face layer goes through.

`run_layer_test` checks: the config round trip, a symbolic (functional) and an eager call,
the number of trainable and non-trainable weights (a stateful layer's state is part of its
contract), one `fit` step, the `mixed_float16` / `mixed_bfloat16` policies (float32
outputs, finite, close to the float32 result, same weight counts), and a `.keras`
save/load without `custom_objects` giving identical outputs.
"""

import os
import tempfile

import keras
import numpy as np


def _to_numpy(x):
    # A layer with several outputs (a list) gives them concatenated, flattened.
    if isinstance(x, (list, tuple)):
        return np.concatenate([np.ravel(keras.ops.convert_to_numpy(part)) for part in x])
    return keras.ops.convert_to_numpy(x)


def _dtypes(x):
    parts = x if isinstance(x, (list, tuple)) else [x]
    return {keras.backend.standardize_dtype(part.dtype) for part in parts}


def _build_model(layer, inputs):
    symbolic = [
        keras.Input(shape=np.asarray(x).shape[1:], dtype=str(np.asarray(x).dtype)) for x in inputs
    ]
    outputs = layer(symbolic if len(symbolic) > 1 else symbolic[0])
    return keras.Model(symbolic, outputs)


def _call(layer, inputs, training):
    args = [keras.ops.convert_to_tensor(x) for x in inputs]
    return layer(args if len(args) > 1 else args[0], training=training)


def _check_weight_counts(layer, trainable, non_trainable):
    if trainable is not None:
        names = [w.path for w in layer.trainable_weights]
        assert len(names) == trainable, f"trainable weights: {names}"
    if non_trainable is not None:
        names = [w.path for w in layer.non_trainable_weights]
        assert len(names) == non_trainable, f"non-trainable weights: {names}"


def run_layer_test(
    layer_cls,
    init_kwargs,
    inputs,
    fit_targets=None,
    expected_output_shape=None,
    expected_output_dtype="float32",
    mixed_precision_atol=None,
    training_for_outputs=False,
    run_fit=True,
    run_mixed_precision=True,
    run_saving=True,
    mixed_output_dtype="float32",
    expected_num_trainable_weights=None,
    expected_num_non_trainable_weights=None,
):
    """Run the standard battery of checks on a layer.

    Args:
        layer_cls: the layer class.
        init_kwargs: dict of constructor arguments.
        inputs: list of NumPy arrays (the layer is called with the list, or with the single
            array when there is one).
        fit_targets: NumPy targets for a one-step `fit` with sparse categorical
            cross-entropy on logits; `None` skips the fit step unless `run_fit` is False.
        expected_output_shape: tuple to compare with the eager output shape.
        expected_output_dtype: str. Defaults to `"float32"`.
        mixed_precision_atol: absolute tolerance of the mixed-precision outputs against
            the float32 outputs (same weights). `None`: 1e-5 + 1e-5 * max |output|.
        training_for_outputs: bool. The `training` flag of the compared calls.
        run_fit, run_mixed_precision, run_saving: switch parts off.
        mixed_output_dtype: str. Output dtype under the mixed policies: `"float32"`
            (heads: float32 logits) or `"compute"` (intermediate layers: the policy's
            compute dtype, compared with a tolerance of that precision). Defaults to
            `"float32"`.
        expected_num_trainable_weights: int or `None`. Number of trainable weights of
            the built layer (as keras-hub's `run_layer_test`); `None` skips the check.
        expected_num_non_trainable_weights: int or `None`. Number of non-trainable
            weights (the state of a stateful layer); `None` skips the check.

    Returns:
        The layer built in float32, for further checks.
    """
    # Config round trip.
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    for key in init_kwargs:
        assert key in config, f"get_config() is missing the constructor argument {key!r}"
    revived = layer_cls.from_config(config)
    assert revived.get_config() == config

    # Eager call, then symbolic model with the same weights.
    eager = _call(layer, inputs, training_for_outputs)
    _check_weight_counts(layer, expected_num_trainable_weights, expected_num_non_trainable_weights)
    if expected_output_shape is not None:
        assert tuple(eager.shape) == tuple(expected_output_shape)
    assert _dtypes(eager) == {expected_output_dtype}
    reference = _to_numpy(eager)
    assert np.all(np.isfinite(reference))
    model = _build_model(layer, inputs)
    symbolic_out = _to_numpy(
        model(
            [keras.ops.convert_to_tensor(x) for x in inputs]
            if len(inputs) > 1
            else keras.ops.convert_to_tensor(inputs[0]),
            training=training_for_outputs,
        )
    )
    np.testing.assert_allclose(symbolic_out, reference, rtol=1e-6, atol=1e-6)

    # One fit step.
    if run_fit and fit_targets is not None:
        model.compile(
            optimizer=keras.optimizers.SGD(0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        history = model.fit(
            inputs if len(inputs) > 1 else inputs[0],
            fit_targets,
            epochs=1,
            batch_size=len(fit_targets),
            verbose=0,
        )
        assert np.isfinite(history.history["loss"][0])
        reference = _to_numpy(_call(layer, inputs, training_for_outputs))

    # Mixed precision: float32 outputs, finite, close to float32 with the same weights.
    if run_mixed_precision:
        for policy in ("mixed_float16", "mixed_bfloat16"):
            mixed = layer_cls.from_config({**layer.get_config(), "dtype": policy})
            _call(mixed, inputs, training_for_outputs)  # build
            _check_weight_counts(
                mixed, expected_num_trainable_weights, expected_num_non_trainable_weights
            )
            mixed.set_weights(layer.get_weights())
            out = _call(mixed, inputs, training_for_outputs)
            expected = "float32" if mixed_output_dtype == "float32" else policy[6:]
            assert _dtypes(out) == {expected}, policy
            out = _to_numpy(out).astype(np.float32)
            assert np.all(np.isfinite(out)), policy
            atol = mixed_precision_atol
            if atol is None:
                precision = 1e-5 if expected == "float32" else 2e-2
                atol = precision + precision * float(np.max(np.abs(reference)))
            np.testing.assert_allclose(out, reference, atol=atol, rtol=0, err_msg=policy)

    # .keras round trip without custom_objects.
    if run_saving:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.keras")
            model.save(path)
            loaded = keras.saving.load_model(path)
        _check_weight_counts(
            loaded.layers[-1], expected_num_trainable_weights, expected_num_non_trainable_weights
        )
        loaded_out = _to_numpy(
            loaded(
                [keras.ops.convert_to_tensor(x) for x in inputs]
                if len(inputs) > 1
                else keras.ops.convert_to_tensor(inputs[0]),
                training=training_for_outputs,
            )
        )
        model_out = _to_numpy(
            model(
                [keras.ops.convert_to_tensor(x) for x in inputs]
                if len(inputs) > 1
                else keras.ops.convert_to_tensor(inputs[0]),
                training=training_for_outputs,
            )
        )
        np.testing.assert_array_equal(loaded_out, model_out)
    return layer
