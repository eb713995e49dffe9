"""SCF's training model: a frozen backbone and frozen class centres, a trainable kappa head."""

import math

import keras
import numpy as np
from keras import ops

from keras_face.heads import backend_ops
from keras_face.uncertainty.class_centre_cosine import ClassCentreCosine
from keras_face.uncertainty.class_centre_cosine import class_centres_from_head
from keras_face.uncertainty.embedding_and_confidence import embedding_and_confidence_model
from keras_face.uncertainty.embedding_and_confidence import feature_and_embedding_model
from keras_face.uncertainty.scf_loss import vmf_dirac_kl
from keras_face.uncertainty.vmf import validate_dim
from keras_face.uncertainty.vmf import vmf_mean_resultant


def _as_centres(class_centres):
    if hasattr(class_centres, "kernel"):
        return class_centres_from_head(class_centres)
    centres = np.asarray(class_centres, dtype=np.float32)
    if centres.ndim == 2:
        centres = centres[:, None, :]
    if centres.ndim != 3 or min(centres.shape) < 1:
        raise ValueError(
            "class_centres must be a keras_face.heads head or an array of shape "
            f"(num_classes, embedding_dim) or (num_classes, sub_centers, embedding_dim). "
            f"Received: class_centres shape={centres.shape}"
        )
    if not np.all(np.isfinite(centres)):
        raise ValueError(
            "class_centres must be finite. "
            f"Received: class_centres with {int(np.sum(~np.isfinite(centres)))} non-finite values"
        )
    return centres


@keras.saving.register_keras_serializable(package="keras_face")
class SCFTrainingModel(keras.Model):
    """SCF training: `[image, label] -> {"kappa", "cosine"}` with the vMF-Dirac KL loss.

    Spherical confidence learning (Li et al., CVPR 2021) keeps a trained recognition model
    fixed and learns, for each image, the concentration `kappa` of a von Mises-Fisher
    distribution around its embedding. The loss of an image of class `y` is
    `vmf_dirac_kl(cos(mu, w_y), kappa)`, whose optimum `kappa*` grows with the cosine to
    the class centre `w_y`: confident images are those that sit close to their class.

    - The backbone is frozen (`trainable = False`, called with `training=False`); the
      confidence head reads its last feature map (`feature_and_embedding_model`).
    - The class centres are frozen: a non-trainable weight, taken from the margin head
      the backbone was trained with (`class_centres_from_head`).
    - `compute_loss` returns the mean KL (plus any loss the layers add); compile without a
      loss. Logged metrics: `kappa` (mean), `cosine` (mean) and `stationarity`, the mean
      of `A_d(kappa) - cos`, the loss's derivative in `kappa`, which goes to 0 as the head
      converges.

    With `backbone=None` the model takes precomputed `[feature_map, embedding, label]`
    (from `feature_and_embedding_model(backbone).predict`), which trains the head many
    times faster when the same images are seen for many epochs; pass `feature_shape`.

    Args:
        backbone: functional `keras.Model` from images to embeddings, or `None` for
            precomputed features.
        class_centres: a trained `keras_face.heads` head (its kernel is read) or an array
            `(num_classes, embedding_dim)` / `(num_classes, sub_centers, embedding_dim)`.
        confidence_head: a `SphericalConfidenceHead`.
        radius: float. Radius `r` of the vMF sphere (only a constant of the loss).
            Defaults to `64.0` (the authors').
        feature_layer: str. See `feature_and_embedding_model`. Defaults to `None`.
        feature_shape: tuple. Shape of one precomputed feature map, when
            `backbone=None`. Defaults to `None`.
        **kwargs: other keyword arguments of `keras.Model` (`name`, ...).

    Example:
        ```python
        # backbone and head trained with keras_face.training.FaceTrainingModel
        dim = backbone.outputs[0].shape[-1]
        confidence = keras_face.uncertainty.SphericalConfidenceHead(
            "mlp", initial_kappa=float(keras_face.uncertainty.kappa_for_cosine(0.6, dim)))
        model = keras_face.uncertainty.SCFTrainingModel(backbone, head, confidence)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        model.fit(dataset, epochs=5)  # ((images, labels), labels) batches
        deployable = model.confidence_model()  # images -> {"embedding", "kappa"}
        ```

    References:
        - [Li et al., Spherical Confidence Learning for Face Recognition, CVPR 2021](https://openaccess.thecvf.com/content/CVPR2021/html/Li_Spherical_Confidence_Learning_for_Face_Recognition_CVPR_2021_paper.html)
    """

    def __init__(
        self,
        backbone,
        class_centres,
        confidence_head,
        radius=64.0,
        feature_layer=None,
        feature_shape=None,
        **kwargs,
    ):
        radius = float(radius)
        if not math.isfinite(radius) or radius <= 0:
            raise ValueError(f"radius must be a finite positive number. Received: radius={radius}")
        centres = _as_centres(class_centres)
        num_classes, sub_centers, dim = centres.shape
        validate_dim(dim)
        label = keras.Input(shape=(), dtype="int32", name="label")
        if backbone is None:
            if feature_shape is None:
                raise ValueError(
                    "Without a backbone the model takes precomputed feature maps: pass "
                    f"feature_shape. Received: feature_shape={feature_shape!r}"
                )
            feature_map = keras.Input(shape=tuple(feature_shape), name="feature_map")
            embedding = keras.Input(shape=(dim,), name="embedding")
            inputs = [feature_map, embedding, label]
        else:
            backbone.trainable = False
            features = feature_and_embedding_model(backbone, feature_layer)
            features.trainable = False
            spec = backbone.inputs[0]
            image = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype, name="image")
            feature_map, embedding = features(image, training=False)
            if embedding.shape[-1] != dim:
                raise ValueError(
                    f"The class centres have dimension {dim} but the backbone's embeddings "
                    f"have {embedding.shape[-1]}. Received: class_centres of shape "
                    f"{centres.shape}"
                )
            feature_shape = tuple(feature_map.shape[1:])
            inputs = [image, label]
        centre_layer = ClassCentreCosine(num_classes, dim, sub_centers, name="class_centres")
        cosine = centre_layer([embedding, label])
        kappa = confidence_head(feature_map)
        kwargs.setdefault("name", "scf_training_model")
        super().__init__(inputs=inputs, outputs={"kappa": kappa, "cosine": cosine}, **kwargs)
        centre_layer.centres.assign(centres)
        self.confidence_head = confidence_head
        self.class_centres = centre_layer
        self.radius = radius
        self.embedding_dim = int(dim)
        self.feature_layer = feature_layer
        self.feature_shape = tuple(int(size) for size in feature_shape)
        self.precomputed = backbone is None
        self._backbone_config = (
            None if backbone is None else keras.saving.serialize_keras_object(backbone)
        )
        # Kept for `confidence_model` without tracking it as a sub-layer: its layers are
        # already tracked through the feature model, under the paths the weights use.
        object.__setattr__(self, "_backbone", backbone)
        self.kappa_tracker = keras.metrics.Mean(name="kappa")
        self.cosine_tracker = keras.metrics.Mean(name="cosine")
        self.stationarity_tracker = keras.metrics.Mean(name="stationarity")

    def compile(self, optimizer="adam", loss=None, **kwargs):
        """`keras.Model.compile` without a loss: the loss is the model's own KL.

        Args:
            optimizer: optimizer or its name. Defaults to `"adam"`.
            loss: must be `None`.
            **kwargs: other arguments of `keras.Model.compile` (`jit_compile`, ...).
        """
        if loss is not None:
            raise ValueError(
                "SCFTrainingModel computes its own loss (vmf_dirac_kl); compile it without "
                f"one. Received: loss={loss!r}"
            )
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        # `compile` only checks the loss, so a saved compile config replays through it.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        kappa = y_pred["kappa"]
        cosine = y_pred["cosine"]
        per_sample = vmf_dirac_kl(cosine, kappa, self.embedding_dim, radius=self.radius)
        if sample_weight is not None:
            weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
            loss = ops.sum(per_sample * weight) / ops.maximum(ops.sum(weight), 1e-12)
        else:
            loss = ops.mean(per_sample)
        self.kappa_tracker.update_state(kappa)
        self.cosine_tracker.update_state(cosine)
        self.stationarity_tracker.update_state(
            vmf_mean_resultant(kappa, self.embedding_dim) - cosine
        )
        if self.losses:
            loss = loss + ops.sum(ops.stack([ops.cast(value, "float32") for value in self.losses]))
        # Under tf.distribute the replicas' gradients are summed: each contributes its share.
        return backend_ops.replica_share(loss)

    def confidence_model(self, backbone=None, name=None):
        """The deployable model `images -> {"embedding", "kappa"}` (shares the weights).

        Args:
            backbone: the backbone; required when the model was built on precomputed
                features. Defaults to `None` (the model's own backbone).
            name: str. Model name. Defaults to `f"{backbone.name}_scf"`.

        Returns:
            The model of `embedding_and_confidence_model`.
        """
        backbone = backbone or self._backbone
        if backbone is None:
            raise ValueError(
                "This SCFTrainingModel was built on precomputed features: pass the backbone. "
                "Received: backbone=None"
            )
        return embedding_and_confidence_model(
            backbone, self.confidence_head, self.feature_layer, name=name
        )

    def get_config(self):
        return {
            "backbone": self._backbone_config,
            "class_centres_shape": list(self.class_centres.centres.shape),
            "confidence_head": keras.saving.serialize_keras_object(self.confidence_head),
            "radius": self.radius,
            "feature_layer": self.feature_layer,
            "feature_shape": list(self.feature_shape) if self.precomputed else None,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        backbone = config.pop("backbone")
        if backbone is not None:
            backbone = keras.saving.deserialize_keras_object(
                backbone, custom_objects=custom_objects
            )
        head = keras.saving.deserialize_keras_object(
            config.pop("confidence_head"), custom_objects=custom_objects
        )
        # Zeros of the saved shape; the weights that follow the config restore them.
        centres = np.zeros(config.pop("class_centres_shape"), dtype=np.float32)
        return cls(backbone, centres, head, **config)
