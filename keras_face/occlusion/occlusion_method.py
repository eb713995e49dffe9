"""`training.method: occlusion_adversarial`: the occlusion-adversarial model from a config."""

from keras_face.occlusion.occlusion_adversarial_model import OcclusionAdversarialModel


def build_occlusion_model(config, backbone, head):
    """An `OcclusionAdversarialModel` from the `occlusion.*` options of a config.

    The batches are the classification ones, `((images, labels), labels)`: the masks are
    built from the aligned faces' template landmarks, so no extra input is read.

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
    )
