"""IJB-B / IJB-C 1:1 template verification, as insightface's `eval_ijbc.py`.

The protocol, on the standard insightface release of IJB-B/C (`<root>/meta/*.txt` and
`<root>/loose_crop/*.jpg`):

1. every loose crop is aligned to the 112x112 ArcFace template with its five landmarks;
   its feature is `f(x) + f(flip(x))` (insightface's "F2"), not normalised, so that the
   feature norm weights the image (test mode "N1");
2. optionally the feature is multiplied by the face detector score (test mode "D1");
3. a template's feature is the sum over its media of the media features, a media's
   feature being its single image's feature or the mean over its images (video
   frames), then L2-normalised;
4. a pair's score is the cosine of its two template features;
5. TAR at FAR 1e-6 ... 1e-1 is read from the ROC as in `keras_face.evaluation.tar_at_far`.
"""

import dataclasses
import os

import numpy as np

from keras_face.evaluation.embeddings import l2_normalize
from keras_face.evaluation.roc import DEFAULT_FARS
from keras_face.evaluation.roc import area_under_curve
from keras_face.evaluation.roc import roc_curve
from keras_face.evaluation.roc import tar_at_far

_TARGETS = ("IJBB", "IJBC")


@dataclasses.dataclass
class IJBMeta:
    """The meta data of IJB-B or IJB-C, one row per image and one per template pair.

    Attributes:
        image_names: str array `(N,)`, file names inside `loose_crop/`.
        templates: int64 array `(N,)`, template id of each image.
        medias: int64 array `(N,)`, media (photo or video) id of each image.
        landmarks: float32 array `(N, 5, 2)`, five landmarks in the loose crop.
        detector_scores: float32 array `(N,)`, face detector score of each image.
        pair_templates1: int64 array `(P,)`, first template of each pair.
        pair_templates2: int64 array `(P,)`, second template of each pair.
        pair_labels: int64 array `(P,)`, 1 for a genuine pair, 0 for an impostor pair.
        image_dir: str or None. Folder holding the loose crops.

    Example:
        ```python
        meta = keras_face.evaluation.read_ijb_meta("/data/IJB_release/IJBC", "IJBC")
        ```
    """

    image_names: np.ndarray
    templates: np.ndarray
    medias: np.ndarray
    landmarks: np.ndarray
    detector_scores: np.ndarray
    pair_templates1: np.ndarray
    pair_templates2: np.ndarray
    pair_labels: np.ndarray
    image_dir: str = None


def _read_tokens(path):
    with open(path, "r", encoding="utf-8") as file:
        return [line.split() for line in file if line.strip()]


def _meta_path(root, target, suffix):
    name = f"{target.lower()}_{suffix}"
    for folder in (os.path.join(root, "meta"), root):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(
        f"Missing IJB meta file {name!r} under {os.path.join(root, 'meta')!r} or {root!r}. "
        f"Received: root={root!r}"
    )


def read_ijb_meta(root, target="IJBC"):
    """Read the standard IJB-B/C meta files of insightface's release.

    Files read (in `<root>/meta/`, or in `<root>` itself):
    - `<target>_face_tid_mid.txt`: `image_name template_id media_id` per line;
    - `<target>_template_pair_label.txt`: `template_id_1 template_id_2 label` per line;
    - `<target>_name_5pts_score.txt`: `image_name x1 y1 ... x5 y5 detector_score`, in
      the same image order as `face_tid_mid`.

    Args:
        root: str. The dataset folder (holding `meta/` and `loose_crop/`).
        target: str. `"IJBB"` or `"IJBC"`. Defaults to `"IJBC"`.

    Returns:
        A `keras_face.evaluation.IJBMeta`.

    Example:
        ```python
        meta = keras_face.evaluation.read_ijb_meta("/data/IJB_release/IJBB", "IJBB")
        ```
    """
    target = str(target).upper().replace("-", "")
    if target not in _TARGETS:
        raise ValueError(f"`target` must be one of {_TARGETS}. Received: target={target!r}")
    root = os.fspath(root)
    rows = _read_tokens(_meta_path(root, target, "face_tid_mid.txt"))
    if any(len(row) < 3 for row in rows):
        raise ValueError("Every line of face_tid_mid.txt needs `image_name template_id media_id`.")
    image_names = np.array([row[0] for row in rows])
    templates = np.array([int(row[1]) for row in rows], dtype=np.int64)
    medias = np.array([int(row[2]) for row in rows], dtype=np.int64)

    # 15.7 M lines for IJB-C: parse the integers in C.
    pairs = np.fromfile(
        _meta_path(root, target, "template_pair_label.txt"), dtype=np.int64, sep=" "
    )
    if pairs.size % 3:
        raise ValueError(
            "template_pair_label.txt must hold `t1 t2 label` lines. "
            f"Received: {pairs.size} integers"
        )
    pairs = pairs.reshape(-1, 3)

    landmark_rows = _read_tokens(_meta_path(root, target, "name_5pts_score.txt"))
    if len(landmark_rows) != len(rows):
        raise ValueError(
            "name_5pts_score.txt and face_tid_mid.txt must list the same images. "
            f"Received: {len(landmark_rows)} and {len(rows)} lines"
        )
    if any(len(row) != 12 for row in landmark_rows):
        raise ValueError(
            "Every line of name_5pts_score.txt needs a name, 10 coordinates and a score."
        )
    names = np.array([row[0] for row in landmark_rows])
    if not np.array_equal(names, image_names):
        mismatch = int(np.argmax(names != image_names))
        raise ValueError(
            "name_5pts_score.txt and face_tid_mid.txt list images in different orders. "
            f"Received: line {mismatch + 1}: {names[mismatch]!r} vs {image_names[mismatch]!r}"
        )
    values = np.array(
        [[float(value) for value in row[1:]] for row in landmark_rows], dtype=np.float32
    )
    image_dir = os.path.join(root, "loose_crop")
    return IJBMeta(
        image_names=image_names,
        templates=templates,
        medias=medias,
        landmarks=values[:, :10].reshape(-1, 5, 2),
        detector_scores=values[:, 10],
        pair_templates1=pairs[:, 0],
        pair_templates2=pairs[:, 1],
        pair_labels=pairs[:, 2],
        image_dir=image_dir if os.path.isdir(image_dir) else None,
    )


def image_to_template_features(features, templates, medias):
    """Template features from image features (insightface's `image2template_feature`).

    Within a template, the images of one media are averaged (a single image is taken as
    it is), the media features are summed, and the sum is L2-normalised. Arithmetic
    follows insightface: means and sums in the dtype of `features`, the result in float64.

    Args:
        features: float array `(N, D)`, one (possibly weighted) feature per image.
        templates: int array `(N,)`, template id per image.
        medias: int array `(N,)`, media id per image.

    Returns:
        `(template_features, unique_templates)`: float64 `(T, D)` unit rows and the
        sorted template ids.

    Example:
        ```python
        feats, ids = keras_face.evaluation.image_to_template_features(
            f, meta.templates, meta.medias
        )
        ```
    """
    features = np.asarray(features)
    templates = np.asarray(templates).astype(np.int64)
    medias = np.asarray(medias).astype(np.int64)
    if (
        features.ndim != 2
        or templates.shape != (features.shape[0],)
        or medias.shape != templates.shape
    ):
        raise ValueError(
            "`features` must be (N, D) with one template and media id per row. "
            f"Received: features.shape={features.shape}, templates.shape={templates.shape}, "
            f"medias.shape={medias.shape}"
        )
    # Rows grouped by (template, media) in sorted order, the original order kept inside a
    # media. NumPy's reductions along axis 0 do not add rows strictly left to right, so
    # multi-row groups are reduced with the same calls insightface makes (np.mean,
    # np.sum); single-row groups (most of them) are copied.
    order = np.lexsort((np.arange(templates.size), medias, templates))
    sorted_templates = templates[order]
    sorted_medias = medias[order]
    new_media = np.ones(order.size, dtype=bool)
    new_media[1:] = (sorted_templates[1:] != sorted_templates[:-1]) | (
        sorted_medias[1:] != sorted_medias[:-1]
    )
    media_starts = np.nonzero(new_media)[0]
    media_stops = np.append(media_starts[1:], order.size)
    media_features = features[order[media_starts]]
    for group in np.nonzero(media_stops - media_starts > 1)[0]:
        rows = order[media_starts[group] : media_stops[group]]
        media_features[group] = np.mean(features[rows], axis=0)
    media_templates = sorted_templates[media_starts]
    new_template = np.ones(media_templates.size, dtype=bool)
    new_template[1:] = media_templates[1:] != media_templates[:-1]
    template_starts = np.nonzero(new_template)[0]
    template_stops = np.append(template_starts[1:], media_templates.size)
    template_features = media_features[template_starts].astype(np.float64)
    for group in np.nonzero(template_stops - template_starts > 1)[0]:
        template_features[group] = np.sum(
            media_features[template_starts[group] : template_stops[group]], axis=0
        )
    return l2_normalize(template_features), media_templates[template_starts]


def template_pair_scores(
    template_features, unique_templates, templates1, templates2, batch_size=100_000
):
    """Cosine score of every template pair (insightface's `verification`).

    Args:
        template_features: float array `(T, D)` of unit rows.
        unique_templates: int array `(T,)`, the template id of each row.
        templates1: int array `(P,)`, first template id of each pair.
        templates2: int array `(P,)`, second template id of each pair.
        batch_size: int. Pairs scored at once (bounds the memory). Defaults to `100000`.

    Returns:
        float64 array `(P,)`.

    Example:
        ```python
        scores = keras_face.evaluation.template_pair_scores(
            feats, ids, meta.pair_templates1, meta.pair_templates2
        )
        ```
    """
    unique_templates = np.asarray(unique_templates).astype(np.int64)
    templates1 = np.asarray(templates1).astype(np.int64)
    templates2 = np.asarray(templates2).astype(np.int64)
    rows1 = np.searchsorted(unique_templates, templates1)
    rows2 = np.searchsorted(unique_templates, templates2)
    for rows, ids, name in ((rows1, templates1, "templates1"), (rows2, templates2, "templates2")):
        valid = rows < unique_templates.size
        valid[valid] = unique_templates[rows[valid]] == ids[valid]
        if not np.all(valid):
            raise ValueError(
                f"`{name}` holds template ids without features. "
                f"Received: {name} id {int(ids[np.argmin(valid)])}"
            )
    scores = np.zeros(templates1.shape[0])
    for start in range(0, templates1.shape[0], int(batch_size)):
        stop = start + int(batch_size)
        feature1 = template_features[rows1[start:stop]]
        feature2 = template_features[rows2[start:stop]]
        scores[start:stop] = np.sum(feature1 * feature2, -1)
    return scores


def ijb_image_features(model, meta, image_dir=None, batch_size=128, flip=True, verbose=True):
    """Features of every IJB image: aligned loose crop through the model, plus its flip.

    Each loose crop is aligned to 112x112 with `keras_face.data.align_face` and its five
    landmarks; the feature is `f(x) + f(flip(x))` in float32, not normalised (the norm is
    used as a quality weight by `evaluate_ijb`). Images are streamed, never all in memory.

    Args:
        model: callable mapping a `(B, 112, 112, 3)` float32 RGB batch to `(B, D)`.
        meta: `keras_face.evaluation.IJBMeta` from `read_ijb_meta`.
        image_dir: str. Folder of the loose crops. Defaults to `meta.image_dir`.
        batch_size: int. Images per model call. Defaults to `128`.
        flip: bool. Add the feature of the mirrored image. Defaults to `True`.
        verbose: bool. Show a progress bar. Defaults to `True`.

    Returns:
        float32 array `(N, D)` in the order of `meta.image_names`.

    Example:
        ```python
        features = keras_face.evaluation.ijb_image_features(backbone, meta)
        result = keras_face.evaluation.evaluate_ijb(features, meta)
        ```
    """
    from PIL import Image
    from tqdm.auto import tqdm

    from keras_face.data import align_face
    from keras_face.evaluation.embeddings import extract_embeddings

    image_dir = image_dir or meta.image_dir
    if image_dir is None:
        raise ValueError(f"No loose-crop folder given or found. Received: image_dir={image_dir!r}")
    num_images = len(meta.image_names)
    features = None
    with tqdm(total=num_images, desc="IJB features", unit="img", disable=not verbose) as progress:
        for start in range(0, num_images, int(batch_size)):
            stop = min(start + int(batch_size), num_images)
            batch = []
            for index in range(start, stop):
                with Image.open(os.path.join(image_dir, meta.image_names[index])) as image:
                    rgb = np.asarray(image.convert("RGB"))
                batch.append(np.asarray(align_face(rgb, meta.landmarks[index]), dtype=np.float32))
            batch = np.stack(batch)
            batch_features = extract_embeddings(
                model, batch, batch_size=batch.shape[0], flip=flip, normalize=False, verbose=False
            )
            if features is None:
                features = np.empty((num_images, batch_features.shape[1]), dtype=np.float32)
            features[start:stop] = batch_features
            progress.update(stop - start)
    return features


def evaluate_ijb(features, meta, use_norm_score=True, use_detector_score=True, fars=DEFAULT_FARS):
    """IJB-B/C 1:1 verification from per-image features.

    Args:
        features: float array `(N, D)`, one feature per image of `meta` (e.g. from
            `ijb_image_features`: flip-summed, not normalised).
        meta: `keras_face.evaluation.IJBMeta`.
        use_norm_score: bool. Keep the feature norms as weights; `False` normalises
            every image feature first. Defaults to `True`.
        use_detector_score: bool. Multiply every image feature by its detector score.
            Defaults to `True`.
        fars: sequence of float. FARs of the TAR table.
            Defaults to `(1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)`.

    Returns:
        dict with `tar_at_far` (`{far: tar}`), `roc` (`{"fpr", "tpr", "thresholds"}`),
        `auc`, `scores` (per pair) and `labels`.

    Example:
        ```python
        meta = keras_face.evaluation.read_ijb_meta("/data/IJB_release/IJBC", "IJBC")
        features = keras_face.evaluation.ijb_image_features(backbone, meta)
        print(keras_face.evaluation.evaluate_ijb(features, meta)["tar_at_far"][1e-4])
        ```

    References:
        - [Maze et al., 2018, IJB-C](https://doi.org/10.1109/ICB2018.2018.00033)
        - [insightface eval_ijbc.py](https://github.com/deepinsight/insightface/blob/master/recognition/arcface_torch/eval_ijbc.py)
    """
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] != len(meta.templates):
        raise ValueError(
            "`features` must hold one row per image of `meta`. "
            f"Received: features.shape={features.shape}, num_images={len(meta.templates)}"
        )
    if not use_norm_score:
        features = features / np.sqrt(np.sum(features**2, -1, keepdims=True))
    if use_detector_score:
        features = features * np.asarray(meta.detector_scores)[:, np.newaxis]
    template_features, unique_templates = image_to_template_features(
        features, meta.templates, meta.medias
    )
    scores = template_pair_scores(
        template_features, unique_templates, meta.pair_templates1, meta.pair_templates2
    )
    labels = np.asarray(meta.pair_labels)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    return {
        "tar_at_far": tar_at_far(labels, scores, fars),
        "roc": {"fpr": fpr, "tpr": tpr, "thresholds": thresholds},
        "auc": area_under_curve(fpr, tpr),
        "scores": scores,
        "labels": labels,
    }
