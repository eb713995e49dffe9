"""`VerificationSummary`: the numbers of one verification set, as runs and reports keep them."""

import dataclasses
import math

from keras_face.evaluation.embeddings import extract_embeddings
from keras_face.evaluation.verification import verify

# The columns of `VerificationSummary.table_row`, in order (`{folds}` is the fold count).
TABLE_COLUMNS = (
    "set",
    "pairs",
    "accuracy % ({folds}-fold)",
    "threshold",
    "VAL@FAR=1e-3 %",
    "achieved FAR",
    "AUC",
)


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


@dataclasses.dataclass(frozen=True)
class VerificationSummary:
    """The protocol's numbers for one verification set (`results.json`, `keras-face eval`).

    Built from the dict of `keras_face.evaluation.verify` by `from_result`; `as_dict` is
    the entry of `results.json` (and of `keras-face eval --json`), `table_row` the line of
    the `keras-face eval` table. The full `verify` result (ROC, scores) stays in `result`
    for plots.

    Args:
        name: str. The set's name (e.g. `"lfw"`, `"heldout"`).
        pairs: int. Number of pairs.
        accuracy: float. Mean accuracy over the folds.
        accuracy_std: float. Standard deviation of the fold accuracies.
        threshold: float. Mean best distance threshold over the folds.
        val_at_far_1e3: float. VAL at FAR = 1e-3 (insightface's `val`; NaN when the
            target FAR cannot be met, see `keras_face.evaluation.calculate_val`).
        auc: float or `None`. Area under the ROC (`None` when undefined).
        tar_at_far: dict. `{str(far): tar or None}`.
        n_folds: int. Folds of the protocol.
        val_achieved_far: float. The held-out FAR of the VAL's thresholds (mean over
            the folds), which can be far above 1e-3 on small or degenerate sets.
            Defaults to NaN.
        result: dict. The complete `verify` result. Defaults to `None`.

    Example:
        ```python
        from keras_face.evaluation.verification_summary import evaluate_pairs

        summary = evaluate_pairs(embedding_model, images, issame, name="lfw")
        print(summary.as_dict()["accuracy"])
        ```
    """

    name: str
    pairs: int
    accuracy: float
    accuracy_std: float
    threshold: float
    val_at_far_1e3: float
    auc: object
    tar_at_far: dict
    n_folds: int
    val_achieved_far: float = float("nan")
    result: dict = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_result(cls, name, result, num_pairs, n_folds):
        """The summary of a `keras_face.evaluation.verify` result.

        Args:
            name: str. The set's name.
            result: dict. What `verify` returned.
            num_pairs: int. Number of pairs evaluated.
            n_folds: int. Folds `verify` used.

        Returns:
            A `VerificationSummary`.

        Example:
            ```python
            summary = VerificationSummary.from_result("lfw", verify(embeddings, issame),
                                                      len(issame), n_folds=10)
            ```
        """
        return cls(
            name=str(name),
            pairs=int(num_pairs),
            accuracy=float(result["accuracy"]),
            accuracy_std=float(result["accuracy_std"]),
            threshold=float(result["threshold"]),
            val_at_far_1e3=float(result["val_at_far_1e-3"]),
            auc=_finite_or_none(result.get("auc", float("nan"))),
            tar_at_far={
                str(far): _finite_or_none(tar) for far, tar in result["tar_at_far"].items()
            },
            n_folds=int(n_folds),
            val_achieved_far=float(result.get("far", float("nan"))),
            result=result,
        )

    def as_dict(self):
        """The JSON entry: accuracy, accuracy_std, threshold, val_at_far_1e-3,
        val_achieved_far, auc, tar_at_far, pairs (the keys of `results.json`; `None` for
        a NaN VAL or FAR)."""
        return {
            "accuracy": self.accuracy,
            "accuracy_std": self.accuracy_std,
            "threshold": self.threshold,
            "val_at_far_1e-3": _finite_or_none(self.val_at_far_1e3),
            "val_achieved_far": _finite_or_none(self.val_achieved_far),
            "auc": self.auc,
            "tar_at_far": dict(self.tar_at_far),
            "pairs": self.pairs,
        }

    def table_row(self):
        """The cells of this set's line of the `keras-face eval` table (`TABLE_COLUMNS`)."""
        auc = float("nan") if self.auc is None else self.auc
        return [
            self.name,
            str(self.pairs),
            f"{100 * self.accuracy:.2f} +- {100 * self.accuracy_std:.2f}",
            f"{self.threshold:.3f}",
            f"{100 * self.val_at_far_1e3:.2f}",
            f"{self.val_achieved_far:.1e}",
            f"{auc:.4f}",
        ]


def evaluate_pairs(
    embedding_model,
    images,
    issame,
    name="pairs",
    batch_size=64,
    flip=True,
    n_folds=10,
    verbose=False,
):
    """Embed the images of a verification set and run the k-fold protocol on its pairs.

    Args:
        embedding_model: `keras.Model` from images to embeddings.
        images: array `(2 * pairs, height, width, 3)`, the two images of each pair in turn
            (as `keras_face.data.read_bin` returns them).
        issame: bool array `(pairs,)`.
        name: str. The set's name in the summary. Defaults to `"pairs"`.
        batch_size: int. Batch of the embedding extraction. Defaults to `64`.
        flip: bool. Flip test (embedding of the image plus its mirror). Defaults to `True`.
        n_folds: int. Folds of the protocol. Defaults to `10`.
        verbose: bool. Progress bar of the extraction. Defaults to `False`.

    Returns:
        A `VerificationSummary`.

    Example:
        ```python
        from keras_face.evaluation.verification_summary import evaluate_pairs

        images, issame = keras_face.data.read_bin("lfw.bin")
        print(evaluate_pairs(backbone, images, issame, name="lfw").accuracy)
        ```
    """
    embeddings = extract_embeddings(
        embedding_model, images, batch_size=batch_size, flip=flip, verbose=verbose
    )
    result = verify(embeddings, issame, n_folds=n_folds)
    return VerificationSummary.from_result(name, result, len(issame), n_folds)
