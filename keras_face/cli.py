"""The `keras-face` command: a thin layer over the library.

```
keras-face train  [--config FILE] [--output DIR [--restart]] [--set KEY=VALUE ...]  # main job
keras-face eval   --model M.keras --bin A.bin [B.bin ...] [--ijb ROOT --ijb-target IJBC] [--edc]
keras-face pack   --images DIR --output OUT.rec            # folder per identity -> RecordIO
keras-face pack   --images DIR --pairs PAIRS.txt --output OUT.bin   # pairs -> verification .bin
keras-face export --model M.keras --format savedmodel|tflite|onnx [--output PATH] [--check]
keras-face convert --weights BACKBONE.pth --output M.keras  # arcface_torch r18..r200, mbf
```

Expected problems end with one `keras-face <command>: error: ...` line and exit status 1:
the project's own errors (`keras_face.errors.KerasFaceError`: a config typo, a class count
that does not match the data, a batch that does not split over the replicas, a corrupt
data or pairs file, a diverged run) and missing files. Bad command-line usage exits with
status 2 (argparse). Any other exception is a programming error and keeps its traceback;
set `KERAS_FACE_TRACEBACK=1` to see the traceback of the expected ones too. Ctrl-C prints
one line (for `train`: the command that resumes the run) and exits with status 130.
TensorFlow's start-up logging (oneDNN, CUDA probing on a machine without a GPU) is hidden;
`TF_CPP_MIN_LOG_LEVEL` set by the caller is respected.

`keras_face.data`, `keras_face.evaluation` and `keras_face.training` (TensorFlow) are
reached through the package's lazy attributes, so `keras-face --help` does not load them.
"""

import argparse
import json
import os
import re
import shlex
import sys
import tempfile

import numpy as np

import keras_face
from keras_face.errors import KerasFaceError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class CommandError(KerasFaceError):
    """A wrong command-line value (a missing file, a wrong suffix), printed as one line."""


def _add_train(subparsers):
    parser = subparsers.add_parser(
        "train",
        help="train, evaluate and save a model (no arguments: the synthetic main job)",
        description=(
            "Train a face-recognition model from a config (default: the built-in main job: "
            "synthetic identities, a small backbone with ArcFace, 10-fold verification on "
            "held-out identities). Rerun with the same --output to resume after a crash."
        ),
    )
    parser.add_argument("--config", help="YAML config (see configs/); merged onto the default")
    parser.add_argument("--output", help="run folder (default: runs/<name>-<time>)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.epochs=3 --set head=softmax",
    )
    parser.add_argument(
        "assignments", nargs="*", metavar="KEY=VALUE", help="more overrides (same as --set)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--restart",
        action="store_true",
        help="start the --output folder over: discard the backup, logs and checkpoints of "
        "an earlier run there (a resume needs the settings it was started with)",
    )


def _add_eval(subparsers):
    parser = subparsers.add_parser(
        "eval",
        help="verification protocol table of an embedding model",
        description="Evaluate an embedding model on verification .bin files (10-fold "
        "accuracy, VAL@FAR=1e-3, TAR@FAR) and/or IJB-B/C 1:1.",
    )
    parser.add_argument("--model", required=True, help="embedding model (.keras)")
    parser.add_argument(
        "--bin", nargs="+", default=[], metavar="FILE", help="verification .bin files"
    )
    parser.add_argument(
        "--ijb", metavar="ROOT", help="IJB-B/C release folder (meta/ and loose_crop/)"
    )
    parser.add_argument(
        "--ijb-target",
        default="IJBC",
        choices=["IJBB", "IJBC"],
        help="which IJB release --ijb holds (default: IJBC)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="images per forward pass of the extraction, twice that with the flip test "
        "(default: 64; lower it if memory runs short)",
    )
    parser.add_argument(
        "--folds", type=int, default=10, help="folds of the verification protocol (default: 10)"
    )
    parser.add_argument("--no-flip", action="store_true", help="no flip test")
    parser.add_argument(
        "--edc",
        action="store_true",
        help="also the error-versus-discard characteristic (EDC) of each --bin file: the "
        "FNMR at a threshold fixed at --edc-fmr as the pairs of lowest quality min(q_a, q_b) "
        "are discarded, with the embedding norm as quality score, kappa for a model with "
        "the outputs (embedding, kappa), and a random score as the floor; prints the partial "
        "areas (lower is better) and writes the curves to --json",
    )
    parser.add_argument(
        "--edc-fmr",
        type=float,
        default=1e-3,
        help="FMR of the EDC's fixed threshold (default: 1e-3)",
    )
    parser.add_argument(
        "--edc-limit",
        type=float,
        default=0.2,
        help="discard fraction up to which the EDC's partial area is taken (default: 0.2)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def _add_pack(subparsers):
    parser = subparsers.add_parser(
        "pack",
        help="pack an image folder into a .rec (or pairs into a .bin)",
        description="Pack a folder-per-identity tree into an insightface RecordIO pack "
        "(.rec, .idx, property), or, with --pairs, a list of image pairs into a "
        "verification .bin.",
    )
    parser.add_argument(
        "--images", required=True, help="image folder (one sub-folder per identity)"
    )
    parser.add_argument("--output", required=True, help="output .rec or .bin")
    parser.add_argument(
        "--pairs",
        metavar="FILE",
        help="pairs list: 'path_a path_b 1|0' per line (paths under --images), or LFW pairs.txt",
    )
    parser.add_argument("--image-size", type=int, help="resize images to this size")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of re-encoded images")


def _add_export(subparsers):
    parser = subparsers.add_parser(
        "export",
        help="export an embedding model (SavedModel, TFLite, ONNX)",
        description="Export an embedding model for deployment; --check compares the "
        "exported model with the Keras model on random images.",
    )
    parser.add_argument("--model", required=True, help="embedding model (.keras)")
    parser.add_argument("--format", required=True, choices=["savedmodel", "tflite", "onnx"])
    parser.add_argument("--output", help="output path (default: next to the model)")
    parser.add_argument("--input-dtype", default="float32", choices=["float32", "uint8"])
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset")
    parser.add_argument("--check", action="store_true", help="check parity with the Keras model")


def _add_convert(subparsers):
    parser = subparsers.add_parser(
        "convert",
        help="convert arcface_torch .pth backbone weights into a .keras model",
        description="Convert an insightface arcface_torch backbone (r18, r34, r50, r100, "
        "r200 or mbf; a .pth state_dict, read without running code from it) into the "
        "matching keras_face model, saved as .keras. Data formats are converted with "
        "datasets/convert.py.",
    )
    parser.add_argument("--weights", required=True, help="arcface_torch .pth / .pt state_dict")
    parser.add_argument("--output", required=True, help="output .keras file")
    parser.add_argument(
        "--architecture",
        choices=["r18", "r34", "r50", "r100", "r200", "mbf"],
        help="backbone (default: read from the parameter names)",
    )
    parser.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("HEIGHT", "WIDTH"),
        help="input size (default: read from the weights, 112 112 for the published models)",
    )
    parser.add_argument(
        "--preprocessing",
        default="insightface",
        choices=["insightface", "arcface", "none"],
        help="input normalisation inside the model: insightface (x-127.5)/127.5, as "
        "arcface_torch trains (default), arcface (x-127.5)/128, or none",
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-face",
        description="Deep face recognition with Keras 3: train, evaluate, pack, export.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(subparsers)
    _add_eval(subparsers)
    _add_pack(subparsers)
    _add_export(subparsers)
    _add_convert(subparsers)
    return parser


def _require_file(path, what):
    if not os.path.exists(path):
        raise CommandError(f"{what} not found: {path}")


def run_train(args):
    """`keras-face train`: `keras_face.training.train` with the command's overrides."""
    for assignment in args.assignments:
        if "=" not in assignment:
            raise CommandError(
                f"unexpected argument {assignment!r}: overrides look like key=value "
                "(e.g. training.epochs=3)"
            )
    if args.config:
        _require_file(args.config, "config file")
    overrides = list(args.overrides) + list(args.assignments)
    config = keras_face.training.load_config(args.config, overrides)
    if config["training"]["method"] == "distillation" and config["distillation"]["generations"] > 1:
        # Recursive distillation: one run folder per generation.
        keras_face.distillation.train_generations(
            args.config, output_dir=args.output, overrides=overrides, progress=not args.quiet
        )
        return
    keras_face.training.train(
        args.config,
        output_dir=args.output,
        overrides=overrides,
        progress=not args.quiet,
        restart=args.restart,
    )


def _load_embedding_model(path):
    # Keras (and with it TensorFlow) is imported by `keras_face.load_model`, not at
    # start-up: `keras-face --help` must not pay for it.
    _require_file(path, "model")
    if not path.endswith(".keras"):
        raise CommandError(f"--model must be a .keras file: {path}")
    try:
        model = keras_face.load_model(path)
    except ValueError as error:  # not a .keras archive, or one this Keras cannot read
        raise CommandError(str(error)) from error
    except TypeError as error:  # a layer of neither Keras nor keras_face
        missing = re.search(r"Could not locate class '[^']*'", str(error))
        if missing is None:
            raise
        raise CommandError(
            f"{path}: {missing.group(0)} (a custom layer of neither Keras nor keras_face: "
            "load the model in Python after importing the module that defines it)"
        ) from error
    return getattr(model, "embedding_model", None) or model


def _print_table(rows, columns):
    widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(columns)]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths)))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))


def _read_bin_for(model, path):
    """A `.bin`'s pairs at the model's input size: resized (bilinear) and said so if needed."""
    images, issame = keras_face.data.read_bin(path)
    size = tuple(model.inputs[0].shape[1:3])
    if None in size or tuple(images.shape[1:3]) == size:
        return images, issame
    print(
        f"{path}: the images are {images.shape[1]}x{images.shape[2]}, the model takes "
        f"{size[0]}x{size[1]}: resizing them (bilinear) to {size[0]}x{size[1]}"
    )
    del images  # decoded again at the model's size by the reader's own resize
    return keras_face.data.read_bin(path, image_size=size)


def run_eval(args):
    """`keras-face eval`: the verification table of `--bin` files and IJB-B/C 1:1."""
    if not args.bin and not args.ijb:
        raise CommandError("give at least one --bin file or --ijb folder")
    if args.edc and not args.bin:
        raise CommandError("--edc needs --bin files (the EDC is computed on their pairs)")
    for option, value in (("--edc-fmr", args.edc_fmr), ("--edc-limit", args.edc_limit)):
        if not 0.0 < value <= 1.0:
            raise CommandError(f"{option} must be in (0, 1]. Received: {option}={value}")
    for path in args.bin:
        _require_file(path, "verification file")
    if args.ijb:
        _require_file(args.ijb, "IJB folder")
    scoring_model = _load_embedding_model(args.model)
    # An SCF model outputs (embedding, kappa): the protocols take the embedding alone.
    model = keras_face.uncertainty.embedding_output_model(scoring_model)
    results = {}
    rows = []
    edc_rows = []
    for path in args.bin:
        name = os.path.splitext(os.path.basename(path))[0]
        images, issame = _read_bin_for(model, path)
        summary = keras_face.evaluation.evaluate_pairs(
            model,
            images,
            issame,
            name=name,
            batch_size=args.batch_size,
            flip=not args.no_flip,
            n_folds=args.folds,
            verbose=True,
        )
        results[name] = summary.as_dict()
        rows.append(summary.table_row())
        if args.edc:
            results[name]["edc"] = _error_versus_discard(
                args, scoring_model, model, images, issame, name, edc_rows
            )
    if rows:
        _print_table(
            rows,
            [
                column.format(folds=args.folds)
                for column in keras_face.evaluation.VERIFICATION_TABLE_COLUMNS
            ],
        )
    if edc_rows:
        print()
        _print_table(
            edc_rows,
            [
                "set",
                "quality",
                "FNMR %",
                f"FNMR % at {args.edc_limit:g} discarded",
                f"EDC area to {args.edc_limit:g}",
            ],
        )
    if args.ijb:
        results[args.ijb_target] = _evaluate_ijb(args, model, blank_line=bool(rows))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


def _error_versus_discard(args, scoring_model, model, images, issame, name, table_rows):
    """The EDC of the norm (and kappa) on one pair set: JSON-ready curves, one row each."""
    evaluation = keras_face.evaluation
    embeddings = evaluation.extract_embeddings(
        model, images, batch_size=args.batch_size, flip=not args.no_flip, verbose=False
    )
    scores = np.sum(embeddings[0::2] * embeddings[1::2], axis=1)
    qualities = keras_face.uncertainty.quality_scores(
        scoring_model, images, batch_size=args.batch_size
    )
    # The floor to beat: a quality score that knows nothing (fixed seed, reproducible).
    qualities["random"] = np.random.default_rng(0).random(len(images))
    curves = {}
    for quality_name, quality in qualities.items():
        curve = evaluation.error_versus_discard(
            scores,
            issame,
            quality[0::2],
            quality[1::2],
            fmr=args.edc_fmr,
            discard_limit=args.edc_limit,
        )
        # FNMR of the step curve at the discard limit (the last step at or before it).
        at_limit = curve.fnmr[np.searchsorted(curve.discard_fraction, args.edc_limit, "right") - 1]
        curves[quality_name] = {
            "partial_area": curve.partial_area,
            "discard_limit": curve.discard_limit,
            "score_threshold": curve.score_threshold,
            "fmr": curve.fmr,
            "discard_fraction": curve.discard_fraction.tolist(),
            "fnmr": [None if np.isnan(value) else float(value) for value in curve.fnmr],
            "quality_threshold": curve.quality_threshold.tolist(),
        }
        table_rows.append(
            [
                name,
                quality_name,
                f"{100 * curve.fnmr[0]:.2f}",
                "-" if np.isnan(at_limit) else f"{100 * at_limit:.2f}",
                f"{curve.partial_area:.5f}",
            ]
        )
    return {"target_fmr": args.edc_fmr, "curves": curves}


def _evaluate_ijb(args, model, blank_line):
    evaluation = keras_face.evaluation
    meta = evaluation.read_ijb_meta(args.ijb, args.ijb_target)
    features = evaluation.ijb_image_features(
        model, meta, batch_size=args.batch_size, flip=not args.no_flip
    )
    result = evaluation.evaluate_ijb(features, meta)
    tar = {f"{far:g}": float(value) for far, value in result["tar_at_far"].items()}
    if blank_line:
        print()
    _print_table(
        [[args.ijb_target] + [f"{100 * value:.2f}" for value in tar.values()]],
        ["set"] + [f"TAR@FAR={far} %" for far in tar],
    )
    return {"tar_at_far": tar, "auc": float(result["auc"])}


def run_pack(args):
    """`keras-face pack`: an image folder into a .rec pack, or a pairs list into a .bin."""
    _require_file(args.images, "image folder")
    if not os.path.isdir(args.images):
        raise CommandError(f"--images must be a folder: {args.images}")
    if args.pairs:
        _pack_pairs(args)
        return
    if not args.output.endswith(".rec"):
        raise CommandError(f"the output of a folder pack is a .rec file: {args.output}")
    summary = keras_face.data.pack_image_folder(
        args.images, args.output, image_size=args.image_size, quality=args.quality
    )
    print(
        f"Packed {summary['num_images']} images of {summary['num_classes']} identities into "
        f"{args.output} ({summary.get('num_skipped', 0)} skipped)"
    )


def _pack_pairs(args):
    _require_file(args.pairs, "pairs file")
    if not args.output.endswith(".bin"):
        raise CommandError(f"with --pairs the output is a verification .bin: {args.output}")
    data = keras_face.data
    pairs = data.read_pairs_file(args.pairs, images_dir=args.images)
    images, issame = data.load_pair_images(pairs, args.images, image_size=args.image_size)
    data.write_bin(args.output, images, issame, quality=args.quality)
    print(f"Wrote {len(pairs)} pairs ({int(issame.sum())} genuine) to {args.output}")


def run_export(args):
    """`keras-face export`: SavedModel, TFLite or ONNX, with an optional parity check."""
    training = keras_face.training
    model = _load_embedding_model(args.model)
    suffix = {"savedmodel": "_savedmodel", "tflite": ".tflite", "onnx": ".onnx"}[args.format]
    output = args.output or os.path.splitext(args.model)[0] + suffix
    try:
        # Validated in its runtime before it is reported (an ExportError otherwise).
        training.export_embedding_model(
            model, output, format=args.format, input_dtype=args.input_dtype, opset=args.opset
        )
        print(f"Exported {model.name} ({args.format}, {args.input_dtype} input) to {output}")
        if args.check:
            differences = training.check_exported(model, output, format=args.format)
            print(
                "Parity with the Keras model on 4 random images: max abs difference "
                + ", ".join(f"{name} {value:.2e}" for name, value in differences.items())
            )
    except ImportError as error:
        raise CommandError(str(error)) from None


def run_convert(args):
    """`keras-face convert`: arcface_torch `.pth` weights into a `.keras` model."""
    _require_file(args.weights, "weights file")
    if not args.output.endswith(".keras"):
        raise CommandError(f"--output must be a .keras file: {args.output}")
    input_shape = None if args.input_size is None else (*args.input_size, 3)
    try:
        model = keras_face.models.from_arcface_torch(
            args.weights,
            architecture=args.architecture,
            input_shape=input_shape,
            preprocessing=None if args.preprocessing == "none" else args.preprocessing,
        )
    except ImportError as error:  # PyTorch reads the .pth file
        raise CommandError(
            f"reading a .pth file needs PyTorch (pip install torch): {error}"
        ) from None
    model.save(args.output)
    parameters = keras_face.models.count_parameters(model)
    print(
        f"Converted {args.weights} into {model.name} ({parameters:,} parameters, input "
        f"{model.input_shape[1]}x{model.input_shape[2]}, {args.preprocessing} preprocessing, "
        f"{model.output_shape[-1]}-d embeddings) and saved it to {args.output}"
    )


COMMANDS = {
    "train": run_train,
    "eval": run_eval,
    "pack": run_pack,
    "export": run_export,
    "convert": run_convert,
}


def expected_errors():
    """The exception types that `main` prints as one line: the project's own, missing files.

    Returns:
        tuple of exception types: `keras_face.errors.KerasFaceError` (config, data, pairs
        file, diverged run, command-line values) and `FileNotFoundError`.

    Example:
        ```python
        isinstance(keras_face.training.ConfigError("bad"), keras_face.cli.expected_errors())
        ```
    """
    return (KerasFaceError, FileNotFoundError)


# A keras_face data error raised inside a tf.data pipeline reaches Python wrapped in a
# TensorFlow error (its message inside, the graph's node names around it).
_WRAPPED_DATA_ERROR = re.compile(r"(?:UndecodableImageError|DataError): ([^\n]*)")


def data_error_inside(error):
    """The message of a keras_face data error wrapped by TensorFlow, or `None`.

    A strict reader raises `UndecodableImageError` while `tf.data` runs its pipeline;
    TensorFlow re-raises it as its own error type around the original message.

    Args:
        error: an exception.

    Returns:
        str or `None`.

    Example:
        ```python
        keras_face.cli.data_error_inside(error)  # 'Undecodable image in faces/ at key ...'
        ```
    """
    if not type(error).__module__.startswith("tensorflow"):
        return None
    found = _WRAPPED_DATA_ERROR.search(str(error))
    return found.group(1).strip() if found else None


def _one_line(error):
    if isinstance(error, FileNotFoundError) and error.filename is not None:
        return f"{error.strerror}: {error.filename}"
    return str(error)


def main(argv=None):
    """Entry point of the `keras-face` console script; returns the exit status.

    Args:
        argv: list of str. The arguments after `keras-face`. Defaults to `sys.argv[1:]`.

    Returns:
        int: 0, or 1 after an expected error (printed as one line); usage errors exit
        with 2 (argparse). Other exceptions propagate with their traceback.

    Example:
        ```python
        status = keras_face.cli.main(["train", "--set", "training.epochs=1"])
        ```
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        import_tensorflow_quietly()
        COMMANDS[args.command](args)
    except KeyboardInterrupt as interrupt:
        if os.environ.get("KERAS_FACE_TRACEBACK"):
            raise
        print(f"keras-face {args.command}: {interrupted_message(interrupt, argv)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        message = _one_line(error) if isinstance(error, expected_errors()) else None
        if message is None:
            message = data_error_inside(error)
        if message is None or os.environ.get("KERAS_FACE_TRACEBACK"):
            raise
        print(f"keras-face {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def interrupted_message(interrupt, argv):
    """The line printed after Ctrl-C: for an interrupted run, how to resume it.

    Args:
        interrupt: the `KeyboardInterrupt` (a `keras_face.training.TrainingInterrupted`
            names the run folder).
        argv: list of str. The command's arguments (after `keras-face`).

    Returns:
        str.

    Example:
        ```python
        keras_face.cli.interrupted_message(KeyboardInterrupt(), ["eval", "--model", "m.keras"])
        # 'interrupted.'
        ```
    """
    output_dir = getattr(interrupt, "output_dir", None)
    if output_dir is None:
        return "interrupted."
    command = (
        ["keras-face"]
        + _without_options(argv, ("--output", "--restart"))
        + [
            "--output",
            output_dir,
        ]
    )
    if not getattr(interrupt, "has_backup", False):
        return (
            f"interrupted before the first backup of {output_dir}; to start again: "
            f"{shlex.join(command)}"
        )
    backup = os.path.join(output_dir, "backup")
    return f"interrupted; the backup is in {backup}. To resume: {shlex.join(command)}"


def _without_options(argv, names):
    """`argv` without the options `names` (`--name value`, `--name=value`, flags)."""
    kept = []
    skip_value = False
    for argument in argv:
        if skip_value:
            skip_value = False
            continue
        name = argument.split("=", 1)[0]
        if name in names:
            skip_value = name == "--output" and "=" not in argument
            continue
        kept.append(argument)
    return kept


def import_tensorflow_quietly():
    """Import TensorFlow with its start-up logging hidden (the commands' first step).

    TensorFlow's C++ runtime writes its start-up lines (oneDNN notices, the CUDA probing
    of a machine without a GPU, `cuInit ... UNKNOWN ERROR (303)`) straight to the
    process's standard error before any logging setting applies, so file descriptor 2
    is pointed at a temporary file while TensorFlow loads and probes its devices; the
    captured text is written out when the import fails. `TF_CPP_MIN_LOG_LEVEL` defaults
    to `2` for the rest of the command (a value set by the caller is kept), and Python's
    `absl` logging to errors.

    Example:
        ```python
        keras_face.cli.import_tensorflow_quietly()
        ```
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            # Imported here, not at the top: `keras-face --help` must not load TensorFlow.
            import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved_stderr, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
