"""Export the embedding model: SavedModel, TFLite and ONNX, and run the exported files.

Only the embedding model (the backbone) is exported: the head exists for training only.
The exported model takes raw RGB face crops `(batch, H, W, 3)` (112x112 for the standard
models), either `uint8` or `float32` values in [0, 255] (`input_dtype`), with the
preprocessing inside, and returns float32 embeddings `(batch, D)` (not normalised; the
verification protocols L2-normalise them). The batch dimension is dynamic.

- `"savedmodel"`: `keras.Model.export(format="tf_saved_model")`, endpoint `serve`,
  signature `serving_default`; needs TensorFlow.
- `"tflite"`: `tf.lite.TFLiteConverter.from_saved_model`, float32, no quantisation; needs
  TensorFlow.
- `"onnx"`: `tf2onnx.convert.from_function` on the serving function (opset 17); needs
  `pip install keras-face[export]` (tf2onnx, onnx, onnxruntime).

A model with the outputs `{"embedding", "kappa"}` (SCF's
`keras_face.uncertainty.embedding_and_confidence_model`) exports with two named outputs,
`embeddings` `(batch, D)` and `kappa` `(batch,)`.

Every file is validated before the export reports success: it is written under a
temporary name, loaded and run on a batch of two images in its own runtime (SavedModel
reload, TFLite interpreter, ONNX `onnx.checker` and, when installed, onnxruntime), checked
for the expected output shapes and finite values, and only then renamed into place; a
file that fails raises `ExportError` and is removed. The ONNX batch dimension is named
`batch`. Every format is tested for parity with the Keras model (max abs difference
<= 1e-4 on random inputs): `run_exported` runs an exported file with the matching
runtime, `check_exported` compares it with the Keras model.
"""

import os
import shutil
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_face.errors import KerasFaceError

EXPORT_FORMATS = ("savedmodel", "tflite", "onnx")
INPUT_DTYPES = ("float32", "uint8")
EXTENSIONS = {"savedmodel": "", "tflite": ".tflite", "onnx": ".onnx"}
# Name of the dynamic first dimension of the ONNX inputs and outputs (tf2onnx writes
# `unk__<n>`).
ONNX_BATCH_DIMENSION = "batch"
# Output names of the exported models: the embeddings, and SCF's confidence when present.
EMBEDDINGS_OUTPUT = "embeddings"
KAPPA_OUTPUT = "kappa"
# The maximum absolute difference from the Keras model that `check_exported` accepts.
PARITY_TOLERANCE = 1e-4


class ExportError(KerasFaceError, RuntimeError):
    """An exported file that its runtime cannot load or run, or that differs from Keras.

    The message names the file, the format and what failed (the converter, the
    validation run, the output shapes, the parity check).

    Example:
        ```python
        try:
            keras_face.training.export_embedding_model(model, "face.onnx", format="onnx")
        except keras_face.training.ExportError as error:
            print(error)  # face.onnx: the onnx export is not valid: ...
        ```
    """


def _load_model(model):
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise FileNotFoundError(f"Model file not found. Received: model={path!r}")
        if not path.endswith(".keras"):
            raise ValueError(f"Expected a .keras embedding model file. Received: model={path!r}")
        model = keras.saving.load_model(path)
    embedding_model = getattr(model, "embedding_model", None)
    if embedding_model is not None:
        model = embedding_model  # a FaceTrainingModel: export its backbone.
    if len(model.inputs) != 1 or not (len(model.outputs) == 1 or _is_embedding_and_kappa(model)):
        raise ValueError(
            "The embedding model must have one image input and one embedding output (or "
            "the outputs {'embedding', 'kappa'} of an SCF model). "
            f"Received: {len(model.inputs)} inputs, {len(model.outputs)} outputs"
        )
    return model


def _is_embedding_and_kappa(model):
    structure = model.output
    return isinstance(structure, dict) and set(structure) == {"embedding", "kappa"}


def serving_model(model, input_dtype="float32"):
    """Wrap an embedding model so that it takes `input_dtype` images named `images`.

    Args:
        model: `keras.Model` (or `.keras` path) from images to embeddings, or to
            `{"embedding", "kappa"}` (SCF).
        input_dtype: str. `"float32"` or `"uint8"`. Defaults to `"float32"`.

    Returns:
        A functional `keras.Model` `images -> embeddings` (float32) sharing the weights;
        for an SCF model `images -> {"embeddings", "kappa"}`.

    Example:
        ```python
        serving = keras_face.training.export.serving_model(backbone, "uint8")
        ```
    """
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(
            f"input_dtype must be one of {list(INPUT_DTYPES)}. "
            f"Received: input_dtype={input_dtype!r}"
        )
    model = _load_model(model)
    shape = tuple(model.inputs[0].shape[1:])
    if None in shape:
        raise ValueError(
            "Export needs a fixed image size (height, width, channels). "
            f"Received: input shape {shape}"
        )
    images = keras.Input(shape=shape, dtype=input_dtype, name="images")
    outputs = model(keras.ops.cast(images, "float32"))
    if isinstance(outputs, dict):
        embeddings = keras.layers.Activation("linear", dtype="float32", name=EMBEDDINGS_OUTPUT)(
            outputs["embedding"]
        )
        kappa = keras.layers.Activation("linear", dtype="float32", name=KAPPA_OUTPUT)(
            outputs["kappa"]
        )
        return keras.Model(
            images,
            {EMBEDDINGS_OUTPUT: embeddings, KAPPA_OUTPUT: kappa},
            name=f"{model.name}_serving",
        )
    embeddings = keras.layers.Activation("linear", dtype="float32", name=EMBEDDINGS_OUTPUT)(outputs)
    return keras.Model(images, embeddings, name=f"{model.name}_serving")


def _export_savedmodel(serving, path):
    serving.export(path, format="tf_saved_model", verbose=False)


def _export_tflite(serving, path):
    directory = tempfile.mkdtemp(prefix="keras_face_tflite_")
    try:
        _export_savedmodel(serving, directory)
        converter = tf.lite.TFLiteConverter.from_saved_model(directory)
        flatbuffer = converter.convert()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    with open(path, "wb") as file:
        file.write(flatbuffer)


def _export_onnx(serving, path, opset):
    try:  # optional dependency (keras-face[export]): imported when an ONNX file is asked for
        import tf2onnx
    except ImportError as error:
        raise ImportError(
            "ONNX export needs tf2onnx (and onnxruntime to run the file): "
            "pip install 'keras-face[export]' (tf2onnx onnx onnxruntime)."
        ) from error
    spec = serving.inputs[0]
    signature = [tf.TensorSpec((None,) + tuple(spec.shape[1:]), spec.dtype, name="images")]

    @tf.function(input_signature=signature)
    def serve(images):
        outputs = serving(images, training=False)
        return outputs if isinstance(outputs, dict) else {EMBEDDINGS_OUTPUT: outputs}

    tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset, output_path=path)
    _name_onnx_batch_dimension(path)


def _name_onnx_batch_dimension(path):
    """Rename tf2onnx's `unk__<n>` batch symbol to `batch` in the inputs and outputs."""
    # onnx comes with tf2onnx (the optional `export` extra).
    import onnx

    model = onnx.load(path)
    graph = model.graph
    symbols = {
        value.type.tensor_type.shape.dim[0].dim_param
        for value in list(graph.input) + list(graph.output)
        if value.type.tensor_type.shape.dim and value.type.tensor_type.shape.dim[0].dim_param
    }
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        for dimension in value.type.tensor_type.shape.dim:
            if dimension.dim_param in symbols:
                dimension.dim_param = ONNX_BATCH_DIMENSION
    for value in list(graph.input) + list(graph.output):
        dimensions = value.type.tensor_type.shape.dim
        if dimensions and not dimensions[0].dim_param and not dimensions[0].dim_value:
            dimensions[0].dim_param = ONNX_BATCH_DIMENSION
    onnx.save(model, path)


def export_embedding_model(model, path, format="savedmodel", input_dtype="float32", opset=17):
    """Export an embedding model for deployment.

    Args:
        model: `keras.Model` from images to embeddings, a `FaceTrainingModel` (its
            `embedding_model` is exported), an SCF model with the outputs
            `{"embedding", "kappa"}` (exported as `embeddings` and `kappa`) or the path
            of a `.keras` file.
        path: str. Output: a directory (`"savedmodel"`) or a file (`.tflite`, `.onnx`).
        format: str. `"savedmodel"`, `"tflite"` or `"onnx"`. Defaults to `"savedmodel"`.
        input_dtype: str. `"float32"` (values in [0, 255]) or `"uint8"` images.
            Defaults to `"float32"`.
        opset: int. ONNX opset. Defaults to `17`.

    Returns:
        str. `path`.

    Raises:
        ExportError: naming the file, when the converter fails or the written file does
            not load and run in its runtime (nothing is left at `path` then).

    Example:
        ```python
        keras_face.training.export_embedding_model(
            "runs/main/embedding_model.keras", "embedding.onnx", format="onnx")
        ```
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(
            f"format must be one of {list(EXPORT_FORMATS)}. Received: format={format!r}"
        )
    path = os.fspath(path)
    serving = serving_model(model, input_dtype)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    # Written under a temporary name in the same folder, validated, then renamed: an
    # invalid or half-written export never sits at `path`.
    temporary = tempfile.mkdtemp(prefix=".export_", dir=parent)
    written = os.path.join(temporary, os.path.basename(path) or "model")
    try:
        try:
            if format == "savedmodel":
                _export_savedmodel(serving, written)
            elif format == "tflite":
                _export_tflite(serving, written)
            else:
                _export_onnx(serving, written, opset)
        except ImportError:
            raise
        except Exception as error:  # the converters raise many types; all mean "failed"
            raise ExportError(
                f"{path}: the {format} converter failed: {_first_line(error)}"
            ) from error
        _validate(serving, written, format, path)
        if os.path.isdir(path) and format == "savedmodel":
            shutil.rmtree(path)
        os.replace(written, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return path


def _first_line(error):
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:300] if text else ''}"


def _validate(serving, written, format, path):
    """Load and run the written file on two images; raise `ExportError` if it fails."""
    shape = (2,) + tuple(serving.inputs[0].shape[1:])
    images = np.full(shape, 128, dtype=np.uint8)
    if format == "onnx":
        # onnx comes with tf2onnx (the optional `export` extra).
        import onnx

        try:
            onnx.checker.check_model(written, full_check=True)
        except Exception as error:  # onnx raises ValidationError and others
            raise ExportError(
                f"{path}: the onnx export is not valid (onnx.checker): {_first_line(error)}"
            ) from error
        try:  # optional dependency (keras-face[export]): run the file when it is installed
            import onnxruntime  # noqa: F401
        except ImportError:
            return
    try:
        outputs = _run(written, images, format)
    except Exception as error:  # each runtime raises its own types
        raise ExportError(
            f"{path}: the {format} export does not run in its runtime: {_first_line(error)}"
        ) from error
    expected = {
        name: tuple(tensor.shape[1:])
        for name, tensor in (
            serving.output.items()
            if isinstance(serving.output, dict)
            else [(EMBEDDINGS_OUTPUT, serving.output)]
        )
    }
    for name, dims in expected.items():
        value = outputs.get(name)
        if value is None or tuple(value.shape) != (2,) + dims:
            raise ExportError(
                f"{path}: the {format} export gives the wrong outputs: expected {name!r} of "
                f"shape {(2,) + dims}. Received: "
                f"{ {key: tuple(item.shape) for key, item in outputs.items()} }"
            )
        if not np.all(np.isfinite(value)):
            raise ExportError(
                f"{path}: the {format} export gives non-finite values in {name!r} for "
                "mid-grey images"
            )


def infer_format(path):
    """`"savedmodel"` for a directory, else from the extension (`.tflite`, `.onnx`)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return "savedmodel"
    extension = os.path.splitext(path)[1].lower()
    for name, suffix in EXTENSIONS.items():
        if suffix and extension == suffix:
            return name
    raise ValueError(
        "Cannot tell the format of an exported model from its name (a SavedModel "
        f"directory, .tflite or .onnx). Received: path={path!r}"
    )


def _tflite_interpreter(path):
    try:  # optional: the LiteRT runtime, when installed
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        with warnings.catch_warnings():
            # tf.lite.Interpreter warns that it moves to ai_edge_litert; it still works.
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_path=path)
    return Interpreter(model_path=path)


def run_exported(path, images, format=None):
    """Compute embeddings with an exported model, in its own runtime.

    Args:
        path: str. Exported SavedModel directory, `.tflite` or `.onnx` file.
        images: array `(N, H, W, 3)`; cast to the model's input dtype.
        format: str. Defaults to `infer_format(path)`.

    Returns:
        float32 array `(N, D)`; for an exported SCF model a dict of float32 arrays,
        `{"embeddings": (N, D), "kappa": (N,)}`.

    Example:
        ```python
        embeddings = keras_face.training.run_exported("embedding.onnx", images)
        ```
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Exported model not found. Received: path={path!r}")
    format = format or infer_format(path)
    if format not in EXPORT_FORMATS:
        raise ValueError(
            f"format must be one of {list(EXPORT_FORMATS)}. Received: format={format!r}"
        )
    outputs = _run(path, np.asarray(images), format)
    if set(outputs) == {EMBEDDINGS_OUTPUT}:
        return outputs[EMBEDDINGS_OUTPUT]
    return outputs


def _output_dict(names, values):
    """`{output name: float32 array}`; a lone unnamed output is the embeddings."""
    values = [np.asarray(value, dtype=np.float32) for value in values]
    if len(values) == 1:
        return {EMBEDDINGS_OUTPUT: values[0]}
    return dict(zip(names, values))


def _run(path, images, format):
    if format == "savedmodel":
        loaded = tf.saved_model.load(path)
        dtype = loaded.serve.input_signature[0].dtype.as_numpy_dtype
        result = loaded.serve(tf.constant(images.astype(dtype)))
        if isinstance(result, dict):
            return _output_dict(list(result), list(result.values()))
        return _output_dict([EMBEDDINGS_OUTPUT], [result])
    if format == "tflite":
        interpreter = _tflite_interpreter(path)
        signatures = interpreter.get_signature_list()
        if signatures:  # named outputs (`embeddings`, `kappa`) through the signature
            key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
            runner = interpreter.get_signature_runner(key)
            (input_name,) = signatures[key]["inputs"]
            dtype = runner.get_input_details()[input_name]["dtype"]
            result = runner(**{input_name: images.astype(dtype)})
            return _output_dict(list(result), list(result.values()))
        source = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(source["index"], list(images.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], images.astype(source["dtype"]))
        interpreter.invoke()
        values = [
            interpreter.get_tensor(target["index"]) for target in interpreter.get_output_details()
        ]
        return _output_dict([EMBEDDINGS_OUTPUT], values[:1])
    try:  # optional dependency (keras-face[export])
        import onnxruntime
    except ImportError as error:
        raise ImportError(
            "Running an ONNX file needs onnxruntime: pip install 'keras-face[export]'."
        ) from error
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    source = session.get_inputs()[0]
    dtype = np.uint8 if source.type == "tensor(uint8)" else np.float32
    names = [output.name for output in session.get_outputs()]
    return _output_dict(names, session.run(None, {source.name: images.astype(dtype)}))


def check_exported(model, path, format=None, images=None, tolerance=PARITY_TOLERANCE):
    """Compare an exported model with its Keras model; raise `ExportError` past tolerance.

    Args:
        model: the Keras model that was exported (as given to `export_embedding_model`).
        path: str. The exported SavedModel directory, `.tflite` or `.onnx` file.
        format: str. Defaults to `infer_format(path)`.
        images: uint8 array `(N, H, W, 3)`. Defaults to `None`: four random images of
            the model's input size (seed 0).
        tolerance: float. Largest accepted absolute difference. Defaults to `1e-4`.

    Returns:
        dict from output name (`"embeddings"`, and `"kappa"` for SCF) to the maximum
        absolute difference (for `kappa`, relative to `max(1, kappa)`).

    Raises:
        ExportError: naming the file, when it does not run or differs by more than
            `tolerance`.

    Example:
        ```python
        keras_face.training.check_exported(backbone, "face.onnx")  # {"embeddings": 1e-6}
        ```
    """
    serving = serving_model(model, "float32")
    path = os.fspath(path)
    if images is None:
        shape = (4,) + tuple(serving.inputs[0].shape[1:])
        images = np.random.default_rng(0).integers(0, 256, size=shape).astype(np.uint8)
    images = np.asarray(images)
    expected = serving(images.astype("float32"), training=False)
    if not isinstance(expected, dict):
        expected = {EMBEDDINGS_OUTPUT: expected}
    try:
        actual = _run(path, images, format or infer_format(path))
    except (ImportError, FileNotFoundError):
        raise
    except Exception as error:  # each runtime raises its own types
        raise ExportError(f"{path}: the exported model does not run: {_first_line(error)}") from (
            error
        )
    differences = {}
    for name, value in expected.items():
        value = keras.ops.convert_to_numpy(value)
        if name not in actual or actual[name].shape != value.shape:
            raise ExportError(
                f"{path}: the exported output {name!r} does not match the Keras model's "
                f"shape {value.shape}. Received: "
                f"{ {key: item.shape for key, item in actual.items()} }"
            )
        difference = np.abs(actual[name] - value)
        if name == KAPPA_OUTPUT:  # kappa reaches 1e4: relative to it (float32 rounding)
            difference = difference / np.maximum(np.abs(value), 1.0)
        differences[name] = float(np.max(difference))
    worst = max(differences.values())
    if not worst <= tolerance:
        raise ExportError(
            f"{path}: the exported model differs from the Keras model by {worst:.2e} "
            f"(> {tolerance:g}). Received: max abs differences {differences}"
        )
    return differences
