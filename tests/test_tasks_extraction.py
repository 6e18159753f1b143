"""keras_xception.tasks.extraction: feature vectors of image files and folders, equal to running the model
by hand; on a Predictor runtime; unreadable files skipped. (`keras-xception extract` is in test_cli.py.)"""

import numpy as np
import pytest
from conftest import SMALL, rel_diff
from synthetic import write_synthetic_tree

from keras_xception import folders, load_image, preprocess_input
from keras_xception.tasks.extraction import extract_features, pooled_feature_model


def _reference(model, paths, size=SMALL):
    """Features the slow, obvious way: load_image + preprocess_input, model, average pool."""
    x = preprocess_input(np.stack([load_image(p, target_size=(size, size)) for p in paths]))
    return np.asarray(model.predict(x, verbose=0)).mean(axis=(1, 2))


@pytest.fixture(scope="module")
def keras_run(feature_tree, notop):
    """The features of ``feature_tree`` on the Keras model itself (the default runtime), computed once."""
    return extract_features(feature_tree, weights=notop[1], image_size=SMALL, batch_size=4, verbose=0)


def test_extract_features_equal_the_python_api(feature_tree, notop, keras_run):
    model, result = notop[0], keras_run
    assert len(result.paths) == 7 and any("deeper" in p for p in result.paths)
    assert result.paths == folders.list_images(feature_tree) and result.skipped == ()
    assert result.features.shape == (7, 2048) and result.features.dtype == np.float32
    assert rel_diff(result.features, _reference(model, result.paths)) < 1e-5


def test_extract_features_on_a_predictor_runtime(feature_tree, notop, keras_run):
    model, path = notop
    tf_run = extract_features(
        feature_tree, weights=path, image_size=SMALL, batch_size=4, verbose=0, runtime="tensorflow"
    )
    assert tf_run.paths == keras_run.paths
    assert rel_diff(tf_run.features, keras_run.features) < 1e-4


def test_named_layer_is_average_pooled(feature_tree, notop):
    import keras

    model, path = notop
    paths = folders.list_images(feature_tree)[:2]
    result = extract_features(paths, weights=path, layer="block13_add", image_size=SMALL, verbose=0)
    assert result.features.shape == (2, 1024)
    inner = keras.Model(model.inputs, model.get_layer("block13_add").output)
    assert rel_diff(result.features, _reference(inner, paths)) < 1e-5
    with pytest.raises(ValueError, match="no_such_layer.*block14_sepconv2_act"):
        pooled_feature_model(weights=None, layer="no_such_layer", image_size=SMALL)


def test_unreadable_files_are_skipped_with_a_warning(tmp_path, notop):
    write_synthetic_tree(tmp_path, classes=1, per_class=2)
    (tmp_path / "class_0" / "broken.jpg").write_text("no JPEG here")
    good = folders.list_images(tmp_path)
    with pytest.warns(UserWarning, match="broken.jpg"):
        result = extract_features(str(tmp_path), weights=notop[1], image_size=SMALL, verbose=0)
    assert [p for p, _ in result.skipped] == [str(tmp_path / "class_0" / "broken.jpg")]
    assert result.paths == [p for p in good if not p.endswith("broken.jpg")]
    assert result.features.shape[0] == 2


def test_missing_or_empty_sources_are_named(tmp_path):
    """Issue 17: no internal argument name; the folder (or the empty list) is said, before any model is built."""
    with pytest.raises(ValueError, match=f"'{tmp_path / 'nope'}': no such folder"):
        extract_features(str(tmp_path / "nope"), weights=None)
    with pytest.raises(ValueError, match=f"No image files .* under '{tmp_path}'"):
        extract_features(str(tmp_path), weights=None)
    with pytest.raises(ValueError, match="the list of files to read is empty") as e:
        extract_features([], weights=None)
    assert "`source`" not in str(e.value)
