"""ImageNet evaluation: the three data sources, bad files, the metric, the CLI, tf.distribute.

All data is generated: a dozen small JPEGs named like the first validation
images (so the official ground truth labels them), the same images in a tar
that goes through the real tfds ``imagenet2012`` builder, and as classic
TFRecords. Models are tiny or Xception at 71x71 with random weights whose
classifier is biased towards the classes present, so that top-1/top-5 hits
are neither all nor nothing.
"""

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import types

import numpy as np
import pytest
from eval_worker import SIZE, favour, tiny_model

import keras_xception as kx
from keras_xception import cli, evaluation
from keras_xception.data import imagenet as data
from keras_xception.data.dataset import image_dataset
from keras_xception.data.transform import decode_and_transform

N = 12  # good images
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "eval_worker.py")


def _val_name(k):
    return f"ILSVRC2012_val_{k:08d}.JPEG"


def _photo(rng, h, w):
    """A smooth random RGB image (compresses like a photo, unlike pure noise)."""
    from PIL import Image

    small = rng.integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BILINEAR)


def _jpeg_bytes(img, **kw):
    b = io.BytesIO()
    img.save(b, "JPEG", **kw)
    return b.getvalue()


def write_tfrecords(path, examples, num_shards=2):
    """Classic-layout TFRecords from ``[(file_name, encoded_bytes, stored_label)]``."""
    import tensorflow as tf

    def feature(v):
        if isinstance(v, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    paths = [f"{path}-{s:05d}-of-{num_shards:05d}" for s in range(num_shards)]
    per = -(-len(examples) // num_shards)
    for s, p in enumerate(paths):
        with tf.io.TFRecordWriter(p) as w:
            for name, contents, label in examples[s * per : (s + 1) * per]:
                ex = tf.train.Example(
                    features=tf.train.Features(
                        feature={
                            "image/encoded": feature(contents),
                            "image/class/label": feature(int(label)),
                            "image/filename": feature(name.encode()),
                            "image/format": feature(b"JPEG"),
                        }
                    )
                )
                w.write(ex.SerializeToString())
    return f"{path}-*"


@pytest.fixture(scope="module")
def val(tmp_path_factory):
    """The first N validation images as a folder, a manual-dir tar, and 1-based TFRecords."""
    root = tmp_path_factory.mktemp("imagenet")
    d = root / "val"
    d.mkdir()
    rng = np.random.default_rng(0)
    files = []
    for k in range(1, N + 1):
        h, w = (int(v) for v in rng.integers(60, 130, 2))
        path = d / _val_name(k)
        path.write_bytes(_jpeg_bytes(_photo(rng, h, w), quality=90))
        files.append(str(path))
    manual = root / "manual"
    manual.mkdir()
    with tarfile.open(manual / data.VAL_TAR, "w") as tar:
        for f in files:
            tar.add(f, arcname=os.path.basename(f))
    # A train tar that is not a tar: preparing must not look at it (validation only).
    (manual / "ILSVRC2012_img_train.tar").write_bytes(b"not a tar")
    labels = list(data.validation_ground_truth()[:N])
    examples = [(os.path.basename(f), open(f, "rb").read(), lab + 1) for f, lab in zip(files, labels)]
    tfrec = write_tfrecords(str(root / "validation"), examples)
    return types.SimpleNamespace(
        root=root, dir=str(d), manual=str(manual), files=files, labels=labels, tfrecords=tfrec, examples=examples
    )


@pytest.fixture(scope="module")
def bad_dir(val, tmp_path_factory):
    """The N good images plus: CMYK JPEG, PNG named .JPEG, grayscale JPEG, truncated JPEG, garbage."""
    d = tmp_path_factory.mktemp("bad") / "val"
    shutil.copytree(val.dir, d)
    rng = np.random.default_rng(5)
    img = _photo(rng, 90, 110)
    good = _jpeg_bytes(img)
    (d / _val_name(N + 1)).write_bytes(_jpeg_bytes(img.convert("CMYK")))
    img.save(d / _val_name(N + 2), "PNG")
    (d / _val_name(N + 3)).write_bytes(_jpeg_bytes(img.convert("L")))
    (d / _val_name(N + 4)).write_bytes(good[: len(good) // 2])
    (d / _val_name(N + 5)).write_bytes(b"this is not an image\n" * 20)
    return types.SimpleNamespace(dir=str(d), img=img, decodable=N + 3, skipped=[_val_name(N + 4), _val_name(N + 5)])


@pytest.fixture(scope="module")
def tfds_records(val):
    return data.tfds_records(val.root / "tfds", val.manual)


@pytest.fixture(scope="module")
def tiny(val):
    return tiny_model(favoured=val.labels)


def _numpy_hits(model, directory, transform):
    """Top-1/top-5 hit counts computed directly with NumPy over the model's outputs."""
    assert transform.preprocessing == "tf"
    pairs = list(image_dataset(data.folder_records(directory), transform, batch_size=64).as_numpy_iterator())
    x = np.concatenate([p[0] for p in pairs])
    y = np.concatenate([p[1] for p in pairs])
    scores = model.predict(x / 127.5 - 1.0, verbose=0)
    order = np.argsort(-scores, axis=1)
    top1 = int(np.sum(order[:, 0] == y))
    top5 = int(np.sum(np.any(order[:, :5] == y[:, None], axis=1)))
    return len(y), top1, top5


def _counts(report):
    return report["count"], report["top1_correct"], report["top5_correct"]


def test_labels_match_keras_output_order():
    from keras_xception.model.imagenet import class_index

    wnids = data.imagenet_wnids()
    assert list(wnids) == [w for w, _ in class_index()]
    with open(data._tfds_file("labels.txt")) as f:  # tfds's own list: the label order of its records
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
    assert contents[_val_name(3)] == open(val.files[2], "rb").read()
    import tensorflow_datasets as tfds

    splits = tfds.builder("imagenet2012", data_dir=str(val.root / "tfds")).info.splits
    assert list(splits) == ["validation"]
    # Prepared: a second call needs no manual dir.
    assert data.tfds_records(val.root / "tfds").size == N


def test_xception_on_tfds_equals_numpy(val, tfds_records):
    import keras_xception as kx

    model = favour(kx.Xception(weights=None, input_shape=(71, 71, 3)), val.labels, seed=1)
    t = kx.resolve_transform("imagenet", target_size=(71, 71))
    report = evaluation.evaluate(model, tfds_records, transform=t, batch_size=5, verbose=0)
    expected = _numpy_hits(model, val.dir, t)
    assert _counts(report) == expected
    assert report["top5_correct"] > 0 and report["top1"] == report["top1_correct"] / N
    assert report["skipped"] == []
    assert report["transform"] == dict(
        target_size=[71, 71], crop_fraction=0.875, resize_mode="central", interpolation="bilinear", preprocessing="tf"
    )


def test_predictor_runtime_gives_the_keras_counts(val, tfds_records):
    """evaluate(runtime=...) runs a Predictor in the step and counts exactly what Keras counts."""
    import keras_xception as kx

    model = favour(kx.Xception(weights=None, input_shape=(71, 71, 3)), val.labels, seed=1)
    t = kx.resolve_transform("imagenet", target_size=(71, 71))
    keras_run = evaluation.evaluate(model, tfds_records, transform=t, batch_size=5, verbose=0)
    tf_run = evaluation.evaluate(model, tfds_records, transform=t, batch_size=5, verbose=0, runtime="tensorflow")
    assert _counts(tf_run) == _counts(keras_run) and tf_run["count"] == N


def test_sources_agree(val, bad_dir, tfds_records, tiny, tmp_path):
    t = kx.resolve_transform("imagenet", target_size=(SIZE, SIZE))
    run = lambda records: evaluation.evaluate(
        tiny,
        records,
        transform=t,
        batch_size=5,  # noqa: E731
        per_class=True,
        verbose=0,
    )
    folder = run(data.folder_records(val.dir))
    assert _counts(folder) == _numpy_hits(tiny, val.dir, t)
    assert 0 < folder["top1_correct"] < N and folder["top5_correct"] > folder["top1_correct"]
    # class-per-folder tree of the same files
    tree = tmp_path / "tree"
    for f, lab in zip(val.files, val.labels):
        (tree / data.imagenet_wnids()[lab]).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, tree / data.imagenet_wnids()[lab])
    for other in (tfds_records, data.tfrecord_records(val.tfrecords), data.folder_records(tree)):
        report = run(other)
        assert _counts(report) == _counts(folder), other.description
        assert report["per_class"] == folder["per_class"]


def test_tfrecord_label_offset(val, tiny, tmp_path):
    t = kx.resolve_transform("imagenet", target_size=(SIZE, SIZE))
    run = lambda records: evaluation.evaluate(
        tiny,
        records,
        transform=t,
        batch_size=4,  # noqa: E731
        per_class=True,
        verbose=0,
    )
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


def test_bad_files_decoded_or_skipped(bad_dir, tiny):
    import tensorflow as tf
    from PIL import Image

    t = kx.resolve_transform("imagenet", target_size=(SIZE, SIZE))
    with pytest.warns(UserWarning, match="Skipped") as warned:
        report = evaluation.evaluate(tiny, data.folder_records(bad_dir.dir), transform=t, batch_size=4, verbose=0)
    assert sorted(os.path.basename(s["name"]) for s in report["skipped"]) == bad_dir.skipped
    reasons = {os.path.basename(s["name"]): s["reason"] for s in report["skipped"]}
    assert "Invalid JPEG data" in reasons[_val_name(N + 4)]
    assert "Unknown image file format" in reasons[_val_name(N + 5)]
    assert {str(w.message).split(":")[0] for w in warned} >= {
        f"Skipped {os.path.join(bad_dir.dir, n)}" for n in bad_dir.skipped
    }
    # Skipped files are not counted; CMYK, PNG-as-JPEG and grayscale are.
    assert report["count"] == bad_dir.decodable
    assert _counts(report) == _numpy_hits(tiny, bad_dir.dir, t)
    with pytest.raises(ValueError, match=_val_name(N + 4)):
        evaluation.evaluate(tiny, data.folder_records(bad_dir.dir), transform=t, batch_size=4, verbose=0, strict=True)
    # The decodable odd files come out as RGB matching Pillow's conversion.
    full = kx.resolve_transform(target_size=(90, 110), crop_fraction=1.0)
    rgb = np.asarray(bad_dir.img, np.float32)
    png = decode_and_transform(tf.io.read_file(os.path.join(bad_dir.dir, _val_name(N + 2))), full)
    np.testing.assert_array_equal(png.numpy(), rgb)
    cmyk_path = os.path.join(bad_dir.dir, _val_name(N + 1))
    cmyk = decode_and_transform(tf.io.read_file(cmyk_path), full).numpy()
    pil = np.asarray(Image.open(cmyk_path).convert("RGB"), np.float32)
    assert np.mean(np.abs(cmyk - pil)) < 3.0
    gray = decode_and_transform(tf.io.read_file(os.path.join(bad_dir.dir, _val_name(N + 3))), full).numpy()
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


def test_limit_and_argument_errors(val, tiny):
    t = kx.resolve_transform("imagenet", target_size=(SIZE, SIZE))
    records = data.folder_records(val.dir)
    report = evaluation.evaluate(tiny, records, transform=t, batch_size=4, limit=5, verbose=0)
    assert report["count"] == 5
    # Without a transform: the imagenet one at the model's input size.
    default = evaluation.evaluate(tiny, records, batch_size=4, limit=2, verbose=0)
    assert default["transform"]["target_size"] == [SIZE, SIZE] and default["count"] == 2
    with pytest.raises(ValueError, match="batch_size"):
        evaluation.evaluate(tiny, records, transform=t, batch_size=0)
    with pytest.raises(ValueError, match="limit"):
        evaluation.evaluate(tiny, records, transform=t, limit=-1)
    with pytest.raises(ValueError, match="records"):
        evaluation.evaluate(tiny, val.dir, transform=t)
    with pytest.raises(ValueError, match="resize_mode"):
        kx.resolve_transform("imagenet", resize_mode="area")
    with pytest.raises(ValueError, match="strategy"):
        evaluation.make_strategy("tpu")


def test_missing_data_messages(tmp_path, capsys):
    for args in (
        ["--val-dir", str(tmp_path / "nope")],
        ["--tfds-data-dir", str(tmp_path)],
        ["--tfds-data-dir", str(tmp_path), "--tfds-manual-dir", str(tmp_path)],
        ["--tfrecords", str(tmp_path / "validation-*")],
    ):
        assert cli.main(["evaluate", *args, "--weights", "none"]) == 2
        err = capsys.readouterr().err
        assert "ILSVRC2012_img_val.tar" in err and "image-net.org" in err, err
    assert cli.main(["evaluate", "--val-dir", str(tmp_path), "--tfds-manual-dir", str(tmp_path)]) == 2
    assert "--tfds-manual-dir needs --tfds-data-dir" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "cat.jpg").write_bytes(b"")
    assert cli.main(["evaluate", "--val-dir", str(tmp_path / "other"), "--weights", "none"]) == 2
    assert "No images" in capsys.readouterr().err


def test_cli_evaluate(val, bad_dir, tmp_path, capsys):
    import keras_xception as kx

    model = favour(kx.Xception(weights=None, input_shape=(71, 71, 3)), val.labels, seed=2)
    weights = str(tmp_path / "x71.weights.h5")
    model.save_weights(weights)
    out = tmp_path / "report.json"
    argv = [
        "evaluate",
        "--val-dir",
        bad_dir.dir,
        "--weights",
        weights,
        "--image-size",
        "71",
        "--batch-size",
        "4",
        "--limit",
        str(N + 4),
        "--crop-pct",
        "0.9",
        "--resize-mode",
        "shorter-side",
        "--interpolation",
        "bicubic",
        "--report",
        str(out),
    ]
    assert cli.main(argv) == 1  # done in part: one image skipped
    captured = capsys.readouterr()
    err = captured.err
    assert "top-1" in captured.out
    assert f"keras-xception evaluate: warning: Skipped {os.path.join(bad_dir.dir, _val_name(N + 4))}" in err
    assert "keras-xception evaluate: 1 of 16 images could not be read" in err
    report = json.loads(out.read_text())
    assert {"top1", "top5", "count", "skipped", "transform", "images_per_second", "elapsed_seconds"} <= set(report)
    assert report["transform"] == dict(
        target_size=[71, 71], crop_fraction=0.9, resize_mode="shorter-side", interpolation="bicubic", preprocessing="tf"
    )
    assert report["count"] == N + 3 and [os.path.basename(s["name"]) for s in report["skipped"]] == [_val_name(N + 4)]
    t = kx.resolve_transform(
        weights, target_size=(71, 71), crop_fraction=0.9, resize_mode="shorter-side", interpolation="bicubic"
    )
    assert _counts(report) == _numpy_hits(model, bad_dir.dir, t)
    assert cli.main(argv + ["--strict"]) == 2
    assert _val_name(N + 4) in capsys.readouterr().err


# --------------------------------------------------------------------------- distributed


def _child_env():
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]),
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
    )
    env.pop("TF_CONFIG", None)
    return env


@pytest.fixture(scope="module")
def single_process(val, bad_dir, tmp_path_factory):
    """The reference: Xception 71x71 on the bad-files folder (17 files, 15 decodable) in this process."""
    import keras_xception as kx

    model = favour(kx.Xception(weights=None, input_shape=(71, 71, 3)), val.labels, seed=3)
    weights = str(tmp_path_factory.mktemp("dist") / "x71.weights.h5")
    model.save_weights(weights)
    t = kx.resolve_transform(weights, target_size=(71, 71))
    with pytest.warns(UserWarning):
        report = evaluation.evaluate(
            model, data.folder_records(bad_dir.dir), transform=t, batch_size=4, per_class=True, verbose=0
        )
    assert 0 < report["top1_correct"] < report["count"] == bad_dir.decodable
    return weights, report


def _same_totals(report, reference):
    assert _counts(report) == _counts(reference)
    assert report["per_class"] == reference["per_class"]
    assert [s["name"] for s in report["skipped"]] == [s["name"] for s in reference["skipped"]]


@pytest.mark.slow
def test_mirrored_two_cpu_devices(bad_dir, single_process, tmp_path):
    weights, reference = single_process
    out = tmp_path / "mirrored.json"
    proc = subprocess.run(
        [sys.executable, WORKER, "mirrored", bad_dir.dir, weights, str(out), "4"],
        env=_child_env(),
        timeout=240,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["num_replicas"] == 2 and report["strategy"] == "MirroredStrategy"
    _same_totals(report, reference)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_two_processes_via_cli(bad_dir, single_process, tmp_path):
    """Two `keras-xception evaluate --strategy multi-worker` processes on loopback; only the chief reports."""
    weights, reference = single_process
    hosts = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs, outs = [], []
    for i in range(2):
        env = _child_env()
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}})
        outs.append(tmp_path / f"worker{i}.json")
        argv = [
            sys.executable,
            "-m",
            "keras_xception",
            "evaluate",
            "--val-dir",
            bad_dir.dir,
            "--weights",
            weights,
            "--image-size",
            "71",
            "--batch-size",
            "4",
            "--strategy",
            "multi-worker",
            "--per-class",
            "--quiet",
            "--report",
            str(outs[i]),
        ]
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    try:
        logs = [p.communicate(timeout=300)[0].decode(errors="replace") for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 1, log[-3000:]  # done in part: the two bad files are skipped
    assert "2 of 17 images could not be read" in logs[0]
    assert "top-1" in logs[0] and "top-1" not in logs[1]
    assert not outs[1].exists()
    report = json.loads(outs[0].read_text())
    assert report["num_replicas"] == 2 and report["strategy"] == "MultiWorkerMirroredStrategy"
    _same_totals(report, reference)
