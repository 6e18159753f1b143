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
