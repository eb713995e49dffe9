"""The `keras-face` command: a thin layer over the library.

```
keras-face train  [--config FILE] [--output DIR] [--set KEY=VALUE ...]  # no arguments: main job
keras-face eval   --model M.keras --bin A.bin [B.bin ...] [--ijb ROOT --ijb-target IJBC]
keras-face pack   --images DIR --output OUT.rec            # folder per identity -> RecordIO
keras-face pack   --images DIR --pairs PAIRS.txt --output OUT.bin   # pairs -> verification .bin
keras-face export --model M.keras --format savedmodel|tflite|onnx [--output PATH] [--check]
```

Expected problems end with one `keras-face <command>: error: ...` line and exit status 1:
the project's own errors (`keras_face.errors.KerasFaceError`: a config typo, a class count
that does not match the data, a batch that does not split over the replicas, a corrupt
data or pairs file, a diverged run) and missing files. Bad command-line usage exits with
status 2 (argparse). Any other exception is a programming error and keeps its traceback;
set `KERAS_FACE_TRACEBACK=1` to see the traceback of the expected ones too.

`keras_face.data`, `keras_face.evaluation` and `keras_face.training` (TensorFlow) are
reached through the package's lazy attributes, so `keras-face --help` does not load them.
"""

import argparse
import json
import os
import sys

import keras
import numpy as np

import keras_face
from keras_face.errors import KerasFaceError

EXIT_ERROR = 1


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
    parser.add_argument("--ijb-target", default="IJBC", choices=["IJBB", "IJBC"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--no-flip", action="store_true", help="no flip test")
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
    keras_face.training.train(
        args.config,
        output_dir=args.output,
        overrides=list(args.overrides) + list(args.assignments),
        progress=not args.quiet,
    )


def _load_embedding_model(path):
    _require_file(path, "model")
    if not path.endswith(".keras"):
        raise CommandError(f"--model must be a .keras file: {path}")
    try:
        model = keras.saving.load_model(path)
    except ValueError as error:  # not a .keras archive, or one this Keras cannot read
        raise CommandError(str(error)) from error
    return getattr(model, "embedding_model", None) or model


def _print_table(rows, columns):
    widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(columns)]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths)))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))


def run_eval(args):
    """`keras-face eval`: the verification table of `--bin` files and IJB-B/C 1:1."""
    if not args.bin and not args.ijb:
        raise CommandError("give at least one --bin file or --ijb folder")
    for path in args.bin:
        _require_file(path, "verification file")
    if args.ijb:
        _require_file(args.ijb, "IJB folder")
    model = _load_embedding_model(args.model)
    results = {}
    rows = []
    for path in args.bin:
        name = os.path.splitext(os.path.basename(path))[0]
        images, issame = keras_face.data.read_bin(path)
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
    if rows:
        _print_table(
            rows,
            [
                column.format(folds=args.folds)
                for column in keras_face.evaluation.VERIFICATION_TABLE_COLUMNS
            ],
        )
    if args.ijb:
        results[args.ijb_target] = _evaluate_ijb(args, model, blank_line=bool(rows))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


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
        training.export_embedding_model(
            model, output, format=args.format, input_dtype=args.input_dtype, opset=args.opset
        )
    except ImportError as error:
        raise CommandError(str(error)) from None
    print(f"Exported {model.name} ({args.format}, {args.input_dtype} input) to {output}")
    if args.check:
        shape = (4,) + tuple(model.inputs[0].shape[1:])
        images = np.random.default_rng(0).integers(0, 256, size=shape).astype(np.uint8)
        expected = np.asarray(model.predict(images.astype("float32"), verbose=0))
        actual = training.run_exported(output, images, format=args.format)
        difference = float(np.abs(actual - expected).max())
        print(
            f"Parity with the Keras model on 4 random images: max abs difference {difference:.2e}"
        )
        if difference > 1e-4:
            raise CommandError(
                f"exported model differs from the Keras model by {difference:.2e} (> 1e-4)"
            )


COMMANDS = {"train": run_train, "eval": run_eval, "pack": run_pack, "export": run_export}


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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        COMMANDS[args.command](args)
    except Exception as error:
        if not isinstance(error, expected_errors()) or os.environ.get("KERAS_FACE_TRACEBACK"):
            raise
        print(f"keras-face {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
