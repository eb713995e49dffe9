"""The synthetic data-set API: `synthetic_faces`, `SyntheticFaces`, `synthetic_pairs`.

This module owns what a user calls: it draws the parameters (`appearance.py`), renders
them in batches on worker threads (`render_faces`: `renderer.rasterise`, then
`degradation.degrade`), and returns a `SyntheticFaces` that holds the images with their
labels, quality levels, landmarks and parameters, re-renders them at other quality levels
and writes them to the real formats (image folders, RecordIO, verification `.bin`).
`synthetic_pairs` draws verification pairs in the insightface `.bin` order.
"""

import contextlib
import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm.auto import tqdm

from keras_face.data.image_folder import write_image_folder
from keras_face.data.recordio_dataset import write_recordio
from keras_face.data.synthetic.ageing import age_identity
from keras_face.data.synthetic.ageing import sample_ageing_traits
from keras_face.data.synthetic.ageing import sample_ages
from keras_face.data.synthetic.ageing import wrinkle_parameters
from keras_face.data.synthetic.appearance import sample_identity_parameters
from keras_face.data.synthetic.appearance import sample_image_parameters
from keras_face.data.synthetic.appearance import sample_quality
from keras_face.data.synthetic.degradation import degrade
from keras_face.data.synthetic.renderer import rasterise
from keras_face.data.verification_bin import write_bin

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # a listed dependency; rendering still works without it, on one thread
    threadpool_limits = None


def render_faces(
    identity_parameters,
    image_parameters,
    quality,
    image_size=112,
    noise_seeds=None,
    jpeg=True,
    ageing=None,
    return_occlusion_mask=False,
):
    """Render images from per-image identity and nuisance parameters.

    Args:
        identity_parameters: dict of arrays with one row per image (an identity's row
            of `sample_identity_parameters` repeated for each of its images).
        image_parameters: dict of arrays from `sample_image_parameters`, one row per image.
        quality: float array `(B,)` of quality levels in [0, 1].
        image_size: int or `(height, width)`. Defaults to `112`.
        noise_seeds: list of `B` seeds (ints or sequences) for the sensor noise.
            Defaults to `None` (seeds `0 .. B-1`).
        jpeg: bool. JPEG-compress images with `q >= 0.2` at quality `95 - 75 q`.
            Defaults to `True`.
        ageing: dict `{"ages": (B,), "traits": per-image rows of sample_ageing_traits,
            "strength": float}`, or `None` (faces as drawn, no ageing). Defaults to `None`.
        return_occlusion_mask: bool. Also return the occluder's coverage `(B, H, W)` in
            [0, 1] (before degradation). Defaults to `False`.

    Returns:
        `(images, landmarks)`: uint8 `(B, H, W, 3)` and float32 `(B, 5, 2)` (x, y), and
        the float32 occlusion masks with `return_occlusion_mask=True`.

    Example:
        ```python
        faces = keras_face.data.synthetic_faces(1, 1)
        images, landmarks = keras_face.data.synthetic.render_faces(
            faces.image_identity_parameters(), faces.image_parameters, [0.5])
        ```
    """
    height, width = _image_size(image_size)
    quality = np.asarray(quality, dtype=np.float32).reshape(-1)
    batch = quality.size
    if noise_seeds is None:
        noise_seeds = list(range(batch))
    identity = {name: np.asarray(value) for name, value in identity_parameters.items()}
    nuisance = {name: np.asarray(value) for name, value in image_parameters.items()}
    if ageing is not None:
        identity, nuisance = age_identity(
            identity, nuisance, ageing["traits"], ageing["ages"], ageing["strength"]
        )
        wrinkles = wrinkle_parameters(ageing["traits"], ageing["ages"], ageing["strength"])
    else:
        wrinkles = None
    image, landmarks, occlusion = rasterise(
        identity, nuisance, height, width, ageing=wrinkles, occlusion_mask=True
    )
    images = degrade(image, quality, noise_seeds, jpeg)
    if return_occlusion_mask:
        return images, landmarks, occlusion
    return images, landmarks


def _blas_single_thread():
    """A context manager limiting BLAS to one thread (`threadpoolctl`), or None if unavailable."""
    if threadpool_limits is None:
        return None
    return lambda: threadpool_limits(limits=1, user_api="blas")


def _render_in_batches(
    identity_parameters,
    labels,
    image_parameters,
    quality,
    size,
    noise_seeds,
    jpeg,
    batch_size,
    num_workers,
    verbose,
    ageing=None,
    occlusion_masks=None,
):
    """Render every image in batches, on `num_workers` threads (NumPy releases the GIL).

    `ageing`: `{"ages": (N,), "traits": per-identity rows, "strength": float}` or `None`;
    `occlusion_masks`: a float32 `(N, H, W)` array filled with the occluders' coverage.
    """
    height, width = size
    total = int(quality.shape[0])
    images = np.empty((total, height, width, 3), dtype=np.uint8)
    landmarks = np.empty((total, 5, 2), dtype=np.float32)
    batch_size = max(int(batch_size), 1)
    limit_blas = _blas_single_thread()
    if num_workers is None:
        # Threads only where BLAS can be kept single-threaded: its own worker threads,
        # spinning next to ours on small products, would be slower than one thread.
        num_workers = min(os.cpu_count() or 1, 8) if limit_blas is not None else 1
    num_workers = max(int(num_workers), 1)

    def render(start):
        stop = min(start + batch_size, total)
        identity = {name: value[labels[start:stop]] for name, value in identity_parameters.items()}
        nuisance = {name: value[start:stop] for name, value in image_parameters.items()}
        batch_ageing = None
        if ageing is not None:
            batch_ageing = {
                "ages": ageing["ages"][start:stop],
                "traits": {
                    name: value[labels[start:stop]] for name, value in ageing["traits"].items()
                },
                "strength": ageing["strength"],
            }
        rendered = render_faces(
            identity,
            nuisance,
            quality[start:stop],
            (height, width),
            noise_seeds[start:stop],
            jpeg,
            ageing=batch_ageing,
            return_occlusion_mask=True,
        )
        images[start:stop], landmarks[start:stop] = rendered[:2]
        if occlusion_masks is not None:
            occlusion_masks[start:stop] = rendered[2]
        return stop - start

    starts = range(0, total, batch_size)
    blas_context = limit_blas() if limit_blas is not None else contextlib.nullcontext()
    with (
        blas_context,
        tqdm(total=total, desc="rendering faces", unit="img", disable=not verbose) as progress,
    ):
        if num_workers == 1 or len(starts) == 1:
            for start in starts:
                progress.update(render(start))
        else:
            with ThreadPoolExecutor(max_workers=num_workers) as pool:
                for count in pool.map(render, starts):
                    progress.update(count)
    return images, landmarks


def _image_size(image_size):
    if isinstance(image_size, (int, np.integer)):
        height = width = int(image_size)
    else:
        try:
            height, width = (int(value) for value in image_size)
        except (TypeError, ValueError):
            raise ValueError(
                "`image_size` must be an int or (height, width). "
                f"Received: image_size={image_size!r}"
            ) from None
    if height < 16 or width < 16:
        raise ValueError(
            f"`image_size` must be at least 16 pixels. Received: image_size={image_size!r}"
        )
    return height, width


@dataclasses.dataclass
class SyntheticFaces:
    """Images of synthetic identities with their labels, quality levels and parameters.

    Attributes:
        images: uint8 array `(N, H, W, 3)`, RGB, identity-major order.
        labels: int32 array `(N,)`, identity index in `[0, num_identities)`.
        quality: float32 array `(N,)`, degradation level in [0, 1] (0 is pristine).
        identities: int64 array `(N,)`, global identity id (`identity_offset + label`).
        landmarks: float32 array `(N, 5, 2)`, the five landmarks (x, y) in pixels.
        identity_parameters: dict of arrays, one row per identity (see
            `sample_identity_parameters`).
        image_parameters: dict of arrays, one row per image (see
            `sample_image_parameters`).
        seed: int. The seed used.
        jpeg: bool. Whether JPEG compression was applied.
        ages: float32 array `(N,)` of ages in years, or `None` (no ageing).
        age_strength: float. Scale of the ageing effects.
        ageing_traits: dict of `sample_ageing_traits` arrays, one row per identity, or
            `None`.
        occlusion_masks: float32 array `(N, H, W)`: the occluder's coverage of each image
            in [0, 1] (before degradation), or `None` when not kept.

    Example:
        ```python
        faces = keras_face.data.synthetic_faces(num_identities=100, images_per_identity=20)
        faces.to_folder("synthetic_train")
        ```
    """

    images: np.ndarray
    labels: np.ndarray
    quality: np.ndarray
    identities: np.ndarray
    landmarks: np.ndarray
    identity_parameters: dict
    image_parameters: dict
    seed: int = 0
    jpeg: bool = True
    ages: np.ndarray = None
    age_strength: float = 1.0
    ageing_traits: dict = None
    occlusion_masks: np.ndarray = None

    def __len__(self):
        return int(self.images.shape[0])

    @property
    def num_identities(self):
        """Number of distinct identities."""
        return int(self.identity_parameters["face_rx"].shape[0])

    def image_identity_parameters(self):
        """Identity parameters repeated per image (rows aligned with `images`)."""
        return {name: value[self.labels] for name, value in self.identity_parameters.items()}

    def noise_seeds(self):
        """The per-image seeds of the sensor noise."""
        counts = np.zeros(self.num_identities, dtype=np.int64)
        seeds = []
        for label, identity in zip(self.labels.tolist(), self.identities.tolist()):
            seeds.append([int(self.seed), int(identity), 3, int(counts[label])])
            counts[label] += 1
        return seeds

    def _indices(self, indices):
        if indices is None:
            return np.arange(len(self))
        return np.asarray(indices, dtype=np.int64).reshape(-1)

    def _rerender(self, indices, quality=None, ages=None, nuisance=None):
        """The selected images rendered again, with some parameters replaced."""
        quality = self.quality[indices] if quality is None else quality
        nuisance = (
            {name: value[indices] for name, value in self.image_parameters.items()}
            if nuisance is None
            else nuisance
        )
        if ages is None and self.ages is not None:
            ages = self.ages[indices]
        traits = self.ageing_traits
        if ages is not None and traits is None:
            ids = np.zeros(self.num_identities, dtype=np.int64)
            ids[self.labels] = self.identities
            traits = sample_ageing_traits(ids, self.seed)
        seeds = self.noise_seeds()
        masks = np.zeros((len(indices), *self.images.shape[1:3]), dtype=np.float32)
        images, landmarks = _render_in_batches(
            self.identity_parameters,
            self.labels[indices],
            nuisance,
            np.asarray(quality, dtype=np.float32),
            self.images.shape[1:3],
            [seeds[i] for i in indices],
            self.jpeg,
            batch_size=32,
            num_workers=None,
            verbose=False,
            ageing=None
            if ages is None
            else {"ages": ages, "traits": traits, "strength": self.age_strength},
            occlusion_masks=masks,
        )
        return SyntheticFaces(
            images=images,
            labels=self.labels[indices].copy(),
            quality=np.asarray(quality, dtype=np.float32),
            identities=self.identities[indices].copy(),
            landmarks=landmarks,
            identity_parameters=self.identity_parameters,
            image_parameters=nuisance,
            seed=self.seed,
            jpeg=self.jpeg,
            ages=None if ages is None else np.asarray(ages, dtype=np.float32),
            age_strength=self.age_strength,
            ageing_traits=traits,
            occlusion_masks=masks,
        )

    def with_quality(self, quality, indices=None):
        """Re-render images with other quality levels and everything else unchanged.

        Args:
            quality: float or float array, one level per selected image.
            indices: int array of the images to re-render (repeats allowed).
                Defaults to all images.

        Returns:
            A new `SyntheticFaces` holding the selected images.

        Example:
            ```python
            faces = keras_face.data.synthetic_faces(1, 1)
            ladder = faces.with_quality(np.linspace(0, 1, 6), indices=[0] * 6)
            ```
        """
        indices = self._indices(indices)
        quality = np.broadcast_to(np.asarray(quality, dtype=np.float32), indices.shape).copy()
        if np.any(quality < 0.0) or np.any(quality > 1.0):
            raise ValueError(
                "Quality levels must lie in [0, 1]. "
                f"Received: min={quality.min()}, max={quality.max()}"
            )
        return self._rerender(indices, quality=quality)

    def with_age(self, ages, indices=None):
        """Re-render the same faces (identity, pose, light, quality) at other ages.

        Gives the ground-truth "age ladder" of an identity and the paired targets of
        face-age synthesis.

        Args:
            ages: float or float array of years in [0, 120], one per selected image.
            indices: int array of the images to re-render (repeats allowed).
                Defaults to all images.

        Returns:
            A new `SyntheticFaces` holding the selected images, `ages` set.

        Example:
            ```python
            faces = keras_face.data.synthetic_faces(2, 1, image_size=64, ages="uniform")
            ladder = faces.with_age(np.arange(5, 80, 10), indices=[0] * 8)
            ```
        """
        indices = self._indices(indices)
        ages = np.broadcast_to(np.asarray(ages, dtype=np.float32), indices.shape).copy()
        bad = np.flatnonzero(~((ages >= 0) & (ages <= 120)))
        if bad.size:
            raise ValueError(
                f"ages must be years in [0, 120]. Received: ages[{int(bad[0])}]="
                f"{float(ages[bad[0]])}"
            )
        return self._rerender(indices, ages=ages)

    def with_occlusion(self, kind, indices=None, **overrides):
        """Re-render the same faces with a forced occluder, and keep its pixel mask.

        Args:
            kind: int or int array. 0 none, 1 face mask, 2 bar, 3 blob.
            indices: int array of the images to re-render. Defaults to all images.
            **overrides: other occluder parameters, a value or one per image:
                `occlusion_u`, `occlusion_v` (position relative to the face centre),
                `occlusion_angle`, `occlusion_length`, `occlusion_width`, `mask_top`.

        Returns:
            A new `SyntheticFaces` whose `occlusion_masks` hold each occluder's coverage.

        Example:
            ```python
            masked = faces.with_occlusion(1, indices=range(10))
            ```
        """
        indices = self._indices(indices)
        kind = np.broadcast_to(np.asarray(kind, dtype=np.int64), indices.shape).copy()
        if np.any((kind < 0) | (kind > 3)):
            raise ValueError(
                "kind must be 0 (none), 1 (face mask), 2 (bar) or 3 (blob). "
                f"Received: kind={sorted(set(kind.tolist()))}"
            )
        allowed = (
            "occlusion_u",
            "occlusion_v",
            "occlusion_angle",
            "occlusion_length",
            "occlusion_width",
            "mask_top",
        )
        unknown = sorted(set(overrides) - set(allowed))
        if unknown:
            raise ValueError(
                f"Unknown occluder parameters; expected some of {', '.join(allowed)}. "
                f"Received: {', '.join(unknown)}"
            )
        nuisance = {name: value[indices].copy() for name, value in self.image_parameters.items()}
        if "mask_colour" not in nuisance:
            raise ValueError(
                "These faces were rendered without the occluder colours (an older "
                "SyntheticFaces); render them again with synthetic_faces."
            )
        nuisance["occlusion"] = kind
        nuisance["occlusion_colour"] = np.where(
            (kind == 1)[:, None], nuisance["mask_colour"], nuisance["occluder_colour"]
        ).astype(np.float32)
        for name, value in overrides.items():
            nuisance[name] = np.broadcast_to(
                np.asarray(value, dtype=nuisance[name].dtype), indices.shape
            ).copy()
        return self._rerender(indices, nuisance=nuisance)

    def to_folder(self, root, image_format="png", progress=True):
        """Write one sub-folder per identity (`root/00000/...`) with `write_image_folder`.

        Args:
            root: str. Output folder (created).
            image_format: str. `"png"` (lossless) or `"jpeg"`. Defaults to `"png"`.
            progress: bool. Show a progress bar. Defaults to `True`.

        Returns:
            list of the written file paths, in image order.

        Example:
            ```python
            keras_face.data.synthetic_faces(10, 5).to_folder("synthetic_folder")
            ```
        """
        return write_image_folder(
            root, self.images, self.labels, image_format=image_format, progress=progress
        )

    def to_recordio(self, path, **kwargs):
        """Write an insightface RecordIO pack (`.rec`, `.idx`, `property`) with `write_recordio`.

        Args:
            path: str. The `.rec` path (the `.idx` and `property` go beside it).
            **kwargs: passed to `keras_face.data.write_recordio` (`image_format`,
                `quality`, `progress`, ...).

        Returns:
            The dict returned by `write_recordio`.

        Example:
            ```python
            keras_face.data.synthetic_faces(10, 5).to_recordio("synthetic/train.rec")
            ```
        """
        os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
        return write_recordio(
            path, zip(self.images, self.labels.tolist()), total=len(self), **kwargs
        )

    def to_bin(self, path, num_pairs, seed=0, **kwargs):
        """Write a verification `.bin` of pairs drawn from these images (`synthetic_pairs`).

        Args:
            path: str. The `.bin` path.
            num_pairs: int. Number of pairs (half genuine).
            seed: int. Seed of the pair sampling. Defaults to `0`.
            **kwargs: passed to `keras_face.data.write_bin` (`image_format`, `quality`, ...).

        Returns:
            str. `path`.

        Example:
            ```python
            keras_face.data.synthetic_faces(50, 6, identity_offset=10**6).to_bin("val.bin", 600)
            ```
        """
        images, issame = synthetic_pairs(self, num_pairs, seed=seed)
        os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
        return write_bin(path, images, issame, **kwargs)


def synthetic_faces(
    num_identities,
    images_per_identity,
    seed=0,
    image_size=112,
    quality="realistic",
    identity_offset=0,
    nuisance=1.0,
    jpeg=True,
    batch_size=32,
    num_workers=None,
    verbose=False,
    ages=None,
    age_strength=1.0,
    occlusion_probability=None,
):
    """Render a set of synthetic face identities on the ArcFace 112x112 template.

    Args:
        num_identities: int. Number of identities.
        images_per_identity: int. Images of each identity.
        seed: int. Global seed; the same arguments always give the same images.
            Defaults to `0`.
        image_size: int or `(height, width)`. Output size; faces keep the template's
            relative geometry. Defaults to `112`.
        quality: quality levels: `"realistic"` (Beta(1.2, 3)), `"uniform"`, `None`
            (pristine), a float, a `(low, high)` range or an array with one value per
            image (see `sample_quality`). Defaults to `"realistic"`.
        identity_offset: int. Global id of the first identity; use a disjoint range
            (e.g. `10**6`) for held-out identities. Defaults to `0`.
        nuisance: float. Scale of the per-image variation (pose, expression, lighting,
            colour cast, occlusion). Defaults to `1.0`.
        jpeg: bool. JPEG artefacts for `q >= 0.2` (the slowest step). Defaults to `True`.
        batch_size: int. Images rendered at once (32 keeps the working set in cache).
            Defaults to `32`.
        num_workers: int. Rendering threads (the result does not depend on it).
            Defaults to `None`: the number of CPUs (at most 8) when `threadpoolctl`
            is installed to keep BLAS single-threaded meanwhile, else 1.
        verbose: bool. Show a progress bar. Defaults to `False`.
        ages: the age of every image (see `sample_ages`): `None` (no ageing: the faces
            as drawn), `"uniform"`, `("per_identity", spread)`, a number, a range or an
            array. Ageing needs about 64 px for its wrinkles; at 32 px the greying and
            proportions show. Defaults to `None`.
        age_strength: float. Scale of every ageing effect. Defaults to `1.0`.
        occlusion_probability: float in [0, 1] or `None`. Share of images with an
            occluder (0: a clean training set). Defaults to `None`: `0.12 * nuisance`.

    Returns:
        A `keras_face.data.SyntheticFaces` (with `occlusion_masks`).

    Example:
        ```python
        train = keras_face.data.synthetic_faces(200, 30, seed=0)
        test = keras_face.data.synthetic_faces(100, 10, seed=0, identity_offset=10**6)
        pairs, issame = keras_face.data.synthetic_pairs(test, num_pairs=1000, seed=1)
        ```
    """
    num_identities = int(num_identities)
    images_per_identity = int(images_per_identity)
    if num_identities < 1:
        raise ValueError(
            f"`num_identities` must be at least 1. Received: num_identities={num_identities}"
        )
    if images_per_identity < 1:
        raise ValueError(
            "`images_per_identity` must be at least 1. "
            f"Received: images_per_identity={images_per_identity}"
        )
    if nuisance < 0:
        raise ValueError(f"`nuisance` must be non-negative. Received: nuisance={nuisance}")
    height, width = _image_size(image_size)
    identities = np.arange(num_identities, dtype=np.int64) + int(identity_offset)
    identity_parameters = sample_identity_parameters(identities, seed)
    image_parameters = sample_image_parameters(
        identities, images_per_identity, seed, nuisance, occlusion_probability
    )
    quality_levels = sample_quality(identities, images_per_identity, seed, quality)
    labels = np.repeat(np.arange(num_identities, dtype=np.int32), images_per_identity)
    image_identities = identities[labels]
    positions = np.tile(np.arange(images_per_identity), num_identities)
    noise_seeds = [
        [int(seed), int(identity), 3, int(position)]
        for identity, position in zip(image_identities, positions)
    ]
    ageing = None
    image_ages = None
    traits = None
    if ages is not None:
        if not (isinstance(age_strength, (int, float)) and 0 <= age_strength <= 3):
            raise ValueError(f"age_strength must be in [0, 3]. Received: {age_strength!r}")
        image_ages = sample_ages(identities, images_per_identity, seed, ages)
        traits = sample_ageing_traits(identities, seed)
        ageing = {"ages": image_ages, "traits": traits, "strength": float(age_strength)}
    occlusion_masks = np.zeros((labels.size, height, width), dtype=np.float32)
    images, landmarks = _render_in_batches(
        identity_parameters,
        labels,
        image_parameters,
        quality_levels,
        (height, width),
        noise_seeds,
        jpeg,
        batch_size,
        num_workers,
        verbose,
        ageing=ageing,
        occlusion_masks=occlusion_masks,
    )
    return SyntheticFaces(
        images=images,
        labels=labels,
        quality=quality_levels,
        identities=image_identities,
        landmarks=landmarks,
        identity_parameters=identity_parameters,
        image_parameters=image_parameters,
        seed=int(seed),
        jpeg=bool(jpeg),
        ages=image_ages,
        age_strength=float(age_strength),
        ageing_traits=traits,
        occlusion_masks=occlusion_masks,
    )


def _fold_sizes(num_pairs, n_folds):
    sizes = np.full(n_folds, num_pairs // n_folds, dtype=np.int64)
    sizes[: num_pairs % n_folds] += 1
    return sizes


def synthetic_pairs(
    faces,
    num_pairs,
    seed=0,
    n_folds=10,
    images_per_identity=10,
    identity_offset=10**6,
    min_age_gap=None,
    **kwargs,
):
    """Verification pairs in insightface `.bin` order: `(images (2P, H, W, 3), issame (P,))`.

    As in LFW, the pairs come in `n_folds` contiguous blocks, each with its genuine pairs
    first and then its impostor pairs (half and half), so every fold of `verify` holds
    both kinds. A genuine pair is two different images of one identity, an impostor pair
    two images of two identities, drawn uniformly.

    Args:
        faces: a `SyntheticFaces` (e.g. of held-out identities), or an int: the number of
            identities to render first with `synthetic_faces(faces, images_per_identity,
            seed=seed, identity_offset=identity_offset, **kwargs)`.
        num_pairs: int. Number of pairs.
        seed: int. Seed of the sampling. Defaults to `0`.
        n_folds: int. Number of blocks. Defaults to `10`.
        images_per_identity: int. Images per identity when `faces` is an int.
            Defaults to `10`.
        identity_offset: int. First identity id when `faces` is an int (held out from
            training identities `0 ..`). Defaults to `1000000`.
        min_age_gap: float or `None`. Cross-age pairs: genuine pairs are two images of
            one identity at least this many years apart (as CACD-VS or CALFW); needs
            faces rendered with `ages`. Defaults to `None` (any two images).
        **kwargs: other arguments of `synthetic_faces` when `faces` is an int.

    Returns:
        `(images, issame)`: uint8 `(2P, H, W, 3)` in pair order and bool `(P,)`.

    Example:
        ```python
        images, issame = keras_face.data.synthetic_pairs(100, num_pairs=600, seed=1)
        result = keras_face.evaluation.verify(
            keras_face.evaluation.extract_embeddings(backbone, images), issame)
        ```
    """
    if isinstance(faces, (int, np.integer)):
        faces = synthetic_faces(
            int(faces), images_per_identity, seed=seed, identity_offset=identity_offset, **kwargs
        )
    if not isinstance(faces, SyntheticFaces):
        raise ValueError(
            f"`faces` must be a SyntheticFaces or an int. Received: faces={type(faces).__name__}"
        )
    num_pairs = int(num_pairs)
    if num_pairs < 1:
        raise ValueError(f"`num_pairs` must be at least 1. Received: num_pairs={num_pairs}")
    by_label = {}
    for index, label in enumerate(faces.labels.tolist()):
        by_label.setdefault(label, []).append(index)
    labels = np.array(sorted(by_label))
    genuine_pairs = None
    if min_age_gap is not None:
        if faces.ages is None:
            raise ValueError(
                "Cross-age pairs need faces rendered with ages (synthetic_faces(..., ages=...)). "
                f"Received: min_age_gap={min_age_gap!r} for faces without ages"
            )
        genuine_pairs = {}
        for label, members in by_label.items():
            members = np.asarray(members)
            gaps = np.abs(faces.ages[members][:, None] - faces.ages[members][None, :])
            first_index, second_index = np.nonzero(np.triu(gaps >= float(min_age_gap), 1))
            if first_index.size:
                genuine_pairs[label] = np.stack(
                    [members[first_index], members[second_index]], axis=1
                )
        repeated = np.array(sorted(genuine_pairs))
        if repeated.size == 0:
            raise ValueError(
                "No identity has two images that far apart in age. "
                f"Received: min_age_gap={min_age_gap!r}"
            )
    else:
        repeated = np.array([label for label in labels if len(by_label[label]) >= 2])
    if repeated.size == 0:
        raise ValueError(
            "Genuine pairs need an identity with at least 2 images. Received: 1 image per identity"
        )
    if labels.size < 2:
        raise ValueError(
            f"Impostor pairs need at least 2 identities. Received: {labels.size} identity"
        )
    rng = np.random.default_rng([int(seed), 4])
    first = np.empty(num_pairs, dtype=np.int64)
    second = np.empty(num_pairs, dtype=np.int64)
    issame = np.zeros(num_pairs, dtype=bool)
    start = 0
    for size in _fold_sizes(num_pairs, max(min(int(n_folds), num_pairs), 1)):
        genuine = (int(size) + 1) // 2
        issame[start : start + genuine] = True
        start += int(size)
    for pair in range(num_pairs):
        if issame[pair] and genuine_pairs is not None:
            candidates = genuine_pairs[repeated[rng.integers(repeated.size)]]
            first[pair], second[pair] = candidates[rng.integers(len(candidates))]
        elif issame[pair]:
            label = repeated[rng.integers(repeated.size)]
            a, b = rng.choice(len(by_label[label]), 2, replace=False)
            first[pair] = by_label[label][a]
            second[pair] = by_label[label][b]
        else:
            a, b = rng.choice(labels.size, 2, replace=False)
            first[pair] = by_label[labels[a]][rng.integers(len(by_label[labels[a]]))]
            second[pair] = by_label[labels[b]][rng.integers(len(by_label[labels[b]]))]
    order = np.empty(2 * num_pairs, dtype=np.int64)
    order[0::2] = first
    order[1::2] = second
    return faces.images[order], issame
