"""The `keras-face` command: a thin layer over the library.

```
keras-face train  [--config FILE] [--output DIR] [--set KEY=VALUE ...]   # no arguments: the main job
keras-face eval   --model M.keras --bin A.bin [B.bin ...] [--ijb ROOT --ijb-target IJBC]
keras-face pack   --images DIR --output OUT.rec            # folder per identity -> RecordIO
keras-face pack   --images DIR --pairs PAIRS.txt --output OUT.bin   # pairs -> verification .bin
keras-face export --model M.keras --format savedmodel|tflite|onnx [--output PATH] [--check]
```

Expected problems (a missing file, a config typo, a class count that does not match the
data, a batch that does not split over the replicas, a diverged run) end with one
`keras-face <command>: error: ...` line and exit status 1; bad command-line usage exits
with status 2 (argparse); set `KERAS_FACE_TRACEBACK=1` to see the traceback instead.
TensorFlow is imported only when a command needs it.
"""

import argparse
import json
import os
import sys

EXIT_ERROR = 1


class CommandError(Exception):
    """An expected failure, printed as one line without a traceback."""


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
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
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
    parser.add_argument("--bin", nargs="+", default=[], metavar="FILE", help="verification .bin files")
    parser.add_argument("--ijb", metavar="ROOT", help="IJB-B/C release folder (meta/ and loose_crop/)")
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
    parser.add_argument("--images", required=True, help="image folder (one sub-folder per identity)")
    parser.add_argument("--output", required=True, help="output .rec or .bin")
    parser.add_argument(
        "--pairs", metavar="FILE",
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
    from keras_face.training import train

    for assignment in args.assignments:
        if "=" not in assignment:
            raise CommandError(
                f"unexpected argument {assignment!r}: overrides look like key=value "
                "(e.g. training.epochs=3)"
            )
    if args.config:
        _require_file(args.config, "config file")
    train(
        args.config,
        output_dir=args.output,
        overrides=list(args.overrides) + list(args.assignments),
        progress=not args.quiet,
    )


def _load_embedding_model(path):
    import keras

    _require_file(path, "model")
    if not path.endswith(".keras"):
        raise CommandError(f"--model must be a .keras file: {path}")
    model = keras.saving.load_model(path)
    return getattr(model, "embedding_model", None) or model


def _print_table(rows, columns):
    widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(columns)]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths)))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))


def run_eval(args):
    if not args.bin and not args.ijb:
        raise CommandError("give at least one --bin file or --ijb folder")
    for path in args.bin:
        _require_file(path, "verification file")
    if args.ijb:
        _require_file(args.ijb, "IJB folder")
    from keras_face.data import read_bin
    from keras_face.evaluation import evaluate_ijb
    from keras_face.evaluation import extract_embeddings
    from keras_face.evaluation import ijb_image_features
    from keras_face.evaluation import read_ijb_meta
    from keras_face.evaluation import verify

    model = _load_embedding_model(args.model)
    results = {}
    rows = []
    for path in args.bin:
        name = os.path.splitext(os.path.basename(path))[0]
        images, issame = read_bin(path)
        embeddings = extract_embeddings(model, images, batch_size=args.batch_size, flip=not args.no_flip)
        result = verify(embeddings, issame, n_folds=args.folds)
        results[name] = {
            "pairs": int(len(issame)),
            "accuracy": float(result["accuracy"]),
            "accuracy_std": float(result["accuracy_std"]),
            "threshold": float(result["threshold"]),
            "val_at_far_1e-3": float(result["val_at_far_1e-3"]),
            "auc": float(result["auc"]),
        }
        rows.append([
            name, str(len(issame)),
            f"{100 * result['accuracy']:.2f} +- {100 * result['accuracy_std']:.2f}",
            f"{result['threshold']:.3f}", f"{100 * result['val_at_far_1e-3']:.2f}",
            f"{result['auc']:.4f}",
        ])
    if rows:
        _print_table(rows, ["set", "pairs", f"accuracy % ({args.folds}-fold)", "threshold", "VAL@FAR=1e-3 %", "AUC"])
    if args.ijb:
        meta = read_ijb_meta(args.ijb, args.ijb_target)
        features = ijb_image_features(model, meta, batch_size=args.batch_size, flip=not args.no_flip)
        result = evaluate_ijb(features, meta)
        tar = {f"{far:g}": float(value) for far, value in result["tar_at_far"].items()}
        results[args.ijb_target] = {"tar_at_far": tar, "auc": float(result["auc"])}
        if rows:
            print()
        _print_table([[args.ijb_target] + [f"{100 * v:.2f}" for v in tar.values()]],
                     ["set"] + [f"TAR@FAR={far} %" for far in tar])
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


def _read_pairs(pairs_path, images_dir):
    """`[(path_a, path_b, issame)]` from 'a b 1|0' lines or an LFW pairs.txt."""
    pairs = []
    with open(pairs_path) as file:
        for number, line in enumerate(file, start=1):
            tokens = line.split()
            if not tokens or (number == 1 and len(tokens) == 2 and all(t.isdigit() for t in tokens)):
                continue  # blank line, or LFW's "folds pairs_per_fold" header
            if len(tokens) == 3 and tokens[2].lower() in ("0", "1", "true", "false"):
                pair = (tokens[0], tokens[1], tokens[2].lower() in ("1", "true"))
            elif len(tokens) == 3 and tokens[1].isdigit() and tokens[2].isdigit():
                name = tokens[0]
                pair = (f"{name}/{name}_{int(tokens[1]):04d}.jpg", f"{name}/{name}_{int(tokens[2]):04d}.jpg", True)
            elif len(tokens) == 4 and tokens[1].isdigit() and tokens[3].isdigit():
                pair = (
                    f"{tokens[0]}/{tokens[0]}_{int(tokens[1]):04d}.jpg",
                    f"{tokens[2]}/{tokens[2]}_{int(tokens[3]):04d}.jpg",
                    False,
                )
            else:
                raise CommandError(
                    f"{pairs_path}:{number}: expected 'path_a path_b 1|0' or an LFW pairs "
                    f"line, got {line.strip()!r}"
                )
            for relative in pair[:2]:
                _require_file(os.path.join(images_dir, relative), f"image of {pairs_path}:{number}")
            pairs.append(pair)
    if not pairs:
        raise CommandError(f"no pairs in {pairs_path}")
    return pairs


def run_pack(args):
    import numpy as np

    _require_file(args.images, "image folder")
    if not os.path.isdir(args.images):
        raise CommandError(f"--images must be a folder: {args.images}")
    if args.pairs:
        _require_file(args.pairs, "pairs file")
        if not args.output.endswith(".bin"):
            raise CommandError(f"with --pairs the output is a verification .bin: {args.output}")
        from PIL import Image

        from keras_face.data import write_bin

        pairs = _read_pairs(args.pairs, args.images)
        images = []
        for path_a, path_b, _ in pairs:
            for relative in (path_a, path_b):
                with Image.open(os.path.join(args.images, relative)) as image:
                    image = image.convert("RGB")
                    if args.image_size:
                        image = image.resize((args.image_size, args.image_size), Image.BILINEAR)
                    images.append(np.asarray(image))
        shapes = {image.shape for image in images}
        if len(shapes) > 1:
            raise CommandError(f"the images have several sizes {sorted(shapes)}: pass --image-size")
        issame = np.array([same for _, _, same in pairs], dtype=bool)
        write_bin(args.output, np.stack(images), issame, quality=args.quality)
        print(f"Wrote {len(pairs)} pairs ({int(issame.sum())} genuine) to {args.output}")
        return
    if not args.output.endswith(".rec"):
        raise CommandError(f"the output of a folder pack is a .rec file: {args.output}")
    from keras_face.data import pack_image_folder

    summary = pack_image_folder(args.images, args.output, image_size=args.image_size, quality=args.quality)
    print(
        f"Packed {summary['num_images']} images of {summary['num_classes']} identities into "
        f"{args.output} ({summary.get('num_skipped', 0)} skipped)"
    )


def run_export(args):
    import numpy as np

    from keras_face.training import export_embedding_model
    from keras_face.training import run_exported

    model = _load_embedding_model(args.model)
    suffix = {"savedmodel": "_savedmodel", "tflite": ".tflite", "onnx": ".onnx"}[args.format]
    output = args.output or os.path.splitext(args.model)[0] + suffix
    try:
        export_embedding_model(model, output, format=args.format, input_dtype=args.input_dtype, opset=args.opset)
    except ImportError as error:
        raise CommandError(str(error)) from None
    print(f"Exported {model.name} ({args.format}, {args.input_dtype} input) to {output}")
    if args.check:
        shape = (4,) + tuple(model.inputs[0].shape[1:])
        images = np.random.default_rng(0).integers(0, 256, size=shape).astype(np.uint8)
        expected = np.asarray(model.predict(images.astype("float32"), verbose=0))
        actual = run_exported(output, images, format=args.format)
        difference = float(np.abs(actual - expected).max())
        print(f"Parity with the Keras model on 4 random images: max abs difference {difference:.2e}")
        if difference > 1e-4:
            raise CommandError(f"exported model differs from the Keras model by {difference:.2e} (> 1e-4)")


COMMANDS = {"train": run_train, "eval": run_eval, "pack": run_pack, "export": run_export}


def main(argv=None):
    """Entry point of the `keras-face` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from keras_face.training.config import ConfigError

    expected = (CommandError, ConfigError, FileNotFoundError)
    try:
        from keras_face.training.stop_on_nan import TrainingDivergedError

        expected = expected + (TrainingDivergedError, ValueError)
        COMMANDS[args.command](args)
    except expected as error:
        if os.environ.get("KERAS_FACE_TRACEBACK"):
            raise
        message = str(error) if not isinstance(error, FileNotFoundError) or error.filename is None else (
            f"{error.strerror}: {error.filename}"
        )
        print(f"keras-face {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
