"""Check a RecordIO pack before training on it: counts, identity ranges, images, checksums.

    python datasets/verify_pack.py /data/ms1m-retinaface-t1/train.rec
    python datasets/verify_pack.py /data/faces_emore/train.rec \\
        --checksums /data/faces_emore/md5sums.txt

Prints what `keras_face.data.verify_recordio_pack` found; the exit status is 0 when the pack
is sound, 1 when a problem was found.
"""

import argparse
import sys

from keras_face.data import verify_recordio_pack


def main(argv=None):
    """Parses `argv`, verifies the pack, prints the report and returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rec", help="the .rec file (its .idx and property beside it)")
    parser.add_argument("--checksums", help="md5sum/sha256sum output listing the pack's files")
    parser.add_argument("--no-decode", action="store_true", help="skip decoding every image")
    parser.add_argument("--threads", type=int, default=None, help="decoding threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    report = verify_recordio_pack(
        args.rec,
        checksum_file=args.checksums,
        decode=not args.no_decode,
        num_threads=args.threads,
        progress=not args.quiet,
    )
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
