"""Face-recognition data: insightface RecordIO packs, verification `.bin` files and pair
lists, image folders, TFRecord shards, preprocessing, 5-point alignment and the synthetic
identity generator.

Every reader takes one `ReadOptions` (or its fields as keywords), runs its format's
`ImageSource` through one pipeline (`read_source`) and returns a `FaceDataset`.

Uses TensorFlow (`tf.data`); `keras_face` imports this package lazily, on first use.
"""

from keras_face.data.alignment import ARCFACE_TEMPLATE
from keras_face.data.alignment import align_face
from keras_face.data.alignment import arcface_template
from keras_face.data.alignment import estimate_similarity_transform
from keras_face.data.alignment import warp_affine
from keras_face.data.any_format import detect_source
from keras_face.data.any_format import read_face_dataset
from keras_face.data.array_source import ArraySource
from keras_face.data.array_source import read_arrays
from keras_face.data.bin_builder import build_verification_bin
from keras_face.data.data_stats import DataStats
from keras_face.data.data_stats import DataStatsCallback
from keras_face.data.data_stats import UndecodableImageError
from keras_face.data.digits import load_digits_dataset
from keras_face.data.face_dataset import FaceDataset
from keras_face.data.format_conversion import convert_face_dataset
from keras_face.data.ijb_meta_files import build_ijb_meta
from keras_face.data.ijb_meta_files import write_ijb_meta
from keras_face.data.image_folder import ImageFolderScan
from keras_face.data.image_folder import list_image_folder
from keras_face.data.image_folder import read_image_folder
from keras_face.data.image_folder import scan_image_folder
from keras_face.data.image_folder import write_image_folder
from keras_face.data.image_source import ImageSource
from keras_face.data.image_source import IndexedSource
from keras_face.data.image_source import PassTracker
from keras_face.data.pack_verification import PackReport
from keras_face.data.pack_verification import file_digest
from keras_face.data.pack_verification import read_checksum_file
from keras_face.data.pack_verification import verify_recordio_pack
from keras_face.data.pairs_file import PairsFileError
from keras_face.data.pairs_file import load_pair_images
from keras_face.data.pairs_file import read_pairs_file
from keras_face.data.pipeline import read_source
from keras_face.data.preprocessing import PREPROCESSING_MODES
from keras_face.data.preprocessing import preprocess
from keras_face.data.preprocessing import random_flip
from keras_face.data.read_options import JPEG_DCT_METHODS
from keras_face.data.read_options import ReadOptions
from keras_face.data.recordio import RECORDIO_MAGIC
from keras_face.data.recordio import IRHeader
from keras_face.data.recordio import RecordIOError
from keras_face.data.recordio import RecordIOReader
from keras_face.data.recordio import RecordIOWriter
from keras_face.data.recordio import pack_header
from keras_face.data.recordio import unpack_header
from keras_face.data.recordio_dataset import RecordIOImagePack
from keras_face.data.recordio_dataset import pack_image_folder
from keras_face.data.recordio_dataset import read_recordio
from keras_face.data.recordio_dataset import write_recordio
from keras_face.data.synthetic import SyntheticFaces
from keras_face.data.synthetic import synthetic_faces
from keras_face.data.synthetic import synthetic_pairs
from keras_face.data.tfrecord import read_tfrecord
from keras_face.data.tfrecord import write_tfrecord
from keras_face.data.verification_bin import VerificationBinError
from keras_face.data.verification_bin import load_bin_pickle
from keras_face.data.verification_bin import read_bin
from keras_face.data.verification_bin import write_bin

__all__ = [
    "align_face",
    "ARCFACE_TEMPLATE",
    "arcface_template",
    "ArraySource",
    "build_ijb_meta",
    "build_verification_bin",
    "convert_face_dataset",
    "DataStats",
    "DataStatsCallback",
    "detect_source",
    "estimate_similarity_transform",
    "FaceDataset",
    "file_digest",
    "ImageFolderScan",
    "ImageSource",
    "IndexedSource",
    "IRHeader",
    "JPEG_DCT_METHODS",
    "list_image_folder",
    "load_bin_pickle",
    "load_digits_dataset",
    "load_pair_images",
    "pack_header",
    "pack_image_folder",
    "PackReport",
    "PairsFileError",
    "PassTracker",
    "preprocess",
    "PREPROCESSING_MODES",
    "random_flip",
    "read_arrays",
    "VerificationBinError",
    "read_bin",
    "read_checksum_file",
    "read_face_dataset",
    "read_image_folder",
    "read_pairs_file",
    "read_recordio",
    "read_source",
    "read_tfrecord",
    "ReadOptions",
    "RECORDIO_MAGIC",
    "RecordIOError",
    "RecordIOImagePack",
    "RecordIOReader",
    "RecordIOWriter",
    "scan_image_folder",
    "synthetic_faces",
    "synthetic_pairs",
    "SyntheticFaces",
    "UndecodableImageError",
    "unpack_header",
    "verify_recordio_pack",
    "warp_affine",
    "write_bin",
    "write_ijb_meta",
    "write_image_folder",
    "write_recordio",
    "write_tfrecord",
]
