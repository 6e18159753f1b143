"""keras_xception.tasks.training: train() end to end on a tiny generated class tree with the small backbone,
the classifier file (class names and transform inside, safe-mode reload), early stopping, augmentation only in
fine-tuning, class weights, mixed precision, bad input, and MirroredStrategy on 2 logical CPUs (a subprocess)."""

import json
import os
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest
from conftest import SMALL, counting_augmentation, randomize, small_xception

keras = pytest.importorskip("keras")

from synthetic import write_synthetic_tree  # noqa: E402

import keras_xception as kx  # noqa: E402
from keras_xception import folders  # noqa: E402
from keras_xception.data.metadata import MEMBER  # noqa: E402
from keras_xception.tasks import reports, training  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_backbone(seed=0):
    """The small variant without its top, random BN statistics (a builder: train() calls it in its scope)."""
    return lambda: randomize(small_xception(include_top=False), seed=seed)


FAST = dict(weights=None, image_size=SMALL, batch_size=4, verbose=0)


@pytest.fixture(scope="module")
def tree(trained_classifier):
    return trained_classifier.tree


@pytest.fixture(scope="module")
def trained(trained_classifier):
    """The run's shared classifier (conftest): head (auto), one fine-tuning epoch with augmentation (counted)."""
    t = trained_classifier
    return t.classifier, t.report, t.dir, t.seen


@pytest.fixture(scope="module")
def tree_probs(trained, tree):
    """The shared classifier's probabilities on the tree's 15 images (in ``folders.list_images`` order), computed
    once: ``(images, probs)``."""
    classifier = trained[0]
    images = np.stack([kx.load_image(p, classifier.transform) for p in folders.list_images(tree)])
    return images, classifier.predict(images)


def test_train_end_to_end_report_and_files(trained):
    classifier, report, out, _ = trained
    assert classifier.class_names == ("class_0", "class_1", "class_2")
    assert report["class_names"] == list(classifier.class_names)
    assert (report["num_train"], report["num_val"]) == (12, 3)  # round(0.2 * 5) = 1 per class
    assert set(report["per_class"]) == set(classifier.class_names)
    for r in report["per_class"].values():
        assert set(r) == {"precision", "recall", "f1", "support"} and r["support"] == 1
    cm = np.array(report["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == 3 and report["val_accuracy"] == pytest.approx(np.trace(cm) / 3)
    head = report["head"]
    assert head["cached_features"] is True and head["augmentation"] is False and "without augmentation" in head["note"]
    tune = report["fine_tune"]
    assert tune["augmentation"] == ["RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "Counting"]
    assert tune["epochs"] == 1 and tune["blocks"] == 2 and isinstance(tune["kept"], bool)
    assert set(report["timings"]) >= {"features_seconds", "head_seconds", "fine_tune_seconds", "total_seconds"}
    assert report["settings"]["augment"] is True and report["settings"]["strategy"] == "default"
    assert set(report["settings"]) == {
        "data_dir", "val_dir", "val_split", "weights", "arch", "image_size", "epochs", "max_epochs", "patience",
        "learning_rate", "dropout", "fine_tune_epochs", "fine_tune_blocks", "fine_tune_learning_rate", "augment",
        "class_weight", "batch_size", "strategy", "num_replicas", "mixed_precision", "seed",
    }  # fmt: skip
    assert report["settings"]["image_size"] == SMALL and report["settings"]["num_replicas"] == 1
    assert report["transform"]["exif_orientation"] is True and report["transform"]["preprocessing"] is None
    with open(out / "report.json") as f:
        assert json.load(f) == json.loads(json.dumps(report, default=float))
    for key in ("curves", "confusion_matrix"):
        with open(report["outputs"][key], "rb") as f:
            assert f.read(4) == b"\x89PNG"
    assert report["outputs"]["model"] == str(out / "model.keras")
    # The saved model has no random layers: augmentation lives in the fine-tuning pipeline.
    assert not [layer for layer in classifier.model.layers if "augmentation" in layer.name]


def test_class_names_and_transform_survive_save_and_safe_mode_reload(trained, tree, tree_probs):
    classifier, _, out, _ = trained
    path = str(out / "model.keras")
    with zipfile.ZipFile(path) as zf:
        meta = json.loads(zf.read(MEMBER))
    assert meta["class_names"] == ["class_0", "class_1", "class_2"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain = keras.saving.load_model(path, safe_mode=True)  # no custom objects
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
    loaded = kx.load_classifier(path)
    assert loaded.class_names == classifier.class_names and loaded.transform == classifier.transform
    images, expected = (a[:3] for a in tree_probs)  # the classifier's own probabilities
    np.testing.assert_allclose(plain(images, training=False), expected, rtol=1e-5, atol=1e-6)  # eager: no trace
    np.testing.assert_allclose(loaded.predict(images), expected, rtol=1e-5, atol=1e-6)
    assert plain.output.dtype == "float32"
    ranked = loaded.classify(folders.list_images(tree)[:2], top=2)
    assert [len(top) for _, top in ranked] == [2, 2] and ranked[0][1][0][0] in classifier.class_names
    # Re-saved by plain Keras the record is gone: still loads, classes by index, with a warning.
    plain.save(str(out / "plain.keras"))
    with pytest.warns(UserWarning, match="no keras-xception record"):
        fallback = kx.load_classifier(str(out / "plain.keras"))
    assert fallback.class_names == ("0", "1", "2") and fallback.transform.target_size == (SMALL, SMALL)


def test_early_stopping_stops_and_keeps_the_best_epoch(tree):
    classifier, report = training.train(
        tree, backbone=small_backbone(1), max_epochs=500, patience=2, learning_rate=0.05, **FAST
    )
    head = report["head"]
    losses = head["history"]["val_loss"]
    assert head["stopped_early"] and len(losses) == head["epochs_run"] < 500
    assert head["epochs_run"] == head["best_epoch"] + 2  # stopped `patience` epochs after the best
    # best_epoch is the epoch EarlyStopping restored: the lowest validation loss (any decrease counts)
    assert head["best_epoch"] == int(np.argmin(losses)) + 1 and head["val_loss"] == pytest.approx(min(losses))
    assert head["early_stopping"] == dict(monitor="val_loss", patience=2, min_delta=0.0, restore_best_weights=True)
    # The kept weights are the best epoch's: the model's validation loss is that minimum.
    _, _, vp, vl, _ = folders.class_folder_split(tree, 0.2, seed=1337)
    images = np.stack([kx.load_image(p, classifier.transform) for p in vp])
    probs = classifier.predict(images)
    loss = float(np.mean(-np.log(probs[np.arange(len(vl)), vl])))
    assert loss == pytest.approx(min(losses), rel=1e-4)


@pytest.fixture(scope="module")
def head_only(tmp_path_factory):
    """One head-only run (2 epochs, ``augment=True``, a counting augmentation) on a 2-class tree of 5 images each
    with a truncated JPEG and a text file named .png: shared by the augmentation and the unreadable-files tests.
    Returns a namespace: ``root``, ``truncated``, ``text``, ``report``, ``caught`` (warnings), ``seen`` (counted)."""
    import types

    root = tmp_path_factory.mktemp("with_bad")
    write_synthetic_tree(root, classes=2, per_class=5, sizes=(71, 80))
    truncated = root / "class_0" / "truncated.jpg"
    good = (root / "class_0" / "img_001.jpg").read_bytes()
    truncated.write_bytes(good[: len(good) // 3])
    text = root / "class_1" / "notes.png"
    text.write_text("not an image")
    seen = []
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings(record=True) as caught:
        mp.setattr(training, "augmentation", counting_augmentation(seen, real=False))
        warnings.simplefilter("always")
        _, report = training.train(str(root), backbone=small_backbone(), epochs=2, augment=True, **FAST)
    return types.SimpleNamespace(root=root, truncated=truncated, text=text, report=report, caught=caught, seen=seen)


def test_augmentation_runs_only_in_fine_tuning(trained, head_only):
    _, report, _, seen = trained
    assert sum(seen) == report["num_train"]  # every training image once, in the one fine-tuning epoch
    report = head_only.report  # augment=True without fine-tuning: the augmentation never runs
    assert head_only.seen == [] and report["fine_tune"] is None
    assert report["head"]["epochs_run"] == 2 and not report["head"]["stopped_early"]  # a fixed number of epochs


def test_default_augmentation_layers_are_active_only_in_training():
    aug = training.augmentation(seed=3)
    assert [type(layer).__name__ for layer in aug.layers] == [
        "RandomFlip",
        "RandomRotation",
        "RandomZoom",
        "RandomTranslation",
    ]
    x = np.random.default_rng(0).uniform(0, 255, (2, SMALL, SMALL, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(aug(x, training=False)), x)
    assert np.abs(np.asarray(aug(x, training=True)) - x).max() > 1


def test_class_weight_balanced_and_mixed_precision_head(tmp_path):
    root = tmp_path / "imbalanced"
    write_synthetic_tree(root, classes=2, per_class=10, sizes=(71, 80))
    for p in sorted((root / "class_1").iterdir())[:6]:  # class_1 keeps 4 images: 3 train, 1 val
        p.unlink()
    classifier, report = training.train(
        str(root), backbone=small_backbone(), epochs=2, class_weight="balanced", mixed_precision=True, **FAST
    )
    assert (report["num_train"], report["num_val"]) == (11, 3)
    assert report["class_weights"] == pytest.approx({"class_0": 11 / (2 * 8), "class_1": 11 / (2 * 3)})
    assert report["settings"]["mixed_precision"] in ("mixed_bfloat16", "mixed_float16")
    model = classifier.model
    assert model.output.dtype == "float32"
    assert model.get_layer("head").get_layer("predictions").dtype_policy.name == "float32"
    backbone = kx.find_xception(model)
    assert backbone.get_layer("block1_conv1").compute_dtype in ("bfloat16", "float16")
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def test_bad_input_gives_clear_errors(tree, tmp_path):
    one = tmp_path / "one_class"
    write_synthetic_tree(one, classes=1, per_class=3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        training.train(str(one), backbone=small_backbone(), **FAST)
    empty = tmp_path / "empty_class"
    write_synthetic_tree(empty, classes=2, per_class=3)
    (empty / "class_2").mkdir()
    with pytest.raises(ValueError, match=r"class_2.*has no image files"):
        training.train(str(empty), backbone=small_backbone(), **FAST)
    for kwargs, match in [
        (dict(image_size=64), "image_size.*>= 71"),
        (dict(val_split=0.0), "val_split"),
        (dict(epochs=0), "epochs"),
        (dict(out="model.h5"), r"\.keras"),
        (dict(class_weight="auto"), "class_weight"),
    ]:
        with pytest.raises(ValueError, match=match):
            training.train(tree, backbone=small_backbone(), **{**FAST, **kwargs})
    other = tmp_path / "other_val"
    (other / "class_9").mkdir(parents=True)
    write_synthetic_tree(other / "class_9", classes=1, per_class=1)
    with pytest.raises(ValueError, match=r"class folders that `data_dir` has not: \['class_9'\]"):
        training.train(tree, val_dir=str(other), backbone=small_backbone(), **FAST)
    with pytest.raises(ValueError, match="data_dir"):
        training.train(str(tmp_path / "missing"), **FAST)


def test_unreadable_files_are_reported_by_path_and_reason_and_the_rest_trains(head_only):
    root, truncated, text, report = head_only.root, head_only.truncated, head_only.text, head_only.report
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {str(truncated), str(text)}
    assert "not a JPEG, PNG, GIF or BMP" in skipped[str(text)] and skipped[str(truncated)]
    assert report["num_train"] + report["num_val"] == 10
    messages = " ".join(str(w.message) for w in head_only.caught)
    assert str(truncated) in messages and str(text) in messages
    with pytest.raises(ValueError, match="notes.png|truncated.jpg"):
        training.train(str(root), backbone=small_backbone(), epochs=1, strict=True, **FAST)


def test_evaluate_classifier_on_class_folders(trained, tree, tree_probs):
    classifier, _, out, _ = trained
    from keras_xception.tasks.evaluation import evaluate_classifier

    report = evaluate_classifier(classifier, tree, batch_size=4, verbose=0)
    assert report["count"] == 15 and report["class_names"] == list(classifier.class_names)
    labels = np.repeat([0, 1, 2], 5)
    predicted = tree_probs[1].argmax(1)  # classifier.predict on the 15 images
    assert report["accuracy"] == pytest.approx(np.mean(predicted == labels))
    cm = np.zeros((3, 3), int)
    np.add.at(cm, (labels, predicted), 1)
    assert report["confusion_matrix"] == cm.tolist()


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_agrees_with_the_default(tree, tmp_path):
    """One process with 2 logical CPU devices trains twice (default, then MirroredStrategy) from the same seed.

    It first reproduces the Keras 3.15 failures worked around: ``fit`` under MirroredStrategy fails when
    the first (validation) batch splits unevenly over the replicas (``transfer.even_batch``), while a later
    uneven batch is fine; and, with oneDNN on, when a batch leaves a replica without images
    (``training._one_device_validation``); without oneDNN that case must work.

    Full batches (the 12 training images): the distributed step (each replica's share, the gradients
    summed across replicas, the frozen BatchNormalization; one top block fine-tuned, which keeps the traced
    training step small) must give the single-device numbers; the
    order of the examples inside an epoch, which tf.data may draw differently under a strategy, does
    not enter.
    """
    out = tmp_path / "agree.json"
    code = f"""
import json, sys
sys.path.insert(0, {os.path.join(ROOT, "tests")!r})
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from conftest import randomize, small_xception
from keras_xception import folders, load_image
from keras_xception.tasks import training
paths = folders.list_images({tree!r})
results = {{}}
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])  # one for all: collectives of two would clash
for name, strategy in (("default", "default"), ("mirrored", mirrored)):
    clf, report = training.train({tree!r}, backbone=lambda: randomize(small_xception(include_top=False), seed=0),
        weights=None, image_size=71, batch_size=12, epochs=2, dropout=0.0, fine_tune_epochs=1, fine_tune_blocks=1,
        fine_tune_learning_rate=1e-3, strategy=strategy, verbose=0)
    x = np.stack([load_image(p, clf.transform) for p in paths])
    results[name] = dict(probs=clf.predict(x).tolist(), replicas=report["settings"]["num_replicas"],
                         val_loss=report["head"]["history"]["val_loss"], strategy=report["settings"]["strategy"],
                         tune_loss=report["fine_tune"]["history"]["val_loss"])
# The Keras failures worked around (last: a failed op aborts the process's later collectives):
# a first batch that splits unevenly over the replicas (transfer.even_batch), and a batch that leaves
# a replica without images in a model with convolutions and BatchNormalization (training._one_device_validation),
# which fails only with oneDNN's kernels: TensorFlow's own record of whether they are on (TF_ENABLE_ONEDNN_OPTS,
# else the CPU's default) goes with the results.
from tensorflow.python.util import _pywrap_util_port
results["onednn"] = _pywrap_util_port.IsMklEnabled()
import keras
x4, y4 = np.ones((4, 8, 8, 3), "float32"), np.array([0, 1, 0, 1])
for case, layers, val_batch in (("uneven_first_batch", [], 4), ("empty_replica", [keras.layers.Conv2D(4, 3),
                                keras.layers.BatchNormalization()], 2)):
    with mirrored.scope():
        tiny = keras.Sequential([keras.Input((8, 8, 3)), *layers, keras.layers.GlobalAveragePooling2D(),
                                 keras.layers.Dense(2, activation="softmax")])
        tiny.compile("adam", "sparse_categorical_crossentropy")
    try:  # 3 validation images on 2 replicas: in one batch (2 + 1), or in two (1 + 1, then 1 + 0)
        tiny.fit(x4, y4, batch_size=2, validation_data=(x4[:3], y4[:3]), validation_batch_size=val_batch, verbose=0)
        results[case] = "works"
    except tf.errors.InvalidArgumentError as e:
        results[case] = str(e)
json.dump(results, open({str(out)!r}, "w"))
"""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    # When these fail (the second on a oneDNN machine), Keras has fixed them: transfer.even_batch /
    # training._one_device_validation can go.
    assert "must have the same size and shape" in results["uneven_first_batch"]
    if results["onednn"]:
        assert "Incompatible shapes" in results["empty_replica"]
    else:
        assert results["empty_replica"] == "works"
    assert results["default"]["replicas"] == 1 and results["mirrored"]["replicas"] == 2
    assert results["mirrored"]["strategy"] == "MirroredStrategy"
    np.testing.assert_allclose(results["mirrored"]["val_loss"], results["default"]["val_loss"], rtol=1e-4)
    np.testing.assert_allclose(results["mirrored"]["tune_loss"], results["default"]["tune_loss"], rtol=1e-4)
    assert abs(results["default"]["tune_loss"][0] - results["default"]["val_loss"][-1]) > 1e-6  # fine-tuning moved
    np.testing.assert_allclose(results["mirrored"]["probs"], results["default"]["probs"], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- issue 17: kept epoch, degenerate features, file, progress


def test_untrained_backbone_warns_and_the_kept_epoch_is_the_lowest_loss(tree, tmp_path, monkeypatch):
    """--weights none: pooled features ~1e-5, the validation loss falls by less than 1e-4 an epoch.

    The kept epoch must be the one with the lowest validation loss (in the report, the summary line and
    the curves PNG), and a warning must say why the head cannot learn.
    """
    marked = []
    plot = reports.plot_curves
    monkeypatch.setattr(
        reports, "plot_curves", lambda *a, best=None, **k: marked.append(best) or plot(*a, best=best, **k)
    )
    with pytest.warns(UserWarning, match=r"features barely differ.*pretrained weights"):
        _, report = training.train(tree, max_epochs=4, patience=2, curves_path=str(tmp_path / "curves.png"), **FAST)
    head = report["head"]
    losses = head["history"]["val_loss"]
    assert losses[-1] < losses[0] - 1e-7 and losses[0] - losses[-1] < 1e-3  # it falls, by little
    assert head["best_epoch"] == int(np.argmin(losses)) + 1 and head["best_epoch"] > 1
    assert head["early_stopping"]["min_delta"] == 0.0
    assert f"kept epoch {head['best_epoch']} (lowest val_loss, min_delta 0)" in reports.summary(report)
    assert marked == [head["best_epoch"]]


def test_the_saved_classifier_has_no_optimizer_state(trained_classifier):
    import h5py

    with zipfile.ZipFile(trained_classifier.path) as zf, zf.open("model.weights.h5") as f, h5py.File(f) as h5:
        groups = []
        h5.visit(groups.append)
    assert groups and not [g for g in groups if "optimizer" in g]
    assert trained_classifier.classifier.model.optimizer is not None  # fine-tuning compiled it; the file has none
    assert getattr(kx.load_classifier(trained_classifier.path).model, "optimizer", None) is None


def test_progress_off_a_terminal_has_no_colour_codes_and_lines_do_not_run_together(trained_classifier):
    out = trained_classifier.stdout
    assert "head: " in out and "fine-tuning the top 2 blocks" in out and "3/3 - " in out  # Keras verbose=2
    assert "\x1b[" not in out and "\b" not in out and "\r" not in out
    for line in out.splitlines():  # our lines start lines: none runs into a Keras line
        assert line.startswith(("head: ", "fine-tuning", "3 classes", "Running the")) or (
            "head:" not in line and "fine-tuning" not in line
        ), line
