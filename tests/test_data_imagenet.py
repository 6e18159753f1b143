"""keras_xception.data.imagenet: the ImageNet validation sources (tfds ``imagenet2012``, a folder of
``ILSVRC2012_val_*.JPEG`` or class folders, classic TFRecords) and the label order they share.

The data are conftest's generated validation files (``val``): a dozen small JPEGs named like the
first validation images, the same images in a tar that goes through the real tfds builder, and as
1-based TFRecords. The sources are compared by evaluating conftest's ``tiny`` model over each.
"""

import importlib.util
import os
import shutil

import pytest
from conftest import N, counts, numpy_hits, val_name, write_tfrecords
from eval_worker import SIZE

import keras_xception as kx
from keras_xception import evaluation
from keras_xception.data import imagenet as data


def test_labels_match_keras_output_order():
    from keras_xception.model.imagenet import class_index

    wnids = data.imagenet_wnids()
    assert list(wnids) == [w for w, _ in class_index()]
    # tfds's own list, read from the installed tensorflow_datasets: the label order of its records
    tfds_dir = importlib.util.find_spec("tensorflow_datasets").submodule_search_locations[0]
    with open(os.path.join(tfds_dir, "datasets", "imagenet2012", "labels.txt")) as f:
        assert list(wnids) == [line.strip() for line in f if line.strip()]
    truth = data.validation_ground_truth()
    assert len(truth) == 50000
    assert wnids[truth[0]] == "n01751748"  # ILSVRC2012_val_00000001: sea snake
    assert wnids[truth[1]] == "n09193705"  # ILSVRC2012_val_00000002: alp


def test_tfds_builder_prepares_validation_only(val, tfds_records):
    assert tfds_records.size == N
    got = {n.decode(): int(lab) for n, lab, _ in tfds_records.dataset.as_numpy_iterator()}
    assert got == {os.path.basename(f): lab for f, lab in zip(val.files, val.labels)}
    # The bytes are the original JPEGs (tfds does not re-encode them).
    contents = {n.decode(): c for n, _, c in tfds_records.dataset.as_numpy_iterator()}
    assert contents[val_name(3)] == open(val.files[2], "rb").read()
    import tensorflow_datasets as tfds

    splits = tfds.builder("imagenet2012", data_dir=str(val.root / "tfds")).info.splits
    assert list(splits) == ["validation"]
    # Prepared: a second call needs no manual dir.
    assert data.tfds_records(val.root / "tfds").size == N


def test_sources_agree(val, bad_dir, tfds_records, tiny, tmp_path):
    t = kx.resolve_transform("imagenet", target_size=(SIZE, SIZE))

    def run(records):
        return evaluation.evaluate(tiny, records, transform=t, batch_size=5, per_class=True, verbose=0)

    folder = run(data.folder_records(val.dir))
    assert counts(folder) == numpy_hits(tiny, val.dir, t)
    assert 0 < folder["top1_correct"] < N and folder["top5_correct"] > folder["top1_correct"]
    # class-per-folder tree of the same files
    tree = tmp_path / "tree"
    for f, lab in zip(val.files, val.labels):
        (tree / data.imagenet_wnids()[lab]).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, tree / data.imagenet_wnids()[lab])
    for other in (tfds_records, data.tfrecord_records(val.tfrecords), data.folder_records(tree)):
        report = run(other)
        assert counts(report) == counts(folder), other.description
        assert report["per_class"] == folder["per_class"]


def test_tfrecord_label_offset(val, tiny, tmp_path):
    t = kx.resolve_transform("imagenet", target_size=(SIZE, SIZE))

    def run(records):
        return evaluation.evaluate(tiny, records, transform=t, batch_size=4, per_class=True, verbose=0)

    folder = run(data.folder_records(val.dir))
    one_based = run(data.tfrecord_records(val.tfrecords, label_offset=1))
    assert one_based["per_class"] == folder["per_class"]
    # Reading 1-based labels as 0-based shifts every class by one.
    shifted = run(data.tfrecord_records(val.tfrecords, label_offset=0))
    wnids = data.imagenet_wnids()
    assert set(shifted["per_class"]) == {wnids[lab + 1] for lab in val.labels}
    # 0-based shards read with label_offset=0 give the folder's numbers.
    zero = write_tfrecords(str(tmp_path / "zero"), [(n, c, lab - 1) for n, c, lab in val.examples], 1)
    assert run(data.tfrecord_records(zero, label_offset=0))["per_class"] == folder["per_class"]
    # ... and with the default offset a 0 label (the old "background") is an error naming the offset.
    with_zero = write_tfrecords(str(tmp_path / "bg"), [(n, c, 0) for n, c, _ in val.examples[:3]], 1)
    with pytest.raises(ValueError, match="label_offset"):
        run(data.tfrecord_records(with_zero))
    with pytest.raises(ValueError, match="label_offset"):
        data.tfrecord_records(val.tfrecords, label_offset="1")
