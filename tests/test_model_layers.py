"""keras_xception.model.layers: DilatedMaxPooling2D, the dilated pooling of the atrous (output_stride=8) model."""

import keras
import numpy as np
import pytest
from conftest import SMALL_OPTIONS, randomize
from conftest import notop71 as build

import keras_xception as kx
from keras_xception.model import layers


@pytest.fixture(scope="module")
def x(images):
    return kx.preprocess_input(images[:1])


def test_atrous_model_saves_and_loads_as_keras_file(tmp_path, x):
    model = randomize(build(output_stride=8, **SMALL_OPTIONS), seed=5)
    assert isinstance(model.get_layer("block6_pool"), layers.DilatedMaxPooling2D)  # the small model's block 13
    path = str(tmp_path / "os8.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    assert np.array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_dilated_pool_channels_first_matches_channels_last():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(1, 9, 9, 4)).astype("float32")
    last = layers.DilatedMaxPooling2D(3, 2, data_format="channels_last")(v)
    first = layers.DilatedMaxPooling2D(3, 2, data_format="channels_first")(np.transpose(v, (0, 3, 1, 2)))
    assert np.array_equal(
        np.transpose(keras.ops.convert_to_numpy(first), (0, 2, 3, 1)), keras.ops.convert_to_numpy(last)
    )
    # by hand at one position: max over rows/cols {2, 4, 6} around (4, 4), and the padded corner
    assert keras.ops.convert_to_numpy(last)[0, 4, 4, 0] == v[0, 2:7:2, 2:7:2, 0].max()
    assert keras.ops.convert_to_numpy(last)[0, 0, 0, 1] == v[0, 0:3:2, 0:3:2, 1].max()
