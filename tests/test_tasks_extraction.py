"""Feature extraction (Python API and `keras-xception extract`); Grad-CAM is in test_gradcam.py."""

import numpy as np
import pytest
from conftest import SMALL, rel_diff

from keras_xception import cli, folders, load_image, preprocess_input  # noqa: E402
from keras_xception.tasks.extraction import extract_features, pooled_feature_model  # noqa: E402


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("ftree")
    folders.write_synthetic_tree(root, classes=2, per_class=3, sizes=(71, 96))
    nested = root / "class_1" / "deeper"
    nested.mkdir()
    folders.write_synthetic_tree(nested, classes=1, per_class=1, seed=5)  # class_0/img_000.png, recursive
    (root / "README.txt").write_text("not an image and not an image extension: ignored")
    return str(root)


@pytest.fixture(scope="module")
def notop(notop_reference):
    return notop_reference


def _reference(model, paths, size=SMALL):
    """Features the slow, obvious way: load_image + preprocess_input, model, average pool."""
    x = preprocess_input(np.stack([load_image(p, target_size=(size, size)) for p in paths]))
    return np.asarray(model.predict(x, verbose=0)).mean(axis=(1, 2))


def test_extract_features_equal_the_python_api(tree, notop):
    model, path = notop
    result = extract_features(tree, weights=path, image_size=SMALL, batch_size=4, verbose=0)
    assert len(result.paths) == 7 and any("deeper" in p for p in result.paths)
    assert result.paths == folders.list_images(tree) and result.skipped == []
    assert result.features.shape == (7, 2048) and result.features.dtype == np.float32
    assert rel_diff(result.features, _reference(model, result.paths)) < 1e-5


def test_extract_features_on_a_predictor_runtime(tree, notop):
    model, path = notop
    keras_run = extract_features(tree, weights=path, image_size=SMALL, batch_size=4, verbose=0)
    tf_run = extract_features(tree, weights=path, image_size=SMALL, batch_size=4, verbose=0, runtime="tensorflow")
    assert tf_run.paths == keras_run.paths
    assert rel_diff(tf_run.features, keras_run.features) < 1e-4


def test_named_layer_is_average_pooled(tree, notop):
    import keras

    model, path = notop
    paths = folders.list_images(tree)[:2]
    result = extract_features(paths, weights=path, layer="block13_add", image_size=SMALL, verbose=0)
    assert result.features.shape == (2, 1024)
    inner = keras.Model(model.inputs, model.get_layer("block13_add").output)
    assert rel_diff(result.features, _reference(inner, paths)) < 1e-5
    with pytest.raises(ValueError, match="no_such_layer.*block14_sepconv2_act"):
        pooled_feature_model(weights=None, layer="no_such_layer", image_size=SMALL)


def test_unreadable_files_are_skipped_with_a_warning(tmp_path, notop):
    folders.write_synthetic_tree(tmp_path, classes=1, per_class=2)
    (tmp_path / "class_0" / "broken.jpg").write_text("no JPEG here")
    good = folders.list_images(tmp_path)
    with pytest.warns(UserWarning, match="broken.jpg"):
        result = extract_features(str(tmp_path), weights=notop[1], image_size=SMALL, verbose=0)
    assert [p for p, _ in result.skipped] == [str(tmp_path / "class_0" / "broken.jpg")]
    assert result.paths == [p for p in good if not p.endswith("broken.jpg")]
    assert result.features.shape[0] == 2


def test_extract_cli_writes_the_npz_of_the_python_api(tree, notop, tmp_path, capsys):
    out = str(tmp_path / "f.npz")
    argv = ["extract", tree, "--out", out, "--weights", notop[1], "--image-size", str(SMALL), "--batch-size", "3"]
    assert cli.main(argv) == 0
    data = np.load(out)  # no pickle needed
    assert set(data.files) == {"features", "paths", "skipped"}
    api = extract_features(tree, weights=notop[1], image_size=SMALL, verbose=0)
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
def test_extract_cli_bad_arguments(tree, notop, tmp_path, capsys, extra, message):
    argv = ["extract", tree, "--out", str(tmp_path / "f.npz"), "--weights", notop[1]] + extra
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_extract_cli_bad_paths(tmp_path, capsys):
    assert cli.main(["extract", str(tmp_path / "missing"), "--out", str(tmp_path / "f.npz")]) == 2
    assert "DIR" in capsys.readouterr().err
    assert cli.main(["extract", str(tmp_path), "--out", str(tmp_path / "f.npz"), "--weights", "imagenet"]) == 2
    assert "No image files" in capsys.readouterr().err
    assert cli.main(["extract", str(tmp_path), "--out", str(tmp_path / "no" / "f.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
