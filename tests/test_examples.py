"""The examples run end to end (transfer learning and feature extraction on a tiny generated image tree at
71 px, classify.py on the sample photo) and behave like the CLI: ``--weights none`` means random weights, a
failed download or bad input is one ``SCRIPT.py: error: ...`` line with the CLI's exit status."""

import json
import os
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest
from conftest import SMALL, load_example
from synthetic import write_synthetic_tree

from keras_xception import Xception, cli, folders

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_load = load_example


@pytest.fixture(scope="module")
def tree(image_tree):
    return image_tree


@pytest.fixture(scope="module")
def notop(notop_reference):
    return notop_reference[1]


def test_transfer_learning_example_end_to_end(tree, notop, tmp_path):
    """The example is a short use of keras_xception.train: its report, and a classifier that knows its classes.

    Head only (fine-tuning would double the time), 2 epochs (``--epochs auto``, the default, trains until the
    validation loss stops improving: up to 300 epochs): the options reach kx.train as the next test shows."""
    import keras_xception as kx

    tl = _load("transfer_learning")
    assert tl.parse_args([]).epochs == "auto"  # the default
    out, report_path = str(tmp_path / "m.keras"), str(tmp_path / "r.json")
    argv = ["--data-dir", tree, "--weights", notop, "--image-size", str(SMALL), "--batch-size", "4", "--epochs", "2"]
    argv += ["--out", out, "--report", report_path]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        returned = tl.main(argv)
    with open(report_path) as f:
        report = json.load(f)
    assert report == json.loads(json.dumps(returned, default=float))
    assert report["class_names"] == ["class_0", "class_1"] and (report["num_train"], report["num_val"]) == (10, 2)
    assert report["settings"]["epochs"] == 2 and len(report["head"]["history"]["loss"]) == 2
    with open(report["outputs"]["curves"], "rb") as f:
        assert f.read(4) == b"\x89PNG"
    classifier = kx.load_classifier(out)
    assert classifier.class_names == ("class_0", "class_1")
    image = np.full((1, SMALL, SMALL, 3), 200.0, "float32")
    probs = classifier.predict(image)
    assert probs.shape == (1, 2) and abs(float(probs.sum()) - 1) < 1e-5
    # The saved classifier's backbone is usable as weights for feature extraction.
    from keras_xception import find_xception

    feats = Xception(include_top=False, weights=out, input_shape=(SMALL, SMALL, 3)).predict(
        image / 127.5 - 1, verbose=0
    )
    ref = find_xception(classifier.model).predict(image / 127.5 - 1, verbose=0)
    np.testing.assert_allclose(feats, ref, rtol=1e-5, atol=1e-6)


def test_transfer_learning_example_passes_its_options(tree, tmp_path, monkeypatch):
    """Every option reaches kx.train as the CLI would pass it (``--weights none``: random weights)."""
    import keras_xception as kx

    seen = {}

    def fake_train(data_dir, **kwargs):
        seen.update(kwargs, data_dir=data_dir)
        return types.SimpleNamespace(class_names=("a", "b")), {"val_accuracy": 1.0}

    monkeypatch.setattr(kx, "train", fake_train)
    argv = ["--data-dir", tree, "--weights", "NONE", "--image-size", "96", "--epochs", "3"]
    argv += ["--fine-tune-epochs", "1", "--augment", "--batch-size", "8", "--val-split", "0.25"]
    argv += ["--out", str(tmp_path / "m.keras"), "--report", str(tmp_path / "r.json")]
    _load("transfer_learning").main(argv)
    assert seen == dict(
        data_dir=tree,
        weights=None,
        image_size=96,
        epochs=3,
        fine_tune_epochs=1,
        augment=True,
        batch_size=8,
        val_split=0.25,
        out=str(tmp_path / "m.keras"),
        report_path=str(tmp_path / "r.json"),
    )


def test_transfer_learning_example_tf_flowers_path(tree, tmp_path, monkeypatch):
    """Without --data-dir the example writes tf_flowers as class folders once; here a stand-in of encoded images."""
    import tensorflow as tf

    tl = _load("transfer_learning")
    paths = folders.list_images(tree)
    labels = [int("class_1" in p) for p in paths]
    fake = tf.data.Dataset.from_tensor_slices(([tf.io.read_file(p).numpy() for p in paths], labels))
    monkeypatch.setattr(tl, "load_tfds_flowers", lambda: (fake, ["daisy", "tulip"]))
    folder = tl.flowers_tree(str(tmp_path / "flowers"))
    assert sorted(os.listdir(folder)) == ["daisy", "tulip"]
    assert len(folders.list_images(folder)) == len(paths)
    monkeypatch.setattr(tl, "load_tfds_flowers", lambda: pytest.fail("written once: not loaded again"))
    assert tl.flowers_tree(folder) == folder


def test_transfer_learning_example_offline_message(monkeypatch):
    import tensorflow_datasets as tfds

    tl = _load("transfer_learning")

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'storage.googleapis.com'")

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(SystemExit, match="(?s)tf_flowers.*offline.*ConnectionError.*--data-dir"):
        tl.load_tfds_flowers()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--val-split", "1.5"], "--val-split must be in"),
        (["--epochs", "some"], "--epochs must be 'auto' or an integer"),
        (["--data-dir", "/no/such/dir"], "is not a directory"),
    ],
)
def test_transfer_learning_example_bad_arguments(argv, message, capsys):
    tl = _load("transfer_learning")
    with pytest.raises(SystemExit) as e:
        tl.parse_args(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_transfer_learning_example_bad_data_is_a_clear_error(tmp_path, capsys):
    tl = _load("transfer_learning")
    (tmp_path / "only_class").mkdir()
    with pytest.raises(SystemExit) as e:
        tl.main(["--data-dir", str(tmp_path), "--image-size", "64", "--out", str(tmp_path / "m.keras")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "transfer_learning.py: error:" in err and "image_size" in err


def test_feature_extraction_example(tree, notop, tmp_path, capsys):
    fe = _load("feature_extraction")
    query, out = folders.list_images(tree)[0], str(tmp_path / "f.npz")
    argv = [tree, "--weights", notop, "--image-size", str(SMALL), "--k", "3", "--query", query, "--out", out]
    neighbours = fe.main(argv)
    assert len(neighbours) == 3 and query not in [p for p, _ in neighbours]
    sims = [s for _, s in neighbours]
    assert sims == sorted(sims, reverse=True)
    # Independent check: brute-force cosine similarity over the features the example saved.
    with np.load(out) as saved:
        features, paths = saved["features"], [str(p) for p in saved["paths"]]
    assert features.shape == (len(folders.list_images(tree)), 2048)
    q = features[paths.index(query)]
    cos = {p: float(f @ q / np.linalg.norm(f) / np.linalg.norm(q)) for p, f in zip(paths, features) if p != query}
    top3 = sorted(cos.values(), reverse=True)[:3]  # compared by value: ties may order either way
    np.testing.assert_allclose(sims, top3, rtol=1e-5)
    np.testing.assert_allclose([cos[p] for p, _ in neighbours], sims, rtol=1e-5)
    assert "Nearest to" in capsys.readouterr().out


@pytest.fixture
def two_images(tmp_path):
    write_synthetic_tree(tmp_path / "two", classes=1, per_class=2, sizes=(71, 80))
    return str(tmp_path / "two")


def test_feature_extraction_example_takes_weights_none(two_images, capsys):
    """``--weights none`` (any case) means random weights, as in the CLI (it was a traceback)."""
    neighbours = _load("feature_extraction").main([two_images, "--weights", "None", "--image-size", "71", "--k", "1"])
    assert len(neighbours) == 1
    assert "2 images, 2048-d features" in capsys.readouterr().out


@pytest.mark.parametrize(
    "example, argv",
    [
        ("feature_extraction", ["{images}", "--image-size", "71"]),
        ("classify", []),
        ("transfer_learning", ["--data-dir", "{tree}", "--image-size", "71", "--out", "{tmp}/m.keras"]),
    ],
)
def test_examples_report_a_failed_download_like_the_cli(example, argv, tree, two_images, tmp_path, monkeypatch, capsys):
    """No weights to be had (offline, or a mirror without the file): the CLI's message, exit status 1, no traceback."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("KERAS_XCEPTION_WEIGHTS_MIRROR", (tmp_path / "empty_mirror").as_uri())
    argv = [a.format(images=two_images, tree=tree, tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as e:
        _load(example).main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 1, err
    assert err.startswith(f"{example}.py: error: Could not download the weights 'imagenet")
    assert "keras-xception weights verify" in err


def test_classify_example_bad_input_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _load("classify").main([str(tmp_path / "nope.jpg"), "--weights", "none"])
    assert e.value.code == 2 and "no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_examples_run_as_scripts_and_report_bad_arguments(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="3")
    for script, args in (
        ("transfer_learning.py", ["--val-split", "0"]),
        ("feature_extraction.py", [str(tmp_path / "none")]),
    ):
        proc = subprocess.run(
            [sys.executable, os.path.join(ROOT, "examples", script), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        assert "error:" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_classify_example_runs(capsys):
    """The full 299x299 classifier on the sample photo, with random weights (``--weights none``, as in the CLI)."""
    load_example("classify").main(["--weights", "none", "--top", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == cli.sample_image() and len(lines) == 3
