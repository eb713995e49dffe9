"""`training.method: occlusion_adversarial`: the occlusion-adversarial model from a config."""

import numpy as np

from keras_face import data as face_data
from keras_face.errors import ConfigError
from keras_face.occlusion.occlusion_adversarial_model import OcclusionAdversarialModel
from keras_face.occlusion.occlusion_masks import mirror_landmarks
from keras_face.training.datasets import make_training_dataset
from keras_face.training.training_data import TrainingData


def build_occlusion_model(config, backbone, head):
    """An `OcclusionAdversarialModel` from the `occlusion.*` options of a config.

    With `occlusion.landmarks: template` the batches are the classification ones,
    `((images, labels), labels)`, and the landmark boxes sit on the aligned faces'
    template; with `input` each image's landmarks are read too (`adapt_occlusion_data`).

    Args:
        config: dict. A validated configuration.
        backbone: `keras.Model` from images to embeddings.
        head: the margin head.

    Returns:
        An uncompiled `OcclusionAdversarialModel`.

    Example:
        ```python
        config = keras_face.training.load_config(
            None, ["training.method=occlusion_adversarial", "occlusion.space=feature"])
        model = keras_face.occlusion.build_occlusion_model(config, backbone, head)
        ```
    """
    options = config["occlusion"]
    return OcclusionAdversarialModel(
        backbone,
        head,
        adversary=options["adversary"],
        families=tuple(options["families"]),
        space=options["space"],
        clean_weight=options["clean_weight"],
        occluded_weight=options["occluded_weight"],
        seed=config["seed"],
        landmarks=options["landmarks"],
    )


def adapt_occlusion_data(config, training_data, global_batch):
    """With `occlusion.landmarks: input`, batches `((images, labels, landmarks), labels)`.

    The synthetic faces carry their five landmarks; they are mirrored with the image when
    it is flipped. With `template` the data is unchanged.

    Args:
        config: dict. A validated configuration.
        training_data: the `TrainingData` of the config.
        global_batch: int.

    Returns:
        `TrainingData`.

    Raises:
        ConfigError: per-image landmarks from a source that has none (only the synthetic
            set carries them).

    Example:
        ```python
        data = keras_face.occlusion.adapt_occlusion_data(config, data, 64)
        ```
    """
    if config["occlusion"]["landmarks"] == "template":
        return training_data
    data = config["data"]
    if data["source"] != "synthetic":
        raise ConfigError(
            "occlusion.landmarks=input needs the landmarks of every training image; the "
            "synthetic set has them (.rec and folder data are aligned: use template). "
            f"Received: data.source={data['source']!r}"
        )
    seed = config["seed"]
    faces = face_data.synthetic_faces(
        data["identities"],
        data["images_per_identity"],
        seed=seed,
        image_size=data["image_size"],
        quality=data["quality"],
    )
    mirrored = mirror_landmarks(faces.landmarks, faces.images.shape[2]).astype(np.float32)

    def make_dataset(first_epoch):
        return make_training_dataset(
            faces.images,
            faces.labels,
            global_batch,
            config["training"]["epochs"],
            seed=seed,
            first_epoch=first_epoch,
            random_flip=data["random_flip"],
            extras=(faces.landmarks,),
            flipped_extras=(mirrored,),
        )

    return TrainingData(
        num_classes=training_data.num_classes,
        num_images=len(faces),
        make_dataset=make_dataset,
        verification=training_data.verification,
        description=training_data.description,
    )
