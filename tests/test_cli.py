import json
import os

import pytest

from keras_xception import cli


def test_sample_image_is_shipped_by_an_installed_package():
    assert os.path.isfile(cli.sample_image())


def test_predict_json_with_a_weights_file(tmp_path, capsys):
    import keras_xception as kx

    m = kx.Xception(weights=None)
    w = str(tmp_path / "w.weights.h5")
    m.save_weights(w)
    assert cli.main(["predict", "--weights", w, "--top", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 1 and out[0]["path"] == cli.sample_image()
    preds = out[0]["predictions"]
    assert len(preds) == 3 and preds[0]["score"] >= preds[1]["score"] >= preds[2]["score"]
    assert preds[0]["wnid"].startswith("n")


def test_predict_bad_weights_is_a_clear_error(capsys):
    assert cli.main(["predict", "--weights", "nope"]) == 2
    assert "weights" in capsys.readouterr().err


def test_predict_missing_image():
    with pytest.raises(SystemExit, match="no such file"):
        cli.main(["predict", "/no/such.jpg", "--weights", "imagenet"])


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
    assert cli.main(["weights", "download", "imagenet_notop"]) == 2
    err = capsys.readouterr().err
    assert "b0042744bf5b25fce3cb969f33bebb97" in err and "place it at" in err


def test_weights_convert_and_verify_file(tf_keras_reference, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    _, path = tf_keras_reference
    out = str(tmp_path / "x.weights.h5")
    assert cli.main(["weights", "convert", path, out]) == 0
    assert "include_top=True" in capsys.readouterr().out
    assert cli.main(["weights", "verify", "--file", out, "imagenet"]) == 1  # imagenet is not cached here
    assert "loads into Xception(include_top=True)" in capsys.readouterr().out


def test_classify_example_runs(tmp_path, capsys):
    import keras_xception as kx

    w = str(tmp_path / "w.weights.h5")
    kx.Xception(weights=None).save_weights(w)
    from conftest import load_example

    load_example("classify").main(["--weights", w, "--top", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == cli.sample_image() and len(lines) == 3
