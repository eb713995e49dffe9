"""Embedding extraction with insightface's flip test: `normalise(f(x) + f(flip(x)))`."""

import weakref

import keras
import numpy as np
from tqdm.auto import tqdm


def l2_normalize(features):
    """Divide every row by its L2 norm, as `sklearn.preprocessing.normalize` does.

    Rows whose norm is below `10 * eps` of the dtype are left unchanged (scikit-learn's
    rule), so zero rows stay zero instead of becoming NaN.

    Args:
        features: float array of shape `(N, D)`.

    Returns:
        A new array of the same shape and floating dtype.

    Example:
        ```python
        unit = keras_face.evaluation.l2_normalize(features)
        ```
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(
            f"`features` must be 2-D (N, D). Received: features.shape={features.shape}"
        )
    if not np.issubdtype(features.dtype, np.floating):
        features = features.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", features, features))
    norms[norms < 10 * np.finfo(norms.dtype).eps] = 1.0
    return features / norms[:, None]


# One compiled forward per Keras model, kept while the model lives (a verification callback
# extracts embeddings every epoch: no new trace each time).
_COMPILED = weakref.WeakKeyDictionary()


def inference_function(model):
    """A function `batch -> (B, D) NumPy embeddings` on the fastest correct path for `model`.

    `model.predict` / `predict_on_batch` cost more than the network: each call goes
    through Keras' data adapter and (on TensorFlow) `tf.data` plus the distribution
    machinery, and a direct eager call runs op by op and keeps allocator caches per
    shape. For a Keras layer or model this returns one compiled forward pass in inference
    mode, traced once for any batch size: a `tf.function` with an unknown batch
    dimension on TensorFlow, `jax.jit` of `stateless_call` on JAX (one compilation per
    batch size, the variables' current values at each call), `torch.no_grad` on
    PyTorch; it is kept for the model's lifetime, so repeated extractions (a callback
    every epoch) trace once. Other callables are called as they are.

    Args:
        model: a Keras layer/model or a callable mapping a `(B, H, W, C)` float32 batch
            to `(B, D)` embeddings.

    Returns:
        A function from a float32 NumPy batch to a float NumPy array `(B, D)`.

    Example:
        ```python
        forward = keras_face.evaluation.embeddings.inference_function(backbone)
        features = forward(images.astype("float32"))
        ```
    """
    if not isinstance(model, keras.layers.Layer):
        return lambda batch: _check_outputs(model(batch))
    backend = keras.backend.backend()
    # Lazy imports: only the running backend's framework may be imported (keras_face
    # runs on JAX and PyTorch without TensorFlow).
    if model in _COMPILED:
        return _COMPILED[model]
    # The cache holds the function while the model lives; the function must not hold the
    # model (a weak reference), or the model would never be freed.
    model_ref = weakref.ref(model)
    if backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(
            lambda batch: _first_output(model_ref()(batch, training=False)),
            reduce_retracing=True,
        )

        def forward(batch):
            return _check_outputs(compiled(tf.convert_to_tensor(batch)))

        _COMPILED[model] = forward
        return forward
    if backend == "jax":
        import jax

        @jax.jit
        def compiled(trainable, non_trainable, batch):
            outputs, _ = model_ref().stateless_call(trainable, non_trainable, batch, training=False)
            return _first_output(outputs)

        def forward(batch):
            # The variables' current values: the weights may have changed since the last call.
            layer = model_ref()
            trainable = [variable.value for variable in layer.trainable_variables]
            non_trainable = [variable.value for variable in layer.non_trainable_variables]
            return _check_outputs(compiled(trainable, non_trainable, batch))

        _COMPILED[model] = forward
        return forward
    if backend == "torch":
        import torch

        def forward(batch):
            with torch.no_grad():
                return _check_outputs(model_ref()(batch, training=False))

    else:

        def forward(batch):
            return _check_outputs(model_ref()(batch, training=False))

    _COMPILED[model] = forward
    return forward


def _first_output(outputs):
    if isinstance(outputs, (list, tuple)):
        return outputs[0]
    return outputs


def _check_outputs(outputs):
    outputs = _first_output(outputs)
    if isinstance(outputs, dict):
        raise ValueError(
            "The embedding model must return one (batch, dim) tensor. "
            f"Received: outputs with keys {sorted(outputs)}"
        )
    outputs = keras.ops.convert_to_numpy(outputs)
    if outputs.ndim != 2:
        raise ValueError(
            "The embedding model must return a (batch, dim) tensor. "
            f"Received: output shape={outputs.shape}"
        )
    return outputs


def extract_embeddings(
    model,
    images,
    batch_size=64,
    flip=True,
    normalize=True,
    verbose=True,
    dtype="float32",
):
    """Embeddings of a set of face images, with insightface's flip test.

    Each image and its horizontal mirror go through the model in the same batch; the two
    embeddings are added in float64 and the sum is L2-normalised (insightface's
    `verification.test`, "Accuracy-Flip"). Images are passed as float32 without any
    rescaling, so give the model what it was trained on (keras_face backbones with
    `preprocessing=True` take raw RGB in `[0, 255]`).

    Args:
        model: callable mapping a `(B, H, W, C)` float32 batch to `(B, D)` embeddings,
            e.g. a backbone built by `keras_face.models`; Keras layers and models are
            called with `training=False`.
        images: array of shape `(N, H, W, C)` (uint8 or float), channels last.
        batch_size: int. Images per model call (twice that with `flip`). Defaults to `64`.
        flip: bool. Add the embedding of the horizontally flipped image.
            Defaults to `True`.
        normalize: bool. L2-normalise the result; `False` keeps the norm (IJB's
            feature-norm weighting). Defaults to `True`.
        verbose: bool. Show a progress bar. Defaults to `True`.
        dtype: str. dtype of the returned array; `"float64"` reproduces insightface's
            arrays exactly. Defaults to `"float32"`.

    Returns:
        Array of shape `(N, D)`.

    Example:
        ```python
        backbone = keras_face.models.iresnet18(embedding_size=128)
        embeddings = keras_face.evaluation.extract_embeddings(backbone, images)
        result = keras_face.evaluation.verify(embeddings, issame)
        ```

    References:
        - [Deng et al., 2019, ArcFace](https://arxiv.org/abs/1801.07698)
    """
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be positive. Received: batch_size={batch_size}")
    if not hasattr(images, "shape") or len(images.shape) != 4:
        raise ValueError(
            "`images` must be an array of shape (N, H, W, C). "
            f"Received: shape={getattr(images, 'shape', None)}"
        )
    num_images = int(images.shape[0])
    forward = inference_function(model)
    embeddings = None
    progress = tqdm(
        total=num_images, desc="embeddings", unit="img", disable=not verbose, leave=False
    )
    try:
        for start in range(0, num_images, batch_size):
            batch = np.asarray(images[start : start + batch_size], dtype=np.float32)
            count = batch.shape[0]
            if flip:
                outputs = forward(np.concatenate([batch, batch[:, :, ::-1]], axis=0))
                features = outputs[:count].astype(np.float64) + outputs[count:].astype(np.float64)
            else:
                features = forward(batch).astype(np.float64)
            if normalize:
                features = l2_normalize(features)
            if embeddings is None:
                embeddings = np.empty((num_images, features.shape[1]), dtype=dtype)
            embeddings[start : start + count] = features
            progress.update(count)
    finally:
        progress.close()
    if embeddings is None:
        embeddings = np.zeros((0, 0), dtype=dtype)
    return embeddings
