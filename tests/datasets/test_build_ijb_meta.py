import numpy as np
import pytest

pytest.importorskip("tensorflow")

from keras_face import data  # noqa: E402
from keras_face import evaluation  # noqa: E402
from tests.datasets.script_loading import load_script  # noqa: E402

pytestmark = pytest.mark.tf_only

FACES = """image,template,media,subject,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5,score
1.jpg,11,100,7,30,40,70,40,50,60,35,80,65,80,0.99
2.jpg,11,101,7,31,41,71,41,51,61,36,81,66,81,0.5
3.jpg,12,102,7,32,42,72,42,52,62,37,82,67,82,0.75
4.jpg,13,103,9,33,43,73,43,53,63,38,83,68,83,0.25
"""


def test_meta_from_csv_tables_reads_back(tmp_path, capsys):
    (tmp_path / "faces.csv").write_text(FACES)
    (tmp_path / "pairs.csv").write_text("template1,template2\n11,12\n11,13\n12,13\n")
    assert (
        load_script("build_ijb_meta").main(
            [
                "--root",
                str(tmp_path / "IJBC"),
                "--target",
                "IJBC",
                "--faces",
                str(tmp_path / "faces.csv"),
                "--pairs",
                str(tmp_path / "pairs.csv"),
            ]
        )
        == 0
    )
    assert "ijbc_template_pair_label.txt" in capsys.readouterr().out
    meta = evaluation.read_ijb_meta(tmp_path / "IJBC", "IJBC")
    assert meta.image_names.tolist() == ["1.jpg", "2.jpg", "3.jpg", "4.jpg"]
    assert meta.templates.tolist() == [11, 11, 12, 13]
    assert meta.medias.tolist() == [100, 101, 102, 103]
    assert meta.pair_templates1.tolist() == [11, 11, 12]
    assert meta.pair_templates2.tolist() == [12, 13, 13]
    assert meta.pair_labels.tolist() == [1, 0, 0]  # labelled by subject
    np.testing.assert_allclose(
        meta.landmarks[1], [[31, 41], [71, 41], [51, 61], [36, 81], [66, 81]]
    )
    np.testing.assert_allclose(meta.detector_scores, [0.99, 0.5, 0.75, 0.25], rtol=1e-6)


def test_meta_of_aligned_crops_and_bad_input(tmp_path):
    paths = data.write_ijb_meta(tmp_path, "IJBB", ["a.jpg", "b.jpg"], [1, 2], [5, 6], [[1, 2]], [0])
    assert sorted(paths) == ["face_tid_mid", "name_5pts_score", "template_pair_label"]
    meta = evaluation.read_ijb_meta(tmp_path, "IJBB")
    np.testing.assert_allclose(meta.landmarks[0], data.arcface_template(112), rtol=1e-6)
    assert meta.detector_scores.tolist() == [1.0, 1.0] and meta.pair_labels.tolist() == [0]
    with pytest.raises(ValueError, match="template=3"):
        data.write_ijb_meta(tmp_path, "IJBB", ["a.jpg"], [1], [5], [[1, 3]], [1])
    with pytest.raises(ValueError, match="Received: target='IJBA'"):
        data.write_ijb_meta(tmp_path, "IJBA", ["a.jpg"], [1], [5], [[1, 1]], [1])
    with pytest.raises(ValueError, match="without spaces"):
        data.write_ijb_meta(tmp_path, "IJBB", ["a b.jpg"], [1], [5], [[1, 1]], [1])
    with pytest.raises(ValueError, match=r"`pair_labels` must be 0 or 1"):
        data.write_ijb_meta(tmp_path, "IJBB", ["a.jpg"], [1], [5], [[1, 1]], [2])
    (tmp_path / "faces.csv").write_text("image,template,media\na.jpg,1,5\n")
    (tmp_path / "pairs.csv").write_text("template1,template2\n1,1\n")
    with pytest.raises(ValueError, match="needs a `subject` column"):
        data.build_ijb_meta(tmp_path, "IJBB", tmp_path / "faces.csv", tmp_path / "pairs.csv")
    (tmp_path / "pairs.csv").write_text("first,second\n1,1\n")
    with pytest.raises(ValueError, match=r"needs the columns \['template1', 'template2'\]"):
        data.build_ijb_meta(tmp_path, "IJBB", tmp_path / "faces.csv", tmp_path / "pairs.csv")
