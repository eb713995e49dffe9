"""The deployable SCF model, image -> (embedding, kappa), and the scores it gives pairs."""

import keras
import numpy as np

from keras_face.models import check_embedding_backbone
from keras_face.models import find_feature_map
from keras_face.uncertainty.vmf import check_values
from keras_face.uncertainty.vmf import mutual_likelihood_score
from keras_face.uncertainty.vmf import unit_vectors


def feature_and_embedding_model(backbone, feature_layer=None):
    """The backbone with two outputs: its last feature map and its embedding.

    The feature map is the input of the first `embedding_*` layer of a `keras_face.models`
    backbone (the last convolutional map, before `apply_embedding_output`), which is
    where SCF's confidence head reads (the authors' `conv_out`). The model shares every
    weight with `backbone`.

    Args:
        backbone: functional `keras.Model` from images to embeddings.
        feature_layer: str. Name of the layer whose output is the feature map, for
            backbones not built by `keras_face.models`. Defaults to `None` (found by name).

    Returns:
        A `keras.Model` `images -> [feature_map, embeddings]`.

    Example:
        ```python
        backbone = keras_face.models.mobilefacenet(input_shape=(32, 32, 3))
        features = keras_face.uncertainty.feature_and_embedding_model(backbone)
        feature_maps, embeddings = features.predict(images)  # (N, 2, 2, 512), (N, 128)
        ```
    """
    backbone = check_embedding_backbone(backbone)
    feature_map = find_feature_map(backbone, feature_layer)
    return keras.Model(
        backbone.inputs[0],
        [feature_map, backbone.outputs[0]],
        name=f"{backbone.name}_features",
    )


def embedding_and_confidence_model(backbone, confidence_head, feature_layer=None, name=None):
    """The deployable SCF model: images -> `{"embedding": (B, D), "kappa": (B,)}`.

    The embedding is the backbone's (unchanged by SCF); `kappa` is the confidence head on
    the backbone's last feature map. The model shares its weights with `backbone` and
    `confidence_head`, and saves and loads as a `.keras` file without `custom_objects`.

    Args:
        backbone: functional `keras.Model` from images to embeddings.
        confidence_head: a `SphericalConfidenceHead` (trained with `SCFTrainingModel`).
        feature_layer: str. See `feature_and_embedding_model`. Defaults to `None`.
        name: str. Model name. Defaults to `f"{backbone.name}_scf"`.

    Returns:
        A functional `keras.Model` with one image input and the outputs
        `{"embedding", "kappa"}` (float32).

    Example:
        ```python
        model = keras_face.uncertainty.embedding_and_confidence_model(backbone, head)
        outputs = model.predict(images)
        embeddings, kappa = outputs["embedding"], outputs["kappa"]
        model.save("scf.keras")
        ```
    """
    features = feature_and_embedding_model(backbone, feature_layer)
    spec = backbone.inputs[0]
    image = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype, name="image")
    feature_map, embedding = features(image)
    kappa = confidence_head(feature_map)
    embedding = keras.layers.Identity(dtype="float32", name="embedding")(embedding)
    kappa = keras.layers.Identity(dtype="float32", name="kappa")(kappa)
    return keras.Model(
        image, {"embedding": embedding, "kappa": kappa}, name=name or f"{backbone.name}_scf"
    )


def _embedding_and_kappa_tensors(model):
    """The symbolic embedding and kappa outputs of a functional model (kappa may be None)."""
    structure = model.output  # keeps the outputs' structure: a dict, a list or a tensor
    if isinstance(structure, dict):
        if "embedding" not in structure:
            raise ValueError(
                "A model with named outputs must have an 'embedding' output (and "
                f"optionally 'kappa'). Received: outputs {sorted(structure)}"
            )
        return structure["embedding"], structure.get("kappa")
    outputs = list(structure) if isinstance(structure, (list, tuple)) else [structure]
    if len(outputs) == 1:
        return outputs[0], None
    if len(outputs) == 2:
        return outputs[0], outputs[1]
    raise ValueError(
        "The model must output an embedding, or an embedding and kappa. "
        f"Received: a model with {len(outputs)} outputs"
    )


def embedding_output_model(model):
    """The embedding alone of a model that outputs an embedding, or embedding and kappa.

    Verification protocols take a model with one `(B, D)` output; this gives one for the
    deployable SCF model (`{"embedding", "kappa"}`, or a two-output list `[embedding,
    kappa]`). A one-output model, and a model without symbolic outputs (subclassed, or
    any callable), is returned unchanged.

    Args:
        model: a `keras.Model` (functional for the two-output case).

    Returns:
        A `keras.Model` from the same input to the embedding (sharing every weight), or
        `model` itself.

    Example:
        ```python
        scf = keras.saving.load_model("scf.keras")  # {"embedding", "kappa"}
        embedder = keras_face.uncertainty.embedding_output_model(scf)
        summary = keras_face.evaluation.evaluate_pairs(embedder, images, issame)
        ```
    """
    if not isinstance(model, keras.Model) or not getattr(model, "outputs", None):
        return model
    embedding, kappa = _embedding_and_kappa_tensors(model)
    if kappa is None and len(model.outputs) == 1:
        return model
    return keras.Model(model.input, embedding, name=f"{model.name}_embedding")


def quality_scores(model, images, batch_size=64):
    """Per-image quality scores of a model: its embedding norm, and kappa when it has one.

    The norm is that of the raw embedding of each image (no flip, not normalised): the
    quality score of MagFace. A model with the outputs `{"embedding", "kappa"}` (from
    `embedding_and_confidence_model`), or a list `[embedding, kappa]`, also gives SCF's
    `kappa`. Pass the result to `keras_face.evaluation.error_versus_discard`.

    Args:
        model: functional `keras.Model` from images to an embedding, or to an embedding
            and kappa.
        images: array `(N, H, W, C)` (uint8 or float), given to the model as float32.
        batch_size: int. Images per model call. Defaults to `64`.

    Returns:
        dict of float32 NumPy arrays `(N,)`: `"norm"`, and `"kappa"` when the model
        outputs it.

    Example:
        ```python
        scores = keras_face.uncertainty.quality_scores(scf_model, images[0::2])
        scores["norm"], scores["kappa"]
        ```
    """
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size}")
    if not hasattr(images, "shape") or len(images.shape) != 4:
        raise ValueError(
            "images must be an array of shape (N, H, W, C). "
            f"Received: shape={getattr(images, 'shape', None)}"
        )
    if not isinstance(model, keras.Model) or not getattr(model, "outputs", None):
        raise ValueError(
            "model must be a keras.Model with symbolic outputs (functional or Sequential). "
            f"Received: model={type(model).__name__}"
        )
    embedding, kappa = _embedding_and_kappa_tensors(model)
    outputs = [embedding] if kappa is None else [embedding, kappa]
    scorer = keras.Model(model.input, outputs, name=f"{model.name}_quality")
    norms, kappas = [], []
    for start in range(0, int(images.shape[0]), batch_size):
        batch = np.asarray(images[start : start + batch_size], dtype=np.float32)
        values = scorer(batch, training=False)
        values = values if isinstance(values, (list, tuple)) else [values]
        batch_embedding = check_values("embedding", keras.ops.convert_to_numpy(values[0]))
        norms.append(np.linalg.norm(batch_embedding.astype(np.float64), axis=-1))
        if kappa is not None:
            kappas.append(keras.ops.convert_to_numpy(values[1]).reshape(-1))
    result = {"norm": np.concatenate(norms).astype(np.float32)}
    if kappa is not None:
        result["kappa"] = np.asarray(
            check_values("kappa", np.concatenate(kappas), positive=True), np.float32
        )
    return result


def scf_pair_scores(model, images_a, images_b, batch_size=64):
    """Cosine and mutual likelihood scores of image pairs under an SCF model.

    Args:
        model: a model from `embedding_and_confidence_model` (or any model returning
            `{"embedding", "kappa"}`).
        images_a: array `(P, H, W, C)`, first images of the pairs.
        images_b: array `(P, H, W, C)`, second images.
        batch_size: int. Prediction batch size. Defaults to `64`.

    Returns:
        dict of float32 NumPy arrays `(P,)`: `"cosine"`, `"mutual_likelihood"`
        (`mutual_likelihood_score` on the unit sphere), `"kappa_a"`, `"kappa_b"`.

    Example:
        ```python
        scores = keras_face.uncertainty.scf_pair_scores(model, images[0::2], images[1::2])
        fpr, tpr, _ = keras_face.evaluation.roc_curve(issame, scores["mutual_likelihood"])
        ```
    """
    if len(images_a) != len(images_b):
        raise ValueError(
            "images_a and images_b must hold the same number of images. "
            f"Received: len(images_a)={len(images_a)}, len(images_b)={len(images_b)}"
        )
    outputs_a = model.predict(images_a, batch_size=batch_size, verbose=0)
    outputs_b = model.predict(images_b, batch_size=batch_size, verbose=0)
    embeddings_a = check_values("embedding", np.asarray(outputs_a["embedding"], np.float32))
    embeddings_b = check_values("embedding", np.asarray(outputs_b["embedding"], np.float32))
    kappa_a = np.asarray(outputs_a["kappa"], np.float32).reshape(-1)
    kappa_b = np.asarray(outputs_b["kappa"], np.float32).reshape(-1)
    cosine = np.sum(
        keras.ops.convert_to_numpy(unit_vectors(embeddings_a))
        * keras.ops.convert_to_numpy(unit_vectors(embeddings_b)),
        axis=-1,
    )
    mls = mutual_likelihood_score(embeddings_a, kappa_a, embeddings_b, kappa_b)
    return {
        "cosine": cosine.astype(np.float32),
        "mutual_likelihood": np.asarray(keras.ops.convert_to_numpy(mls), np.float32),
        "kappa_a": kappa_a,
        "kappa_b": kappa_b,
    }
