"""The deployable SCF model, image -> (embedding, kappa), and the scores it gives pairs."""

import keras
import numpy as np

from keras_face.models import check_embedding_backbone
from keras_face.uncertainty.vmf import check_values
from keras_face.uncertainty.vmf import mutual_likelihood_score
from keras_face.uncertainty.vmf import unit_vectors

# Prefix of the layers `keras_face.models.apply_embedding_output` adds after the last
# feature map (`embedding_bn`, `embedding_gdc_conv`, ...).
EMBEDDING_LAYER_PREFIX = "embedding_"


def _feature_map(backbone, feature_layer):
    if feature_layer is not None:
        try:
            return backbone.get_layer(feature_layer).output
        except ValueError as error:
            raise ValueError(
                f"backbone {backbone.name!r} has no layer named {feature_layer!r}. "
                f"Received: feature_layer={feature_layer!r}"
            ) from error
    for layer in backbone.layers:
        if layer.name.startswith(EMBEDDING_LAYER_PREFIX):
            return layer.input
    last = [layer.name for layer in backbone.layers[-4:]]
    raise ValueError(
        f"Cannot find the feature map of backbone {backbone.name!r}: it has no layer named "
        f"'{EMBEDDING_LAYER_PREFIX}*' (the output layers of keras_face.models backbones). "
        "Pass feature_layer=<the name of the layer that outputs the last feature map>. "
        f"Received: a backbone whose last layers are {last}"
    )


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
    feature_map = _feature_map(backbone, feature_layer)
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
