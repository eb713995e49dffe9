"""Convert face training data between an image folder, a RecordIO pack and TFRecord shards.

    python datasets/convert.py /data/faces_emore/train.rec /data/emore_folder --to folder
    python datasets/convert.py /data/casia_aligned /data/casia/train.rec --to recordio
    python datasets/convert.py /data/faces_emore/train.rec /data/emore/train.tfrecord \\
        --to tfrecord --num-shards 64

Encoded images are copied byte for byte (see `keras_face.data.convert_face_dataset`), so the
converted data decodes to the same pixels.
"""

import argparse
import sys

from keras_face.data import convert_face_dataset


def main(argv=None):
    """Parses `argv`, converts, prints a one-line summary and returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="image folder, .rec file or TFRecord file/glob")
    parser.add_argument("destination", help="folder, .rec file or TFRecord path to write")
    parser.add_argument("--to", required=True, choices=("folder", "recordio", "tfrecord"))
    parser.add_argument(
        "--source-format", default="auto", choices=("auto", "folder", "recordio", "tfrecord")
    )
    parser.add_argument("--layout", default="insightface", choices=("insightface", "plain"))
    parser.add_argument("--num-shards", type=int, default=1, help="TFRecord files to write")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    summary = convert_face_dataset(
        args.source,
        args.destination,
        args.to,
        source=args.source_format,
        layout=args.layout,
        num_shards=args.num_shards,
        progress=not args.quiet,
    )
    print(
        f"Converted {summary['num_images']} images of {summary['num_classes']} identities "
        f"from {summary['source']} to {summary['to_format']}: {args.destination}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
