"""keras_xception.cli: manners (usage errors before TensorFlow, no TensorFlow log lines, exit codes, messages),
the bad-input policy shared by predict, extract and evaluate, and each command (predict, extract, evaluate,
weights, summary, export) against the Python API it runs. One ImageNet weights file and one small classifier
file serve the module; commands run in-process through ``cli.main`` unless a process is what is tested."""

import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from conftest import SMALL, N, counts, numpy_hits, official_macs_by_hand, rel_diff, small_xception, val_name
from eval_worker import favour
from synthetic import write_synthetic_tree

import keras_xception as kx
from keras_xception import cli
from keras_xception.tasks.extraction import extract_features

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _run(args, user=None, **env):
    return subprocess.run(
        [sys.executable, "-m", "keras_xception", *args],
        capture_output=True,
        text=True,
        env=_env(**env),
        user=user,
        timeout=300,
    )


@pytest.fixture(scope="module")
def imagenet_classifier(val, tmp_path_factory):
    """The full 1000-class Xception at 71x71 (random weights, its classifier favouring the classes of conftest's
    ``val``) and its weights file: what `predict --weights` and `evaluate --weights` need."""
    model = favour(kx.Xception(weights=None, input_shape=(SMALL, SMALL, 3)), val.labels, seed=2)
    path = str(tmp_path_factory.mktemp("imagenet") / "x71.weights.h5")
    model.save_weights(path)
    return model, path


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    """One small classifier file (the small Xception and a 2-class head, as `train` writes it) for ``--model``."""
    from keras_xception.data.transform import resolve_transform
    from keras_xception.tasks.classifier import save_classifier
    from keras_xception.tasks.transfer import build_classifier

    model = build_classifier(2, backbone=small_xception(include_top=False))
    path = str(tmp_path_factory.mktemp("classifier") / "small.keras")
    return save_classifier(model, path, ["cat", "dog"], resolve_transform(None, model=model, exif_orientation=True))


def test_sample_image_is_shipped_by_an_installed_package():
    assert os.path.isfile(cli.sample_image())


@pytest.mark.slow
def test_help_and_usage_errors_answer_before_tensorflow(tmp_path):
    """--help and every usage error that needs no model: answered in our words, TensorFlow never imported."""
    empty, one_class, two_classes, model = tmp_path / "empty", tmp_path / "one", tmp_path / "two", tmp_path / "m.keras"
    empty.mkdir()
    for folder in (one_class / "class_0", two_classes / "class_0", two_classes / "class_1"):
        folder.mkdir(parents=True)
        (folder / "a.jpg").write_bytes(b"\xff\xd8\xff")
    model.write_bytes(b"not read before TensorFlow")
    out_npz = str(tmp_path / "f.npz")
    runs = [
        ["--help"],
        ["predict", "--help"],
        ["weights", "list"],
        ["extract", "--top", "3"],
        ["predict", str(tmp_path / "nope.jpg")],
        ["predict", str(empty)],
        ["extract", str(empty), "--out", out_npz],
        ["extract", str(tmp_path / "nope"), "--out", out_npz],
        ["predict", "--model", str(tmp_path / "missing.keras")],
        ["predict", "--model", str(model), "--weights", "none"],
        ["evaluate", "--model", str(model), "--val-dir", str(tmp_path / "nope")],
        ["train", str(one_class), "--out", str(tmp_path / "t.keras")],
        ["train", str(two_classes), "--out", str(tmp_path / "t.keras"), "--augment"],
        ["extract", str(one_class), "--out", str(tmp_path / "no" / "f.npz")],
        ["extract", str(one_class), "--out", out_npz, "--precision", "int8"],
        ["export", "--format", "onnx", "--out", str(tmp_path / "m.txt")],
        ["predict", "--weights", "no_such_weights"],
    ]
    code = (
        "import sys; from keras_xception.cli import main; "
        f"codes = [main(a) for a in {runs!r}]; "
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'h5py'}); "
        "print(codes, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert out.stdout.strip().splitlines()[-1] == f"{[0, 0, 0] + [2] * (len(runs) - 3)} []", out.stderr
    err = out.stderr
    assert "usage: keras-xception extract" in err
    assert "classes per image (default: 5)" in out.stdout  # argparse shows the defaults
    for message in (
        f"predict: error: No such file or folder: '{tmp_path / 'nope.jpg'}'.\n",
        f"predict: error: No image files under '{empty}': the folder is empty.\n",
        f"extract: error: No image files under '{empty}' (INPUT): the folder is empty.\n",
        "extract: error: INPUT must be a folder of images, a .txt or .parquet list or TFRecord files",
        "predict: error: No model file at",
        "predict: error: --weights cannot be combined with --model",
        "evaluate: error: --val-dir must be an existing folder of images",
        "train: error: DATA_DIR",  # one class: at least 2 needed
        "train: error: --augment applies to fine-tuning only",
        "extract: error: --out: the folder",
        "extract: error: --precision int8 needs --calibration DIR",
        "export: error: With format='onnx' the path must end with '.onnx'",
        "predict: error: --weights must be a registered weight set",
    ):
        assert "keras-xception " + message in err, (message, err)
    assert "at least 2 classes" in err and "image '" not in err and "skipped: [" not in err


def test_model_is_a_model_source_of_every_model_command(tmp_path, capsys):
    """``--model`` on predict, extract, evaluate, export and quantize; the --weights model's options refused."""
    model, tree = tmp_path / "m.keras", tmp_path / "tree"
    model.write_bytes(b"checked before it is read")
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "x.jpg").write_bytes(b"\xff\xd8\xff")
    for argv, refused in (
        (["predict", "--cam", str(tmp_path / "c.png")], "--cam"),
        (["extract", str(tree), "--out", str(tmp_path / "f.npz"), "--image-size", "71"], "--image-size"),
        (["evaluate", "--val-dir", str(tree), "--limit", "3"], "--limit"),
        (["export", "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--no-top"], "--include-top"),
        (["quantize", "--holdout", str(tree), "--features", "--precision", "bf16"], "--features"),
    ):
        assert cli.main([*argv, "--model", str(model)]) == 2
        assert f"error: {refused} cannot be combined with --model" in capsys.readouterr().err
        assert cli.build_parser().parse_args([*argv, "--model", str(model)]).model == str(model)
    assert cli.main(["evaluate", "--model", str(model), "--tfrecords", "x-*"]) == 2
    assert "evaluate --model needs --val-dir" in capsys.readouterr().err


def test_tensorflow_log_lines_are_dropped_below_the_level():
    from keras_xception.cli import _below

    info = "I0000 00:00:1796104709.104427   11757 port.cc:153] oneDNN custom operations are on."
    error = "E0000 00:00:1796104422.455645    8308 jpeg_mem.cc:331] Premature end of JPEG data."
    notice = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
    assert _below(info, 3) and _below(error, 3) and _below(notice, 3) and not _below(error, 2)
    assert not any(_below(line, 0) for line in (info, error, notice))
    assert not _below("Traceback (most recent call last):", 3) and not _below("F0000 00:00:1.0 1 a.cc:1] x", 3)


@pytest.mark.slow
def test_predict_says_nothing_on_stderr_but_the_progress_bar_and_a_truncated_jpeg_once(tmp_path, classifier_file):
    """No TensorFlow log line (start-up, oneDNN, JPEG decoder) and no colour code; a truncated JPEG said once."""
    good, truncated = tmp_path / "good.jpg", tmp_path / "truncated.jpg"
    with open(cli.sample_image(), "rb") as f:
        data = f.read()
    good.write_bytes(data)
    truncated.write_bytes(data[: len(data) // 3])
    out = _run(["predict", "--model", classifier_file, "--top", "1", str(good), str(truncated)])  # the small model
    assert out.returncode == 1, out.stderr
    lines = out.stderr.splitlines()
    # The run warns as it meets the file; the one-line bar closes when every image is through the model.
    assert len(lines) == 3 and re.fullmatch(r"2/2 - \S+ - \S+/image", lines[1]), out.stderr
    assert lines[0].startswith("keras-xception predict: warning: Skipping ") and str(truncated) in lines[0]
    assert lines[2] == "keras-xception predict: 1 of 2 images could not be read and were skipped (listed above)."
    assert out.stderr.count(str(truncated)) == 1 and "\x1b[" not in out.stderr + out.stdout
    assert out.stdout.splitlines()[0] == str(good)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A good JPEG, a file that is not an image, and the path of a file that does not exist."""
    import shutil

    d = tmp_path_factory.mktemp("photos")
    good = str(d / "good.jpg")
    shutil.copy(cli.sample_image(), good)
    (d / "broken.jpg").write_text("not an image")
    return good, str(d / "broken.jpg"), str(d / "missing.jpg")


@pytest.mark.slow
def test_predict_processes_the_good_images_names_the_bad_and_exits_1(photos, classifier_file, capsys):
    good, broken, missing = photos
    assert cli.main(["predict", good, broken, missing, "--model", classifier_file, "--top", "2", "--json"]) == 1
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert [r["path"] for r in out] == [good, broken, missing]
    assert len(out[0]["predictions"]) == 2 and "error" not in out[0]
    assert "Unknown image file format" in out[1]["error"] and "No such file" in out[2]["error"]
    err = captured.err
    assert f"keras-xception predict: warning: Skipping {broken}: " in err
    assert "keras-xception predict: 2 of 3 images could not be read" in err
    assert ".py:" not in err  # warnings without the caller's source line
    assert f"keras-xception predict: warning: Skipping {missing}: No such file or folder" in err
    assert err.count(missing) == 1 and "[(" not in err and "('" not in err  # said once, no Python repr


@pytest.mark.slow
def test_predict_strict_stops_at_the_first_bad_image(photos, classifier_file, capsys):
    good, broken, missing = photos
    assert cli.main(["predict", good, missing, "--model", classifier_file, "--strict"]) == 2
    assert f"No such file or folder: '{missing}'" in capsys.readouterr().err
    assert cli.main(["predict", good, broken, "--model", classifier_file, "--strict"]) == 2
    err = capsys.readouterr().err
    assert f"keras-xception predict: error: Cannot read {broken}: " in err


def test_predict_bad_weights_is_a_clear_error(capsys):
    assert cli.main(["predict", "--weights", "nope"]) == 2
    err = capsys.readouterr().err
    assert "keras-xception predict: error:" in err and "weights" in err and "Traceback" not in err


def test_predict_with_a_backbone_file_says_what_to_use_instead(tmp_path, capsys):

    path = str(tmp_path / "notop.weights.h5")
    small_xception(include_top=False).save_weights(path)
    assert cli.main(["predict", "--weights", path]) == 2
    err = capsys.readouterr().err
    assert "holds no classifier" in err and "keras-xception extract" in err and "build_classifier" in err


@pytest.mark.parametrize(
    "command",
    [
        ["predict"],
        ["extract", "d", "--out", "f.npz"],
        ["evaluate", "--val-dir", "d"],
        ["export", "--format", "onnx", "--out", "m.onnx"],
    ],
)
@pytest.mark.parametrize("spelling", ["none", "None", "NONE"])
def test_weights_none_means_random_weights_everywhere(command, spelling):
    args = cli.build_parser().parse_args(command + ["--weights", spelling])
    assert args.weights is None


def test_extract_with_weights_none_runs(tmp_path, capsys):

    write_synthetic_tree(tmp_path / "tree", classes=1, per_class=2)
    out = str(tmp_path / "f.npz")
    argv = ["extract", str(tmp_path / "tree"), "--out", out, "--weights", "none", "--image-size", "71"]
    assert cli.main(argv) == 0
    assert np.load(out)["features"].shape == (2, 2048)


def test_weights_list_json(capsys):
    assert cli.main(["weights", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["imagenet"]["file_hash"] == "0a58e3b7378bc2990ea3b43d5981f1f6"
    assert "cached" in rows["imagenet_notop"]


def test_weights_verify_missing_and_download_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_XCEPTION_WEIGHTS_MIRROR", "http://127.0.0.1:9")  # nothing listens there
    assert cli.main(["weights", "verify", "imagenet"]) == 1
    assert "MISSING" in capsys.readouterr().out
    assert cli.main(["weights", "download", "imagenet_notop"]) == 1  # a failure, not a usage error
    err = capsys.readouterr().err
    assert "b0042744bf5b25fce3cb969f33bebb97" in err and "place it at" in err
    assert os.listdir(tmp_path / "models") == []  # no partial file, no lock file


@pytest.mark.slow
def test_weights_convert_and_verify_file(tf_keras_reference, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    _, path = tf_keras_reference
    out = str(tmp_path / "x.weights.h5")
    assert cli.main(["weights", "convert", path, out]) == 0
    assert "include_top=True" in capsys.readouterr().out
    # A good file verifies with exit 0 and nothing else is checked (imagenet is not cached here).
    assert cli.main(["weights", "verify", "--file", out]) == 0
    printed = capsys.readouterr().out
    assert "loads into Xception(include_top=True)" in printed and "MISSING" not in printed
    assert cli.main(["weights", "verify", "--file", out, "imagenet"]) == 1  # asked for: checked


# --------------------------------------------------------------------------- predict --runtime, --cam (299x299)


@pytest.mark.slow
def test_cli_predict_runtime_matches_keras_and_cam_writes_a_png(imagenet_classifier, tmp_path, capsys):
    """One keras run with --cam (the heatmaps PNG, the predictions kept) against the tensorflow runtime."""
    w, cam = imagenet_classifier[1], str(tmp_path / "cam.png")  # (the file's weights at 299x299)
    results = {}
    for runtime, extra in (("keras", ["--cam", cam]), ("tensorflow", [])):
        assert cli.main(["predict", "--weights", w, "--top", "3", "--json", "--runtime", runtime, *extra]) == 0
        results[runtime] = json.loads(capsys.readouterr().out)[0]["predictions"]
    assert len(results["keras"]) == 3
    assert [p["wnid"] for p in results["keras"]] == [p["wnid"] for p in results["tensorflow"]]
    np.testing.assert_allclose(
        [p["score"] for p in results["tensorflow"]], [p["score"] for p in results["keras"]], rtol=1e-4
    )
    with open(cam, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(cam).shape[2] in (3, 4)
    assert cli.main(["predict", "--runtime", "tensorrt"]) == 2
    assert cli.main(["predict", "--weights", w, "--cam", str(tmp_path / "no" / "cam.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------- extract


def test_extract_cli_writes_the_npz_of_the_python_api(feature_tree, notop, tmp_path, capsys):
    out = str(tmp_path / "f.npz")
    argv = [
        "extract",
        feature_tree,
        "--out",
        out,
        "--weights",
        notop[1],
        "--image-size",
        str(SMALL),
        "--batch-size",
        "3",
    ]
    assert cli.main(argv) == 0
    data = np.load(out)  # no pickle needed
    assert set(data.files) == {"features", "paths", "skipped"}
    api = extract_features(feature_tree, weights=notop[1], image_size=SMALL, verbose=0)
    assert data["features"].dtype == np.float32 and data["features"].shape == (7, 2048)
    assert data["paths"].tolist() == api.paths and data["skipped"].size == 0
    assert rel_diff(data["features"], api.features) < 1e-6
    assert "7 images" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--image-size", "40"], "--image-size"),
        (["--batch-size", "0"], "batch-size"),
        (["--layer", "nope"], "layer"),
        (["--weights", "no_such_weights"], "weights"),
    ],
)
def test_extract_cli_bad_arguments(feature_tree, notop, tmp_path, capsys, extra, message):
    argv = ["extract", feature_tree, "--out", str(tmp_path / "f.npz"), "--weights", notop[1]] + extra
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_extract_cli_bad_paths(tmp_path, capsys):
    assert cli.main(["extract", str(tmp_path / "missing"), "--out", str(tmp_path / "f.npz")]) == 2
    assert "INPUT must be" in capsys.readouterr().err
    assert cli.main(["extract", str(tmp_path), "--out", str(tmp_path / "f.npz"), "--weights", "imagenet"]) == 2
    assert "No image files" in capsys.readouterr().err
    assert cli.main(["extract", str(tmp_path), "--out", str(tmp_path / "no" / "f.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------- evaluate (conftest: val, bad_dir)


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


def test_cli_evaluate(imagenet_classifier, bad_dir, tmp_path, capsys):
    model, weights = imagenet_classifier
    out = tmp_path / "report.json"
    options = f"--image-size 71 --batch-size 4 --limit {N + 4} --crop-pct 0.9 --resize-mode shorter-side"
    argv = ["evaluate", "--val-dir", bad_dir.dir, "--weights", weights, *options.split()]
    argv += ["--interpolation", "bicubic", "--report", str(out)]
    assert cli.main(argv) == 1  # done in part: one image skipped
    captured = capsys.readouterr()
    err = captured.err
    assert "top-1" in captured.out
    assert f"keras-xception evaluate: warning: Skipping {os.path.join(bad_dir.dir, val_name(N + 4))}" in err
    assert "keras-xception evaluate: 1 of 16 images could not be read" in err
    report = json.loads(out.read_text())
    assert {"top1", "top5", "count", "skipped", "transform", "images_per_second", "elapsed_seconds"} <= set(report)
    assert report["transform"] == dict(
        target_size=[71, 71],
        crop_fraction=0.9,
        resize_mode="shorter-side",
        interpolation="bicubic",
        preprocessing="tf",
        exif_orientation=False,  # the ImageNet protocol: the stored pixels
    )
    assert report["count"] == N + 3 and [os.path.basename(s["name"]) for s in report["skipped"]] == [val_name(N + 4)]
    t = kx.resolve_transform(
        weights, target_size=(71, 71), crop_fraction=0.9, resize_mode="shorter-side", interpolation="bicubic"
    )
    assert counts(report) == numpy_hits(model, bad_dir.dir, t)
    assert cli.main(argv + ["--strict"]) == 2
    assert val_name(N + 4) in capsys.readouterr().err


# --------------------------------------------------------------------------- summary


@pytest.mark.slow
def test_cli_summary_json(capsys):
    import json

    from keras_xception import cli

    assert cli.main(["summary", "--size", "299", "--output-stride", "16", "--no-top", "--layers", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "output_stride=16" and row["input_shape"] == [None, 299, 299, 3]
    assert row["macs"] == official_macs_by_hand(output_stride=16, top=False)
    assert row["params"] == 20_861_480
    assert sum(layer["macs"] for layer in row["layers"]) == row["macs"]


def test_cli_summary_table_and_errors(capsys):
    from keras_xception import cli

    assert cli.main(["summary", "--size", "80", "--no-residual", "--intermediate-activation", "elu"]) == 0
    out = capsys.readouterr().out
    assert "residual=False, intermediate_activation=elu" in out and "80x80x3" in out and "GMACs" in out
    assert "official" not in out
    assert cli.main(["summary", "--size", "50"]) == 2
    assert "--size" in capsys.readouterr().err
    assert cli.main(["summary", "--size", "80", "--width-multiplier", "-1"]) == 2
    assert "width_multiplier" in capsys.readouterr().err


# --------------------------------------------------------------------------- export


def test_cli_export_savedmodel(tmp_path, capsys):
    import tensorflow as tf

    out = str(tmp_path / "features")
    argv = [
        "export",
        "--format",
        "savedmodel",
        "--out",
        out,
        "--weights",
        "none",
        "--image-size",
        str(SMALL),
        "--no-top",
    ]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.strip() == out
    loaded = tf.saved_model.load(out)
    y = loaded.serve(tf.zeros((1, SMALL, SMALL, 3)))
    assert tuple(y.shape) == (1, 2048)  # --pooling avg by default
    from keras_xception.data.metadata import read_record

    assert read_record(out).transform.target_size == (SMALL, SMALL)  # the transform of --image-size


@pytest.mark.slow
def test_cli_export_errors(tmp_path, capsys):
    assert cli.main(["export", "--format", "onnx", "--out", str(tmp_path / "m.txt"), "--weights", "none"]) == 2
    assert "must end with '.onnx'" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "export",
                "--format",
                "savedmodel",
                "--out",
                str(tmp_path / "m"),
                "--weights",
                "none",
                "--image-size",
                "50",
            ]
        )
        == 2
    )
    assert "--image-size" in capsys.readouterr().err
    assert cli.main(["export", "--format", "tflite", "--out", str(tmp_path / "m")]) == 2


# --------------------------------------------------------------------------- unreadable inputs
# File permissions do not bind root: as root, the command runs without the capabilities that
# override them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH dropped from its bounding set).


@pytest.fixture(scope="module")
def locked_tree():
    """A class tree with an unreadable image and an unreadable class folder, readable by everyone else."""

    root = tempfile.mkdtemp(prefix="kx-locked-")
    os.chmod(root, 0o755)
    tree = os.path.join(root, "tree")
    write_synthetic_tree(tree, classes=3, per_class=2, formats=("jpg",))
    for dirpath, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(dirpath, name), 0o755)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)
    home = os.path.join(root, "home")
    os.makedirs(home)
    os.chmod(home, 0o777)
    locked_file = os.path.join(tree, "class_0", "img_000.jpg")
    locked_dir = os.path.join(tree, "class_2")
    os.chmod(locked_file, 0)
    os.chmod(locked_dir, 0)
    yield tree, locked_file, locked_dir, home
    os.chmod(locked_dir, 0o755)
    import shutil

    shutil.rmtree(root)


def _drop_file_permission_override():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH; prctl(PR_CAPBSET_DROP)
        if libc.prctl(24, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


#: The unreadable-input commands, run one after the other by one process that file permissions bind (TensorFlow
#: starts once): ``{name: argv}`` with the ``locked_tree`` paths filled in.
_UNREADABLE = {
    "folder_extract": ["extract", "{locked_dir}", "--out", "{home}/g.npz", "--weights", "none"],
    "folder_evaluate": ["evaluate", "--val-dir", "{locked_dir}", "--weights", "none"],
    "extract": ["extract", "{tree}", "--out", "{home}/f.npz", "--model", "{model}"],  # the small backbone
    "predict": ["predict", "{tree}/class_1/img_000.jpg", "{locked_file}", "--model", "{model}"],
}

#: The child: each command through ``cli.main``, its exit status on standard output, a marker line after each
#: command on both streams.
_UNPRIVILEGED_CHILD = """
import json, sys
from keras_xception.cli import main
for name, argv in json.loads(sys.argv[1]).items():
    code = main(argv)
    print(f"@@@ {name} {code}", flush=True)
    print(f"@@@ {name}", file=sys.stderr, flush=True)
"""


@pytest.fixture(scope="module")
def unprivileged(locked_tree, classifier_file):
    """:data:`_UNREADABLE` run by one process that file permissions bind (as root: without the capabilities that
    override them): ``{name: (exit status, stdout, stderr)}``."""
    tree, locked_file, locked_dir, home = locked_tree
    paths = dict(tree=tree, locked_file=locked_file, locked_dir=locked_dir, home=home, model=classifier_file)
    commands = {name: [a.format(**paths) for a in argv] for name, argv in _UNREADABLE.items()}
    env = _env(KERAS_HOME=home, MPLCONFIGDIR=home)
    preexec = _drop_file_permission_override if os.geteuid() == 0 else None
    try:
        probe = subprocess.run(
            [sys.executable, "-c", f"open({locked_file!r})"],
            capture_output=True,
            env=env,
            preexec_fn=preexec,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot run a process that file permissions bind here: {e}")
    if b"PermissionError" not in probe.stderr:
        pytest.skip("file permissions do not bind processes here")
    run = subprocess.run(
        [sys.executable, "-c", _UNPRIVILEGED_CHILD, json.dumps(commands)],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=preexec,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    results, out, err = {}, run.stdout, run.stderr
    for name in commands:
        out_part, out = out.split(f"@@@ {name} ", 1)
        code, out = out.split("\n", 1)
        err_part, err = err.split(f"@@@ {name}\n", 1)
        results[name] = (int(code), out_part, err_part)
    return results


@pytest.mark.slow
def test_extract_reports_unreadable_files_and_folders(locked_tree, unprivileged):
    tree, locked_file, locked_dir, home = locked_tree
    code, _, err = unprivileged["extract"]
    assert code == 1, err
    assert f"Skipping {locked_file}: Permission denied" in err
    assert f"Skipping {locked_dir}: Permission denied" in err
    assert "2 of 5 images or folders could not be read" in err
    assert "Traceback" not in err
    saved = np.load(os.path.join(home, "f.npz"))
    assert saved["features"].shape[0] == 3 and sorted(saved["skipped"].tolist()) == sorted([locked_file, locked_dir])


@pytest.mark.slow
def test_predict_reports_an_unreadable_image(locked_tree, unprivileged):
    tree, locked_file, _, home = locked_tree
    good = os.path.join(tree, "class_1", "img_000.jpg")
    code, out, err = unprivileged["predict"]
    assert code == 1, err
    assert f"Skipping {locked_file}: " in err and "Permission denied" in err
    assert good in out and "Traceback" not in err


@pytest.mark.slow
def test_unreadable_folders_are_clear_errors(locked_tree, unprivileged):
    _, _, locked_dir, home = locked_tree
    for name in ("folder_extract", "folder_evaluate"):
        code, _, err = unprivileged[name]
        assert code == 2, err
        assert f"Cannot read the folder '{locked_dir}': Permission denied" in err
        assert "Traceback" not in err
