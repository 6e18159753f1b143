"""keras_xception.tasks.evaluation: ImageNet top-1/top-5 against counts computed with NumPy, on a Predictor
runtime, argument errors, and tf.distribute (two logical CPU devices; two worker processes).

The data are conftest's generated validation files (``val``, ``bad_dir``; the sources themselves are
tested in test_data_imagenet.py). Models are tiny, the small variant or Xception at 71x71 with random
weights whose classifier is biased towards the classes present, so that top-1/top-5 hits are neither
all nor nothing.
"""

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import N, counts, numpy_hits, small_xception
from eval_worker import SIZE, favour
from synthetic import write_synthetic_tree

import keras_xception as kx
from keras_xception import evaluation
from keras_xception.data import imagenet as data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "eval_worker.py")


@pytest.fixture(scope="module")
def x71(val, tfds_records):
    """Xception 71x71 with random weights favouring ``val``'s classes, its transform, and its Keras run on the
    tfds records (built and run once: the tfds, Predictor-runtime and distributed tests share them)."""
    model = favour(kx.Xception(weights=None, input_shape=(71, 71, 3)), val.labels, seed=1)
    t = kx.resolve_transform("imagenet", target_size=(71, 71))
    report = evaluation.evaluate(model, tfds_records, transform=t, batch_size=5, verbose=0)
    return model, t, report


def test_xception_on_tfds_equals_numpy(val, x71):
    model, t, report = x71
    expected = numpy_hits(model, val.dir, t)
    assert counts(report) == expected
    assert report["top5_correct"] > 0 and report["top1"] == report["top1_correct"] / N
    assert report["skipped"] == []
    assert report["transform"] == dict(
        target_size=[71, 71],
        crop_fraction=0.875,
        resize_mode="central",
        interpolation="bilinear",
        preprocessing="tf",
        exif_orientation=False,  # the ImageNet protocol: the stored pixels
    )


def test_predictor_runtime_gives_the_keras_counts(x71, tfds_records):
    """evaluate(runtime=...) runs a Predictor in the step and counts exactly what Keras counts."""
    model, t, keras_run = x71
    tf_run = evaluation.evaluate(model, tfds_records, transform=t, batch_size=5, verbose=0, runtime="tensorflow")
    assert counts(tf_run) == counts(keras_run) and tf_run["count"] == N


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


def _reference(model, name, bad_dir, tmp_path_factory):
    """``model``'s weights file and its evaluation of the bad-files folder (17 files, 15 decodable) in this process."""
    weights = str(tmp_path_factory.mktemp("dist") / f"{name}.weights.h5")
    model.save_weights(weights)
    t = kx.resolve_transform(weights, target_size=(71, 71))
    with pytest.warns(UserWarning):
        report = evaluation.evaluate(
            model, data.folder_records(bad_dir.dir), transform=t, batch_size=4, per_class=True, verbose=0
        )
    assert 0 < report["top1_correct"] < report["count"] == bad_dir.decodable
    return weights, report


@pytest.fixture(scope="module")
def single_process(x71, bad_dir, tmp_path_factory):
    """The reference: Xception 71x71 (``x71``'s) on the bad-files folder, in this process."""
    return _reference(x71[0], "x71", bad_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def small_reference(val, bad_dir, tmp_path_factory):
    """The same reference for the small variant (conftest.small_xception, 1000 classes): what the MirroredStrategy
    worker must count (the claim does not depend on the model's size; the small one is quicker to trace)."""
    return _reference(favour(small_xception(), val.labels, seed=3), "small71", bad_dir, tmp_path_factory)


def _same_totals(report, reference):
    assert counts(report) == counts(reference)
    assert report["per_class"] == reference["per_class"]
    assert [s["name"] for s in report["skipped"]] == [s["name"] for s in reference["skipped"]]


@pytest.mark.slow
def test_mirrored_two_cpu_devices(bad_dir, small_reference, tmp_path):
    weights, reference = small_reference
    out = tmp_path / "mirrored.json"
    proc = subprocess.run(
        [sys.executable, WORKER, "mirrored", bad_dir.dir, weights, str(out), "4", "small"],
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
        options = ["--image-size", "71", "--batch-size", "4", "--strategy", "multi-worker", "--per-class", "--quiet"]
        argv = [sys.executable, "-m", "keras_xception", "evaluate", "--val-dir", bad_dir.dir, "--weights", weights]
        argv += [*options, "--report", str(outs[i])]
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


# --------------------------------------------------------------------------- class folders


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A random-weight 3-class classifier (mean colour -> softmax) and a 3-class image tree it has not seen."""
    import types

    import keras
    import numpy as np

    root = tmp_path_factory.mktemp("classes")
    write_synthetic_tree(root, classes=3, per_class=4, sizes=(40, 60))
    keras.utils.set_random_seed(4)
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(8)(pooled)))
    transform = kx.resolve_transform(target_size=(32, 32), exif_orientation=True)
    names = ["class_0", "class_1", "class_2"]
    return types.SimpleNamespace(model=model, class_names=names, transform=transform), str(root), np


def test_evaluate_classifier_counts_by_hand(classifier):
    clf, root, np = classifier
    from keras_xception import folders

    report = evaluation.evaluate_classifier(clf, root, batch_size=5, verbose=0)
    paths = folders.list_images(root)
    x = clf.transform.preprocess(np.stack([kx.load_image(p, clf.transform) for p in paths]))
    predicted = clf.model.predict(x, verbose=0).argmax(1)
    labels = np.repeat([0, 1, 2], 4)
    assert report["count"] == 12 and report["class_names"] == clf.class_names
    assert report["accuracy"] == pytest.approx(np.mean(predicted == labels))
    cm = np.zeros((3, 3), int)
    np.add.at(cm, (labels, predicted), 1)
    assert report["confusion_matrix"] == cm.tolist()
    for k, name in enumerate(clf.class_names):
        called = cm[:, k].sum()
        assert report["per_class"][name]["support"] == 4
        assert report["per_class"][name]["recall"] == pytest.approx(cm[k, k] / 4)
        assert report["per_class"][name]["precision"] == pytest.approx(cm[k, k] / called if called else 0.0)
    assert report["skipped"] == [] and report["source"] == root and "top5_accuracy" not in report
    assert report["transform"] == clf.transform.to_dict() and report["runtime"] == "keras"


def test_a_keras_file_is_read_by_the_predictor_and_evaluated_like_the_classifier(classifier, tmp_path):
    """``Predictor(path.keras)`` runs the file's model with its record; ``evaluate_classifier(path)`` goes through it."""
    import keras

    from keras_xception.tasks.classifier import save_classifier

    clf, root, np = classifier
    path = save_classifier(clf.model, tmp_path / "c.keras", clf.class_names, clf.transform, {"note": "made here"})
    predictor = kx.Predictor(path, "keras")
    assert predictor.class_names == tuple(clf.class_names) and predictor.transform == clf.transform
    assert predictor.info["note"] == "made here" and predictor.model is not clf.model
    x = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(predictor.predict(x), keras.ops.convert_to_numpy(clf.model(x)), rtol=1e-6, atol=1e-7)
    by_file = evaluation.evaluate_classifier(path, root, batch_size=5, verbose=0)
    by_object = evaluation.evaluate_classifier(clf, root, batch_size=5, verbose=0)
    for key in ("count", "accuracy", "confusion_matrix", "class_names", "transform"):
        assert by_file[key] == by_object[key], key
    # A plain-Keras file without a vector of class scores is no classifier: said before any image is read.
    inputs = keras.Input((32, 32, 3))
    keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs)).save(tmp_path / "maps.keras")
    with (
        pytest.warns(UserWarning, match="no keras-xception record"),
        pytest.raises(ValueError, match="is not a classifier"),
    ):
        evaluation.evaluate_classifier(str(tmp_path / "maps.keras"), root, verbose=0)
    with pytest.raises(ValueError, match="No model file at"):
        kx.Predictor(str(tmp_path / "none.keras"))


def test_evaluate_classifier_skips_names_and_refuses(classifier, tmp_path):
    import shutil

    clf, root, np = classifier
    tree = tmp_path / "val"
    shutil.copytree(root, tree)
    (tree / "class_1" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    with pytest.warns(UserWarning, match="Skipping .*broken.jpg"):
        report = evaluation.evaluate_classifier(clf, str(tree), batch_size=4, verbose=0)
    assert report["count"] == 12 and [s["path"] for s in report["skipped"]] == [str(tree / "class_1" / "broken.jpg")]
    with pytest.raises(ValueError, match="broken.jpg"):
        evaluation.evaluate_classifier(clf, str(tree), batch_size=4, verbose=0, strict=True)
    (tree / "dog").mkdir()
    shutil.copy(tree / "class_0" / "img_000.png", tree / "dog")
    with pytest.raises(ValueError, match="does not know: \\['dog'\\]"):
        evaluation.evaluate_classifier(clf, str(tree), verbose=0)
    with pytest.raises(ValueError, match="val_dir"):
        evaluation.evaluate_classifier(clf, str(tmp_path / "nope"), verbose=0)


def test_classification_report_figures():
    import numpy as np

    report = evaluation.classification_report([0, 1, 1, 2, 2, 0], np.array([0, 0, 1, 2, 2, 2]), ["a", "b", "c"])
    assert report["confusion_matrix"] == [[1, 0, 1], [1, 1, 0], [0, 0, 2]]
    assert report["per_class"]["a"] == dict(precision=0.5, recall=0.5, f1=0.5, support=2)
    assert report["per_class"]["c"]["precision"] == pytest.approx(2 / 3) and report["per_class"]["c"]["recall"] == 1
    assert report["accuracy"] == pytest.approx(4 / 6)
    empty = evaluation.classification_report([0, 0], np.array([0, 1]), ["a", "b", "c"])
    assert empty["per_class"]["c"] == dict(precision=0.0, recall=None, f1=0.0, support=0)
