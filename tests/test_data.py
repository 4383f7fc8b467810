import io
import warnings

import numpy as np
import pytest
from PIL import Image

from etdeploy.data import PAPER5_CLASSES, load_dataset
from etdeploy.data.images import channel_mean_std, decode_image
from etdeploy.errors import DataError, ImageError


def _msl_tree(root, lines_by_split, synsets=("0 ground", "1 horizon", "2 sun")):
    (root / "calibrated").mkdir(parents=True)
    (root / "msl_synset_words-indexed.txt").write_text("\n".join(synsets) + "\n")
    for split in ("train", "val", "test"):
        (root / f"{split}-calibrated-shuffled.txt").write_text("\n".join(lines_by_split.get(split, [])) + "\n")


def _jpeg(path, color=(120, 80, 40), size=(20, 20)):
    Image.new("RGB", size, color).save(path, "JPEG")


def test_bundled_subset_is_small_real_and_cited(bundled):
    assert bundled.classes == PAPER5_CLASSES
    counts = bundled.counts()
    assert counts["train"] == [96] * 5 and counts["val"] == [12] * 5 and counts["test"] == [12] * 5
    assert "10.5281/zenodo.1049137" in bundled.citation
    total = sum(p.stat().st_size for p in (bundled.root / "calibrated").iterdir())
    assert total <= 5 * 1024 * 1024
    assert (bundled.root / "CITATION.txt").read_text().count("10.5281/zenodo.1049137") == 1


def test_paper_split_is_seeded_and_stratified():
    a = load_dataset("bundled", seed=1)
    b = load_dataset("bundled", seed=1)
    c = load_dataset("bundled", seed=2)
    assert [s.path for s in a.split("test")] == [s.path for s in b.split("test")]
    assert [s.path for s in a.split("test")] != [s.path for s in c.split("test")]
    capped = load_dataset("bundled", cap=50)
    assert capped.counts()["train"] == [40] * 5 and capped.counts()["test"] == [5] * 5


def test_sol_split_and_msl25_grouping():
    sol = load_dataset("bundled", recipe="sol")
    assert sum(map(sum, sol.counts().values())) == 600
    msl25 = load_dataset("bundled", grouping="msl25", recipe="sol")
    assert len(msl25.classes) == 25 and "sun" in msl25.classes
    groups = {s.source_class for s in sol.split("train") if sol.classes[s.label] == "calibration target"}
    assert groups <= {"apxs cal target", "chemcam cal target", "mahli cal target", "mastcam cal target"}


def test_imagefolder_tree(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            _jpeg(tmp_path / cls / f"{i}.jpg", color=(i * 10, 0, 0))
    ds = load_dataset(tmp_path)
    assert ds.classes == ("a", "b") and ds.counts()["train"] == [8, 8]
    with pytest.raises(DataError, match="no train/val/test subfolders"):
        load_dataset(tmp_path, recipe="sol")


def test_missing_and_empty_label_files(tmp_path):
    _msl_tree(tmp_path, {})
    with pytest.raises(DataError, match="label file is empty") as err:
        load_dataset(tmp_path)
    assert "train-calibrated-shuffled.txt" in str(err.value)
    (tmp_path / "val-calibrated-shuffled.txt").unlink()
    with pytest.raises(DataError, match="missing"):
        load_dataset(tmp_path)


def test_missing_image_and_unknown_class(tmp_path):
    _msl_tree(tmp_path, {"train": ["calibrated/x.JPG 0"], "val": ["calibrated/x.JPG 0"],
                         "test": ["calibrated/x.JPG 0"]})
    with pytest.raises(DataError, match=r"line 1: image calibrated/x.JPG does not exist"):
        load_dataset(tmp_path)
    _jpeg(tmp_path / "calibrated" / "x.JPG")
    (tmp_path / "test-calibrated-shuffled.txt").write_text("calibrated/x.JPG 7\n")
    with pytest.raises(DataError, match="unknown class id 7") as err:
        load_dataset(tmp_path)
    assert "test-calibrated-shuffled.txt" in str(err.value)


def test_label_path_traversal_refused(tmp_path):
    root = tmp_path / "ds"
    _msl_tree(root, {s: ["../outside.jpg 0"] for s in ("train", "val", "test")})
    _jpeg(tmp_path / "outside.jpg")
    with pytest.raises(DataError, match="outside the data set root"):
        load_dataset(root)


def test_duplicate_images_across_splits_warn(tmp_path):
    _msl_tree(tmp_path, {"train": ["calibrated/a.JPG 0", "calibrated/b.JPG 1"], "val": ["calibrated/b.JPG 1"],
                         "test": ["calibrated/a.JPG 0"]})
    _jpeg(tmp_path / "calibrated" / "a.JPG")
    _jpeg(tmp_path / "calibrated" / "b.JPG")
    with pytest.warns(UserWarning, match="more than one split"):
        ds = load_dataset(tmp_path, grouping="msl25", recipe="sol")
    assert ds.warnings and "leakage" in ds.warnings[0]


def test_decode_good_image_resizes_to_rgb(tmp_path):
    Image.new("L", (40, 30), 200).save(tmp_path / "g.png")
    arr = decode_image(tmp_path / "g.png", 16)
    assert arr.shape == (3, 16, 16) and arr.dtype == np.uint8 and int(arr.min()) == 200


@pytest.mark.parametrize("case", ["truncated", "text", "png_named_jpg", "bmp", "bomb"])
def test_bad_images_raise_image_error(tmp_path, case):
    if case == "truncated":
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, "JPEG")
        path = tmp_path / "t.jpg"
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    elif case == "text":
        path = tmp_path / "t.jpg"
        path.write_text("not an image at all")
    elif case == "png_named_jpg":
        path = tmp_path / "t.jpg"
        Image.new("RGB", (8, 8)).save(path, "PNG")
    elif case == "bmp":
        path = tmp_path / "t.bmp"
        Image.new("RGB", (8, 8)).save(path, "BMP")
    else:
        path = tmp_path / "bomb.png"
        Image.new("1", (9000, 9000)).save(path, "PNG")  # 81 Mpixel, a few KB on disk
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError) as err:
            decode_image(path, 16)
    assert str(path) in str(err.value)


def test_channel_mean_std():
    images = np.zeros((2, 3, 4, 4), dtype=np.uint8)
    images[1] = 255
    mean, std = channel_mean_std(images)
    assert mean == (0.5, 0.5, 0.5) and std == (0.5, 0.5, 0.5)
