"""Shared fixtures: small reference models with random weights and the files they write."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

SMALL = 71  # the smallest input Xception accepts: keeps the suite fast


def randomize(model, seed=0):
    """Give every BatchNormalization random statistics (kernels keep their random init).

    With Keras's default BN state (mean 0, variance 1, gamma 1, beta 0) a swapped
    pair of BN layers would go unnoticed; random statistics make every layer count.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                    rng.normal(0, 0.2, beta.shape).astype("float32"),
                    rng.normal(0, 0.2, mean.shape).astype("float32"),
                    rng.uniform(0.5, 1.5, var.shape).astype("float32"),
                ]
            )
        elif type(layer).__name__ == "Dense":
            k, b = layer.get_weights()
            layer.set_weights([k, rng.normal(0, 0.1, b.shape).astype("float32")])
    return model


def rel_diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


@pytest.fixture(scope="session")
def images():
    """Two random 71x71 RGB images in [0, 255]."""
    return np.random.default_rng(1).uniform(0, 255, (2, SMALL, SMALL, 3)).astype("float32")


@pytest.fixture(scope="session")
def keras_reference(tmp_path_factory):
    """keras.applications.Xception (top, logits) with random weights, and files it wrote."""
    import keras

    d = tmp_path_factory.mktemp("keras_ref")
    model = keras.applications.Xception(weights=None, input_shape=(SMALL, SMALL, 3), classifier_activation=None)
    randomize(model, seed=2)
    path = str(d / "ref.weights.h5")
    model.save_weights(path)
    keras_path = str(d / "ref.keras")
    model.save(keras_path)
    return model, path, keras_path


@pytest.fixture(scope="session")
def tf_keras_reference(tmp_path_factory):
    """tf_keras.applications.Xception (no top) with random weights, saved as legacy HDF5."""
    tf_keras = pytest.importorskip("tf_keras")
    d = tmp_path_factory.mktemp("tf_keras_ref")
    model = tf_keras.applications.Xception(
        weights=None, include_top=True, input_shape=(SMALL, SMALL, 3), classifier_activation=None
    )
    randomize(model, seed=3)
    path = str(d / "ref_legacy.h5")
    model.save_weights(path)  # the Keras 2 HDF5 layout of the official files
    return model, path


@pytest.fixture(scope="session")
def notop_reference(tmp_path_factory):
    """A no-top keras_xception.Xception with random weights (random BN statistics) and its file."""
    from keras_xception import Xception

    model = randomize(Xception(include_top=False, weights=None), seed=4)
    path = str(tmp_path_factory.mktemp("notop") / "notop.weights.h5")
    model.save_weights(path)
    return model, path


@pytest.fixture(scope="session")
def image_tree(tmp_path_factory):
    """A class-per-folder tree: 2 classes x 6 generated images of 71-96 px."""
    from keras_xception import folders

    root = tmp_path_factory.mktemp("tree")
    folders.write_synthetic_tree(root, classes=2, per_class=6, sizes=(71, 96))
    return str(root)


def load_example(name):
    """Import examples/<name>.py as a module."""
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(name, os.path.join(root, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
