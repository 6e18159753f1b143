import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_xception as kx


def keras_reference(x):
    return keras.applications.xception.preprocess_input(np.array(x, dtype="float32", copy=True))


def test_matches_keras_on_uint8_and_does_not_touch_input():
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
    before = x.copy()
    y = kx.preprocess_input(x)
    assert y.dtype == np.float32 and y.min() == -1.0 and y.max() == 1.0
    np.testing.assert_allclose(y, keras_reference(x), rtol=1e-6)
    np.testing.assert_array_equal(x, before)


def test_float_input_is_not_modified_in_place():
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    before = x.copy()
    y = kx.preprocess_input(x)
    np.testing.assert_array_equal(x, before)  # Keras's own preprocess_input fails this
    assert y is not x
    np.testing.assert_allclose(y, before / 127.5 - 1, rtol=1e-6)


def test_float64_keeps_dtype_and_lists_work():
    assert kx.preprocess_input(np.zeros((1, 2, 2, 3))).dtype == np.float64
    np.testing.assert_allclose(kx.preprocess_input([[0, 255]]), [[-1.0, 1.0]])


def test_tf_tensor_and_symbolic_tensor():
    t = tf.constant([[0, 127, 255]], dtype=tf.uint8)
    out = kx.preprocess_input(t)
    assert isinstance(out, tf.Tensor) and out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), [[-1.0, 127 / 127.5 - 1, 1.0]], rtol=1e-6)
    inp = keras.Input((4, 4, 3))
    sym = kx.preprocess_input(inp)
    m = keras.Model(inp, sym)
    np.testing.assert_allclose(m.predict(np.full((1, 4, 4, 3), 255.0), verbose=0), 1.0)


@pytest.mark.parametrize("bad", [np.array(["a", "b"]), np.array([True, False])])
def test_non_numeric_input_is_refused(bad):
    with pytest.raises(ValueError, match="preprocess_input"):
        kx.preprocess_input(bad)


def test_bad_data_format():
    with pytest.raises(ValueError, match="data_format"):
        kx.preprocess_input(np.zeros((1, 2, 2, 3)), data_format="NHWC")


def test_layer_equals_function():
    layer = kx.preprocessing_layer()
    x = np.random.default_rng(0).uniform(0, 255, (1, 5, 5, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(layer(x)), kx.preprocess_input(x), rtol=1e-6, atol=1e-7)
