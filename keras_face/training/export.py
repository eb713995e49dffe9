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

Every format is tested for parity with the Keras model (max abs difference <= 1e-4 on
random inputs): `run_exported` runs an exported file with the matching runtime.
"""

import os
import shutil
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

EXPORT_FORMATS = ("savedmodel", "tflite", "onnx")
INPUT_DTYPES = ("float32", "uint8")
EXTENSIONS = {"savedmodel": "", "tflite": ".tflite", "onnx": ".onnx"}


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
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            "The embedding model must have one image input and one embedding output. "
            f"Received: {len(model.inputs)} inputs, {len(model.outputs)} outputs"
        )
    return model


def serving_model(model, input_dtype="float32"):
    """Wrap an embedding model so that it takes `input_dtype` images named `images`.

    Args:
        model: `keras.Model` (or `.keras` path) from images to embeddings.
        input_dtype: str. `"float32"` or `"uint8"`. Defaults to `"float32"`.

    Returns:
        A functional `keras.Model` `images -> embeddings` (float32) sharing the weights.
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
    embeddings = model(keras.ops.cast(images, "float32"))
    embeddings = keras.layers.Activation("linear", dtype="float32", name="embeddings")(embeddings)
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
        return {"embeddings": serving(images, training=False)}

    tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset, output_path=path)


def export_embedding_model(model, path, format="savedmodel", input_dtype="float32", opset=17):
    """Export an embedding model for deployment.

    Args:
        model: `keras.Model` from images to embeddings, a `FaceTrainingModel` (its
            `embedding_model` is exported) or the path of a `.keras` file.
        path: str. Output: a directory (`"savedmodel"`) or a file (`.tflite`, `.onnx`).
        format: str. `"savedmodel"`, `"tflite"` or `"onnx"`. Defaults to `"savedmodel"`.
        input_dtype: str. `"float32"` (values in [0, 255]) or `"uint8"` images.
            Defaults to `"float32"`.
        opset: int. ONNX opset. Defaults to `17`.

    Returns:
        str. `path`.

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
    if format == "savedmodel":
        _export_savedmodel(serving, path)
    elif format == "tflite":
        _export_tflite(serving, path)
    else:
        _export_onnx(serving, path, opset)
    return path


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
        float32 array `(N, D)`.

    Example:
        ```python
        embeddings = keras_face.training.run_exported("embedding.onnx", images)
        ```
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Exported model not found. Received: path={path!r}")
    format = format or infer_format(path)
    images = np.asarray(images)
    if format == "savedmodel":
        loaded = tf.saved_model.load(path)
        dtype = loaded.serve.input_signature[0].dtype.as_numpy_dtype
        return np.asarray(loaded.serve(tf.constant(images.astype(dtype))), dtype=np.float32)
    if format == "tflite":
        interpreter = _tflite_interpreter(path)
        source = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(source["index"], list(images.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], images.astype(source["dtype"]))
        interpreter.invoke()
        target = interpreter.get_output_details()[0]
        return np.asarray(interpreter.get_tensor(target["index"]), dtype=np.float32)
    if format == "onnx":
        try:  # optional dependency (keras-face[export])
            import onnxruntime
        except ImportError as error:
            raise ImportError(
                "Running an ONNX file needs onnxruntime: pip install 'keras-face[export]'."
            ) from error
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        source = session.get_inputs()[0]
        dtype = np.uint8 if source.type == "tensor(uint8)" else np.float32
        return np.asarray(
            session.run(None, {source.name: images.astype(dtype)})[0], dtype=np.float32
        )
    raise ValueError(f"format must be one of {list(EXPORT_FORMATS)}. Received: format={format!r}")
