"""The result of every keras_face reader: the `tf.data` pipeline and what is known about it."""

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class FaceDataset:
    """What a `keras_face.data` reader returns: the dataset and its metadata, side by side.

    The metadata lives here rather than on the `tf.data.Dataset` (where any `.map` would
    drop it). `stats` fills in while the dataset is iterated.

    Args:
        dataset: `tf.data.Dataset` of `(images, labels)` (batches, or single images when
            `batch_size=None`): uint8 images, or float32 with `preprocessing`; int32 labels.
        num_classes: int or `None`. Number of identities (class ids are in
            `[0, num_classes)`); `None` when the format does not say (TFRecord shards read
            without `num_classes=`).
        num_images: int or `None`. Images in one pass of this shard, before any skipping;
            `None` when unknown (remote TFRecord files).
        stats: `keras_face.data.DataStats`. Counts of decoded and skipped (undecodable)
            images, with the skipped keys.
        class_names: list of str or `None`. Name of each class id, where the format has
            names (image folders). Defaults to `None`.
        layout: str or `None`. Layout of the format, where it has several (RecordIO:
            `"insightface"` or `"plain"`). Defaults to `None`.

    Example:
        ```python
        faces = keras_face.data.read_image_folder("faces/", batch_size=64)
        print(faces.num_classes, faces.num_images, faces.class_names[:3])
        model.fit(faces.dataset, epochs=2)
        print(faces.stats.summary())
        ```
    """

    dataset: Any
    num_classes: Any
    num_images: Any
    stats: Any
    class_names: Any = None
    layout: Any = None
