"""keras_xception.data.files: the folder walker and the seeded per-class train/validation split."""

import os

import numpy as np
import pytest
from synthetic import write_synthetic_tree

from keras_xception import folders


@pytest.fixture(scope="module")
def tree(image_tree):
    return image_tree


def test_class_folder_split_is_per_class_seeded_and_disjoint(tree):
    a = folders.class_folder_split(tree, 0.2, seed=3)
    b = folders.class_folder_split(tree, 0.2, seed=3)
    c = folders.class_folder_split(tree, 0.2, seed=4)
    tp, tl, vp, vl, classes = a
    assert classes == ["class_0", "class_1"]
    assert len(tp) == 10 and len(vp) == 2 and sorted(vl.tolist()) == [0, 1]
    assert not set(tp) & set(vp) and len(set(tp) | set(vp)) == 12
    assert all(os.path.basename(os.path.dirname(p)) == classes[lyr] for p, lyr in zip(tp + vp, np.r_[tl, vl]))
    assert a[2] == b[2] and a[0] == b[0]
    assert (a[2], a[0]) != (c[2], c[0])


def test_class_folder_split_bad_input(tmp_path, tree):
    with pytest.raises(ValueError, match="val_split"):
        folders.class_folder_split(tree, 1.0)
    with pytest.raises(ValueError, match="data_dir"):
        folders.class_folder_split(str(tmp_path / "missing"))
    (tmp_path / "only").mkdir()
    with pytest.raises(ValueError, match="at least 2 classes"):
        folders.class_folder_split(str(tmp_path))


def test_class_folder_split_skips_non_images_with_a_warning(tmp_path):
    write_synthetic_tree(tmp_path, classes=2, per_class=3)
    bad = tmp_path / "class_1" / "notes.jpg"
    bad.write_text("not an image")
    with pytest.warns(UserWarning, match="notes.jpg"):
        tp, _, vp, _, _ = folders.class_folder_split(str(tmp_path), 0.2)
    assert str(bad) not in tp + vp and len(tp + vp) == 6
