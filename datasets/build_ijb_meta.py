"""Build the IJB-B / IJB-C meta files that `keras-face` IJB evaluation reads.

    python datasets/build_ijb_meta.py --root /data/IJB_release/IJBC --target IJBC \\
        --faces faces.csv --pairs pairs.csv

`faces.csv`: columns `image,template,media` and optionally `subject`, `x1,y1,...,x5,y5`,
`score`; `pairs.csv`: columns `template1,template2` and optionally `label`. Writes
`<root>/meta/<target>_face_tid_mid.txt`, `_template_pair_label.txt` and
`_name_5pts_score.txt`; see `keras_face.data.build_ijb_meta`.
"""

import argparse
import sys

from keras_face.data import build_ijb_meta


def main(argv=None):
    """Parses `argv`, writes the meta files, prints their paths and returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="dataset folder (meta/ is written in it)")
    parser.add_argument("--target", required=True, choices=("IJBB", "IJBC"))
    parser.add_argument("--faces", required=True, help="CSV: image,template,media[,subject,...]")
    parser.add_argument("--pairs", required=True, help="CSV: template1,template2[,label]")
    args = parser.parse_args(argv)
    paths = build_ijb_meta(args.root, args.target, args.faces, args.pairs)
    for path in paths.values():
        print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
