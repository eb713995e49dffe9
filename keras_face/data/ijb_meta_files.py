"""Writing the IJB-B / IJB-C meta files that `keras_face.evaluation.read_ijb_meta` reads.

insightface's IJB release holds, in `<root>/meta/`, three text files per target:
`<target>_face_tid_mid.txt` (`image_name template_id media_id`),
`<target>_template_pair_label.txt` (`template_id_1 template_id_2 label`) and
`<target>_name_5pts_score.txt` (`image_name x1 y1 ... x5 y5 detector_score`, same image
order). `write_ijb_meta` writes them from arrays; `build_ijb_meta` from two CSV tables, e.g.
made from the protocol files of the NIST release.
"""

import csv
import os

import numpy as np

from keras_face.data.alignment import arcface_template

IJB_TARGETS = ("IJBB", "IJBC")
_LANDMARK_COLUMNS = tuple(f"{axis}{point}" for point in range(1, 6) for axis in ("x", "y"))


def _check_target(target):
    name = str(target).upper().replace("-", "")
    if name not in IJB_TARGETS:
        raise ValueError(f"`target` must be one of {IJB_TARGETS}. Received: target={target!r}")
    return name


def write_ijb_meta(
    root,
    target,
    image_names,
    templates,
    medias,
    pair_templates,
    pair_labels,
    landmarks=None,
    detector_scores=None,
):
    """Writes the three IJB meta files of `target` into `<root>/meta/`.

    Args:
        root: str or path-like. The dataset folder (`loose_crop/` goes beside `meta/`).
        target: str. `"IJBB"` or `"IJBC"`.
        image_names: sequence of str `(N,)`. File names inside `loose_crop/` (no spaces).
        templates: int array-like `(N,)`. Template id of each image.
        medias: int array-like `(N,)`. Media (photo or video) id of each image.
        pair_templates: int array-like `(P, 2)`. The two templates of each pair.
        pair_labels: array-like `(P,)` of 0/1. 1 for a genuine pair.
        landmarks: float array-like `(N, 5, 2)` or `None`. Five `(x, y)` landmarks per
            image; `None` writes the 112x112 ArcFace template (images already aligned).
            Defaults to `None`.
        detector_scores: float array-like `(N,)` or `None`. Face detector scores; `None`
            writes 1.0. Defaults to `None`.

    Returns:
        dict of the three written paths, keyed `"face_tid_mid"`, `"template_pair_label"`
        and `"name_5pts_score"`.

    Example:
        ```python
        keras_face.data.write_ijb_meta("IJBC", "IJBC", names, templates, medias,
                                       pairs, labels, landmarks, scores)
        meta = keras_face.evaluation.read_ijb_meta("IJBC", "IJBC")
        ```
    """
    target = _check_target(target)
    names = [str(name) for name in image_names]
    bad = [name for name in names if not name or any(c.isspace() for c in name)]
    if bad:
        raise ValueError(f"Image names must be non-empty, without spaces. Received: {bad[0]!r}")
    count = len(names)
    templates = _integers(templates, "templates", (count,))
    medias = _integers(medias, "medias", (count,))
    pair_templates = _integers(pair_templates, "pair_templates", (None, 2))
    pair_labels = _integers(pair_labels, "pair_labels", (len(pair_templates),))
    if np.any((pair_labels != 0) & (pair_labels != 1)):
        raise ValueError(f"`pair_labels` must be 0 or 1. Received: {sorted(set(pair_labels))[:5]}")
    unknown = np.setdiff1d(pair_templates.ravel(), templates)
    if len(unknown):
        raise ValueError(
            f"{len(unknown)} templates of the pairs have no image, e.g. template={unknown[0]}"
        )
    if landmarks is None:
        landmarks = np.broadcast_to(arcface_template(112), (count, 5, 2))
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (count, 5, 2) or not np.all(np.isfinite(landmarks)):
        raise ValueError(
            f"`landmarks` must be finite, of shape ({count}, 5, 2). "
            f"Received: shape={landmarks.shape}"
        )
    scores = np.ones(count) if detector_scores is None else np.asarray(detector_scores, float)
    if scores.shape != (count,):
        raise ValueError(
            f"`detector_scores` must have shape ({count},). Received: shape={scores.shape}"
        )
    folder = os.path.join(os.fspath(root), "meta")
    os.makedirs(folder, exist_ok=True)
    prefix = os.path.join(folder, target.lower())
    paths = {
        key: f"{prefix}_{key}.txt"
        for key in ("face_tid_mid", "template_pair_label", "name_5pts_score")
    }
    with open(paths["face_tid_mid"], "w") as file:
        for name, template, media in zip(names, templates.tolist(), medias.tolist()):
            file.write(f"{name} {template} {media}\n")
    with open(paths["template_pair_label"], "w") as file:
        for (first, second), label in zip(pair_templates.tolist(), pair_labels.tolist()):
            file.write(f"{first} {second} {label}\n")
    with open(paths["name_5pts_score"], "w") as file:
        for name, points, score in zip(names, landmarks.reshape(count, 10), scores.tolist()):
            values = " ".join(repr(float(value)) for value in points)
            file.write(f"{name} {values} {score!r}\n")
    return paths


def _integers(values, name, shape):
    array = np.asarray(values)
    if array.size == 0:
        array = np.zeros([0 if dim is None else dim for dim in shape], dtype=np.int64)
    if (
        array.dtype.kind not in "iu"
        or array.ndim != len(shape)
        or any(
            expected is not None and actual != expected
            for actual, expected in zip(array.shape, shape)
        )
    ):
        raise ValueError(
            f"`{name}` must be integers of shape {tuple(shape)}. "
            f"Received: dtype={array.dtype}, shape={array.shape}"
        )
    return array.astype(np.int64)


def _read_table(path, required, what):
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    columns = set(rows[0]) if rows else set()
    missing = [column for column in required if column not in columns]
    if missing:
        raise ValueError(
            f"{path}: the {what} table needs the columns {list(required)}. "
            f"Received: columns={sorted(columns)}"
        )
    return rows


def build_ijb_meta(root, target, faces_csv, pairs_csv):
    """Builds the IJB meta files from two CSV tables (headers on the first line).

    `faces_csv` has one row per image with the columns `image`, `template`, `media`,
    optionally `subject` (needed when the pairs have no label), `x1, y1, ..., x5, y5`
    (five landmarks) and `score` (detector score). `pairs_csv` has the columns
    `template1`, `template2` and optionally `label` (1 genuine, 0 impostor); without
    `label` a pair is genuine when its two templates show one `subject` (how NIST's
    `*_11_*_matches.csv` protocols are labelled).

    Args:
        root: str or path-like. The dataset folder; files go to `<root>/meta/`.
        target: str. `"IJBB"` or `"IJBC"`.
        faces_csv: str or path-like. The image table.
        pairs_csv: str or path-like. The template-pair table.

    Returns:
        dict of the three written paths (see `keras_face.data.write_ijb_meta`).

    Example:
        ```python
        keras_face.data.build_ijb_meta("IJBC", "IJBC", "faces.csv", "pairs.csv")
        ```
    """
    faces = _read_table(faces_csv, ("image", "template", "media"), "faces")
    pairs = _read_table(pairs_csv, ("template1", "template2"), "pairs")
    templates = np.array([int(row["template"]) for row in faces], dtype=np.int64)
    landmarks = None
    if faces and all(column in faces[0] for column in _LANDMARK_COLUMNS):
        landmarks = np.array(
            [[float(row[column]) for column in _LANDMARK_COLUMNS] for row in faces]
        ).reshape(-1, 5, 2)
    scores = None
    if faces and "score" in faces[0]:
        scores = np.array([float(row["score"]) for row in faces])
    pair_templates = np.array(
        [[int(row["template1"]), int(row["template2"])] for row in pairs], dtype=np.int64
    ).reshape(-1, 2)
    if pairs and "label" in pairs[0]:
        labels = np.array([int(row["label"]) for row in pairs], dtype=np.int64)
    else:
        if not faces or "subject" not in faces[0]:
            raise ValueError(
                f"{os.fspath(pairs_csv)} has no `label` column, so {os.fspath(faces_csv)} needs "
                "a `subject` column to label the pairs. Received: columns="
                f"{sorted(faces[0]) if faces else []}"
            )
        subject_of = {}
        for template, row in zip(templates.tolist(), faces):
            subject = row["subject"]
            if subject_of.setdefault(template, subject) != subject:
                raise ValueError(
                    f"{os.fspath(faces_csv)}: template {template} has images of two subjects. "
                    f"Received: subjects={subject_of[template]!r}, {subject!r}"
                )
        labels = np.array(
            [
                int(subject_of.get(first) == subject_of.get(second))
                for first, second in pair_templates.tolist()
            ],
            dtype=np.int64,
        )
    return write_ijb_meta(
        root,
        target,
        [row["image"] for row in faces],
        templates,
        [int(row["media"]) for row in faces],
        pair_templates,
        labels,
        landmarks=landmarks,
        detector_scores=scores,
    )
