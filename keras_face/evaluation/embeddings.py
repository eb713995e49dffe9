"""Embedding extraction with insightface's flip test: `normalise(f(x) + f(flip(x)))`."""

import numpy as np


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
        raise ValueError(f"`features` must be 2-D (N, D). Received: features.shape={features.shape}")
    if not np.issubdtype(features.dtype, np.floating):
        features = features.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", features, features))
    norms[norms < 10 * np.finfo(norms.dtype).eps] = 1.0
    return features / norms[:, None]


def _call_model(model, batch):
    import keras

    if isinstance(model, keras.layers.Layer):
        outputs = model(batch, training=False)
    else:
        outputs = model(batch)
    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
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
    from tqdm.auto import tqdm

    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be positive. Received: batch_size={batch_size}")
    if not hasattr(images, "shape") or len(images.shape) != 4:
        raise ValueError(
            "`images` must be an array of shape (N, H, W, C). "
            f"Received: shape={getattr(images, 'shape', None)}"
        )
    num_images = int(images.shape[0])
    embeddings = None
    progress = tqdm(
        total=num_images, desc="embeddings", unit="img", disable=not verbose, leave=False
    )
    try:
        for start in range(0, num_images, batch_size):
            batch = np.asarray(images[start : start + batch_size], dtype=np.float32)
            count = batch.shape[0]
            if flip:
                outputs = _call_model(model, np.concatenate([batch, batch[:, :, ::-1]], axis=0))
                features = outputs[:count].astype(np.float64) + outputs[count:].astype(np.float64)
            else:
                features = _call_model(model, batch).astype(np.float64)
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
