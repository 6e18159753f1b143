"""keras_xception.cli: `train` end to end (full-width backbone weights file at 71 px, a tiny generated tree with
an unreadable file), then `predict/extract/evaluate/export --model` on the trained classifier, and the errors."""

import json
import os

import numpy as np
import pytest
from conftest import SMALL
from synthetic import write_synthetic_tree

from keras_xception import cli


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_train_tree")
    write_synthetic_tree(root, classes=2, per_class=5, sizes=(71, 90))
    (root / "class_1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated JPEG")
    return root


@pytest.fixture(scope="module")
def trained(tree, notop, tmp_path_factory):
    """``keras-xception train`` once; its exit status, output and files (module scope: captured by hand)."""
    out = tmp_path_factory.mktemp("cli_trained")
    model, report = str(out / "pets.keras"), str(out / "report.json")
    import contextlib
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(
            [
                "train",
                str(tree),
                "--out",
                model,
                "--weights",
                notop[1],
                "--image-size",
                str(SMALL),
                "--batch-size",
                "4",
                "--patience",
                "3",
                "--report",
                report,
            ]
        )
    return dict(code=code, out=stdout.getvalue(), err=stderr.getvalue(), model=model, report=report, dir=out)


def test_train_writes_model_plots_and_report_and_names_the_unreadable_file(trained, tree):
    assert trained["code"] == 1, trained["err"]  # done, but one image was skipped
    broken = str(tree / "class_1" / "broken.jpg")
    assert f"keras-xception train: warning: Skipping {broken}: " in trained["err"]
    assert "keras-xception train: 1 of 11 images could not be read" in trained["err"]
    assert "Traceback" not in trained["err"]
    with open(trained["report"]) as f:
        report = json.load(f)
    assert report["class_names"] == ["class_0", "class_1"] and report["num_train"] + report["num_val"] == 10
    assert report["skipped"][0]["path"] == broken and report["skipped"][0]["reason"]
    assert report["head"]["cached_features"] is True and report["head"]["augmentation"] is False
    assert 0 <= report["val_accuracy"] <= 1 and set(report["per_class"]) == {"class_0", "class_1"}
    out = trained["out"]
    assert out.startswith(f"val_accuracy {report['val_accuracy']:.4f}") and "class_1" in out
    for key in ("model", "curves", "confusion_matrix", "report"):
        assert os.path.isfile(report["outputs"][key]) and report["outputs"][key] in out
    assert "head: " in trained["err"] and "kept epoch" in trained["err"]  # progress on standard error


def test_predict_with_the_model_prints_its_class_names(trained, tree, capsys):
    image = str(tree / "class_0" / "img_000.png")
    assert cli.main(["predict", image, "--model", trained["model"], "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == image and len(lines) == 3
    assert {line.split()[1] for line in lines[1:]} == {"class_0", "class_1"}
    assert cli.main(["predict", str(tree / "class_1"), "--model", trained["model"], "--json"]) == 1  # broken.jpg
    out = json.loads(capsys.readouterr().out)
    good = [r for r in out if "predictions" in r]
    assert len(good) == 5 and [r for r in out if "error" in r][0]["path"].endswith("broken.jpg")
    scores = good[0]["predictions"]
    assert [p["name"] for p in scores] in (["class_0", "class_1"], ["class_1", "class_0"])
    assert abs(sum(p["score"] for p in scores) - 1) < 1e-5


def test_evaluate_with_the_model_reports_accuracy_per_class_and_confusion_matrix(trained, tree, tmp_path, capsys):
    report_path = str(tmp_path / "eval.json")
    code = cli.main(["evaluate", "--model", trained["model"], "--val-dir", str(tree), "--report", report_path])
    assert code == 1  # the broken file, skipped and counted
    out = capsys.readouterr().out
    with open(report_path) as f:
        report = json.load(f)
    assert report["count"] == 10 and len(report["skipped"]) == 1
    cm = np.array(report["confusion_matrix"])
    assert cm.sum() == 10 and report["accuracy"] == pytest.approx(np.trace(cm) / 10)
    assert out.startswith(f"accuracy {100 * report['accuracy']:.2f}%") and "confusion matrix" in out
    assert set(report["per_class"]) == {"class_0", "class_1"}


def test_extract_with_the_model_gives_its_backbone_features(trained, tree, tmp_path, capsys):
    out = str(tmp_path / "f.npz")
    assert cli.main(["extract", str(tree / "class_0"), "--model", trained["model"], "--out", out]) == 0
    data = np.load(out)
    assert data["features"].shape == (5, 2048) and len(data["paths"]) == 5


@pytest.mark.slow
def test_export_with_the_model_writes_the_transform_and_class_names(trained, tmp_path, capsys):
    out = str(tmp_path / "sm")
    # --no-check: the CLI's export checked against the model it wrote is test_cli.py's test_cli_export_savedmodel
    argv = ["export", "--model", trained["model"], "--format", "savedmodel", "--out", out, "--no-check"]
    assert cli.main(argv) == 0
    from keras_xception.data.metadata import read_record

    record = read_record(out)
    assert record.class_names == ("class_0", "class_1")
    assert record.transform.exif_orientation is True and record.transform.preprocessing is None


@pytest.mark.parametrize(
    "make, argv, message",
    [
        ("one_class", [], "at least 2 classes"),
        ("empty_class", [], "class_2' has no image files"),
        ("ok", ["--image-size", "64"], "--image-size: expected an integer >= 71"),
        ("ok", ["--augment"], "--augment applies to fine-tuning only"),
        ("ok", ["--val-split", "1"], "--val-split: expected a number in (0, 1)"),
        ("ok", ["--epochs", "none"], "--epochs: expected a positive integer"),
        ("ok", ["--out", "model.h5"], "--out must be a .keras file"),
    ],
)
def test_train_bad_input_is_a_clear_usage_error(make, argv, message, tmp_path, capsys):
    root = tmp_path / make
    write_synthetic_tree(root, classes=1 if make == "one_class" else 2, per_class=2)
    if make == "empty_class":
        (root / "class_2").mkdir()
    argv = ["train", str(root), "--out", str(tmp_path / "m.keras"), "--weights", "none", *argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_model_option_errors(trained, tmp_path, capsys):
    assert cli.main(["predict", "--model", trained["model"], "--weights", "none"]) == 2
    assert "--weights cannot be combined with --model" in capsys.readouterr().err
    assert cli.main(["evaluate", "--model", trained["model"], "--tfrecords", "x-*"]) == 2
    assert "evaluate --model needs --val-dir" in capsys.readouterr().err
    assert cli.main(["predict", "--model", str(tmp_path / "missing.keras")]) == 2
    assert "No model file" in capsys.readouterr().err
