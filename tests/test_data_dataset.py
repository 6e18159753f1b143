"""keras_xception.data.dataset: the one tf.data pipeline. It decodes like load_image, over every source;
odd files decode to RGB, undecodable ones are skipped and named (or stop the run with strict=True)."""

import os

import numpy as np
import pytest
from conftest import N, counts, numpy_hits, val_name, write_tfrecords
from eval_worker import SIZE

import keras_xception as kx
from keras_xception import evaluation, folders, load_image
from keras_xception.data import imagenet as data
from keras_xception.data.dataset import image_dataset
from keras_xception.data.transform import decode_and_transform


@pytest.fixture(scope="module")
def tree(image_tree):
    return image_tree


def test_image_dataset_decodes_like_load_image(tree):
    paths = folders.list_images(tree)[:3]
    ds = folders.image_dataset(paths, kx.resolve_transform(target_size=(80, 90)), labels=[0, 1, 2], batch_size=2)
    images = np.concatenate([x.numpy() for x, _ in ds])
    labels = np.concatenate([y.numpy() for _, y in ds])
    np.testing.assert_array_equal(labels, [0, 1, 2])
    for p, image in zip(paths, images):
        np.testing.assert_array_equal(image, load_image(p, target_size=(80, 90)))


def test_bad_files_decoded_or_skipped(bad_dir, tiny):
    import tensorflow as tf
    from PIL import Image

    t = kx.resolve_transform("imagenet", target_size=(SIZE, SIZE))
    with pytest.warns(UserWarning, match="Skipping") as warned:
        report = evaluation.evaluate(tiny, data.folder_records(bad_dir.dir), transform=t, batch_size=4, verbose=0)
    assert sorted(os.path.basename(s["name"]) for s in report["skipped"]) == bad_dir.skipped
    reasons = {os.path.basename(s["name"]): s["reason"] for s in report["skipped"]}
    assert reasons[val_name(N + 4)] == "truncated JPEG (the file ends before its end-of-image marker)"
    assert "Unknown image file format" in reasons[val_name(N + 5)]
    assert {str(w.message).split(":")[0] for w in warned} >= {
        f"Skipping {os.path.join(bad_dir.dir, n)}" for n in bad_dir.skipped
    }
    # Skipped files are not counted; CMYK, PNG-as-JPEG and grayscale are.
    assert report["count"] == bad_dir.decodable
    assert counts(report) == numpy_hits(tiny, bad_dir.dir, t)
    with pytest.raises(ValueError, match=val_name(N + 4)):
        evaluation.evaluate(tiny, data.folder_records(bad_dir.dir), transform=t, batch_size=4, verbose=0, strict=True)
    # The decodable odd files come out as RGB matching Pillow's conversion.
    full = kx.resolve_transform(target_size=(90, 110), crop_fraction=1.0)
    rgb = np.asarray(bad_dir.img, np.float32)
    png = decode_and_transform(tf.io.read_file(os.path.join(bad_dir.dir, val_name(N + 2))), full)
    np.testing.assert_array_equal(png.numpy(), rgb)
    cmyk_path = os.path.join(bad_dir.dir, val_name(N + 1))
    cmyk = decode_and_transform(tf.io.read_file(cmyk_path), full).numpy()
    pil = np.asarray(Image.open(cmyk_path).convert("RGB"), np.float32)
    assert np.mean(np.abs(cmyk - pil)) < 3.0
    gray = decode_and_transform(tf.io.read_file(os.path.join(bad_dir.dir, val_name(N + 3))), full).numpy()
    assert gray.shape == (90, 110, 3) and np.all(gray[..., 0] == gray[..., 2])


def test_skipped_tfrecord_examples_are_named(val, tiny, tmp_path):
    examples = list(val.examples[:5])
    examples[2] = ("broken.JPEG", examples[2][1][:300], examples[2][2])
    pattern = write_tfrecords(str(tmp_path / "v"), examples, 1)
    t = kx.resolve_transform("imagenet", target_size=(SIZE, SIZE))
    with pytest.warns(UserWarning, match="broken.JPEG"):
        report = evaluation.evaluate(tiny, data.tfrecord_records(pattern), transform=t, batch_size=2, verbose=0)
    assert report["count"] == 4
    assert [(s["index"], s["name"]) for s in report["skipped"]] == [(2, "broken.JPEG")]


def test_datasets_give_load_image_pixels(val):
    import keras_xception as kx

    t = kx.resolve_transform(
        target_size=(80, 72), crop_fraction=0.9, resize_mode="shorter-side", interpolation="bicubic"
    )
    images = [
        im
        for im, _ in image_dataset(data.folder_records(val.dir), t, batch_size=1).unbatch().take(3).as_numpy_iterator()
    ]
    for f, im in zip(val.files, images):
        np.testing.assert_array_equal(im, kx.load_image(f, t))
    labels = [
        int(lab) for _, lab in image_dataset(data.tfrecord_records(val.tfrecords), t).unbatch().as_numpy_iterator()
    ]
    assert labels == val.labels


def test_a_truncated_jpeg_is_said_once_in_our_words_and_nothing_from_tensorflow(tmp_path, capfd):
    """TensorFlow's decoder logs "Premature end of JPEG data" (C++, on fd 2) for a file cut short: not any more."""
    import warnings

    from PIL import Image

    from keras_xception.data.dataset import map_batches

    good = str(tmp_path / "good.jpg")
    Image.fromarray(np.full((60, 80, 3), 128, np.uint8)).save(good, quality=95)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(open(good, "rb").read()[:-200])
    missing = str(tmp_path / "nope.jpg")
    t = kx.resolve_transform(target_size=(32, 32), exif_orientation=True)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = map_batches(lambda x: x.mean(axis=(1, 2)), [good, str(cut), missing], t, verbose=0)
    err = capfd.readouterr().err
    assert "jpeg" not in err.lower() and "E0000" not in err, err
    assert [str(w.message) for w in caught] == [
        f"Skipping {cut}: truncated JPEG (the file ends before its end-of-image marker)",
        f"Skipping {missing}: No such file or directory",  # the path once, no repr
    ]
    assert results.paths == [good] and [s.path for s in results.skipped] == [str(cut), missing]
    with pytest.raises(ValueError, match=f"^Cannot read {cut}: truncated JPEG"):
        map_batches(lambda x: x, [good, str(cut)], t, strict=True, verbose=0)
