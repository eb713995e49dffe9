"""Build a verification .bin file from aligned face images and a pairs list.

    python datasets/build_bin.py --pairs lfw/pairs.txt --images lfw/aligned_112 --output lfw.bin
    python datasets/build_bin.py --pairs my_pairs.txt --images crops --output my.bin \\
        --image-size 112

The pairs list is LFW's `pairs.txt` or `path_a path_b 1|0` lines (see
`keras_face.data.read_pairs_file`); see `keras_face.data.build_verification_bin`.
"""

import argparse
import sys

from keras_face.data import build_verification_bin


def main(argv=None):
    """Parses `argv`, writes the .bin, prints a one-line summary and returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", required=True, help="pairs list (LFW pairs.txt or 'a b 1|0')")
    parser.add_argument("--images", required=True, help="folder the pair paths are relative to")
    parser.add_argument("--output", required=True, help="the .bin file to write")
    parser.add_argument("--image-size", type=int, default=None, help="resize to this size")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality when resizing")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    summary = build_verification_bin(
        args.pairs,
        args.images,
        args.output,
        image_size=args.image_size,
        quality=args.quality,
        progress=not args.quiet,
    )
    print(
        f"Wrote {summary['path']}: {summary['num_pairs']} pairs ({summary['num_same']} same), "
        f"images {summary['image_shape']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
