"""keras_xception.tasks.gradcam: on Xception itself and on a transfer-learning classifier (nested backbone
and head); `keras-xception predict --cam` is in test_cli.py.

The expected heatmaps are computed independently of :func:`grad_cam`: with
global average pooling and a Dense layer on top of a feature map ``A`` (h x w
x K), the logit of class ``c`` is ``mean_ij A(i, j) @ W[:, c] + b[c]``, so
``dy_c/dA_k(i, j) = W[k, c] / (h w)`` and Grad-CAM of that feature map is
``relu(A @ W[:, c])`` scaled to [0, 1] (CAM, Zhou et al. 2016).
"""

import numpy as np
import pytest
from conftest import SMALL, randomize, small_xception

keras = pytest.importorskip("keras")

from keras_xception import preprocess_input, transfer  # noqa: E402
from keras_xception.tasks.gradcam import grad_cam  # noqa: E402

SHAPE = (
    SMALL,
    SMALL,
    3,
)  # the small models (conftest.small_xception): blocks 2..7, last feature map block7_sepconv2_act


def _cam(acts, channel_weights):
    """relu(sum_k channel_weights[k] * acts[..., k]), scaled to [0, 1]."""
    cam = np.maximum(acts @ channel_weights, 0)
    return cam / cam.max() if cam.max() > 0 else cam


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


# ---------------------------------------------------------------- Xception with its own top


@pytest.fixture(scope="module")
def classifier():
    """A small Xception with its top (10 classes, softmax) and random BN statistics and biases."""
    keras.utils.set_random_seed(6)
    return randomize(small_xception(classes=10), seed=6)


def test_grad_cam_equals_cam_for_a_global_average_pooled_linear_top(classifier, images):
    x = preprocess_input(images[:1])
    heatmap, c = grad_cam(classifier, x)  # default layer: the last feature map, block7_sepconv2_act here
    probs = classifier.predict(x, verbose=0)[0]
    assert c == int(np.argmax(probs))
    feature_map = keras.Model(classifier.inputs, classifier.get_layer("block7_sepconv2_act").output)
    acts = feature_map.predict(x, verbose=0)[0]
    kernel = classifier.get_layer("predictions").get_weights()[0]
    np.testing.assert_allclose(heatmap, _cam(acts, kernel[:, c]), atol=1e-4)
    for cls in (c, (c + 1) % 10):
        got, returned = grad_cam(classifier, x[0], class_index=cls, layer="block7_sepconv2_act")
        assert returned == cls
        assert got.shape == acts.shape[:2] and got.dtype == np.float32 and got.min() >= 0 and got.max() <= 1
        np.testing.assert_allclose(got, _cam(acts, kernel[:, cls]), atol=1e-4)


def test_grad_cam_bad_arguments(classifier, images):
    x = preprocess_input(images[:1])
    with pytest.raises(ValueError, match="`layer` must name a layer.*'nope'"):
        grad_cam(classifier, x, layer="nope")
    for bad in (10, -1, "1", True, 1.0):
        with pytest.raises(ValueError, match="`class_index`"):
            grad_cam(classifier, x, class_index=bad)
    with pytest.raises(ValueError, match="one image"):
        grad_cam(classifier, preprocess_input(images))
    not_xception = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3), keras.layers.Flatten()])
    with pytest.raises(ValueError, match="`layer` must name a convolutional layer.*no Xception"):
        grad_cam(not_xception, np.zeros((8, 8, 3)))


# ---------------------------------------------------------------- transfer-learning classifier


@pytest.fixture(scope="module")
def nested():
    """build_classifier: Rescaling -> nested small backbone -> avg_pool -> nested head (3 classes, softmax)."""
    keras.utils.set_random_seed(7)
    backbone = randomize(small_xception(include_top=False), seed=7)
    model = transfer.build_classifier(3, backbone=backbone, input_shape=SHAPE, dropout=0.0)
    dense = model.get_layer("head").get_layer("predictions")
    rng = np.random.default_rng(8)
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 4, rng.normal(0, 0.5, bias.shape).astype("float32")])  # no near-uniform softmax
    return model, backbone


def test_grad_cam_of_a_transfer_classifier_is_cam_of_the_logits(nested, images):
    model, backbone = nested
    raw = images[:1]  # the classifier scales [0, 255] itself
    acts = np.asarray(backbone(preprocess_input(raw), training=False))[0]
    kernel, bias = model.get_layer("head").get_layer("predictions").get_weights()
    probs = model.predict(raw, verbose=0)[0]
    np.testing.assert_allclose(_softmax(acts.mean(axis=(0, 1)) @ kernel + bias), probs, rtol=1e-4, atol=1e-6)

    heatmap, top = grad_cam(model, raw)
    assert top == int(np.argmax(probs))
    expected = _cam(acts, kernel[:, top])
    assert expected.max() == 1  # something supports the top class, so the comparisons mean something
    np.testing.assert_allclose(heatmap, expected, atol=1e-4)
    # Of the softmax output instead of the logit the gradient would be p_c (W[:, c] - W @ p) / (h w):
    # a different map, which the comparison above tells apart.
    assert np.abs(expected - _cam(acts, kernel[:, top] - kernel @ probs)).max() > 0.1
    for cls in range(3):
        got, returned = grad_cam(model, raw[0], class_index=cls)
        assert returned == cls
        np.testing.assert_allclose(got, _cam(acts, kernel[:, cls]), atol=1e-4)


def test_grad_cam_inside_the_nested_backbone_equals_the_flat_model(nested, images):
    """Any layer of the nested backbone: the same heatmap as a flat model made of the same layers."""
    model, backbone = nested
    raw = images[1:]
    rescaling = next(lyr for lyr in model.layers if isinstance(lyr, keras.layers.Rescaling))
    inputs = keras.Input(SHAPE)
    inline = small_xception(include_top=False, input_tensor=rescaling(inputs), input_shape=None)
    for layer in backbone.layers:
        if layer.weights:
            inline.get_layer(layer.name).set_weights(layer.get_weights())
    dense = model.get_layer("head").get_layer("predictions")
    pooled = keras.layers.GlobalAveragePooling2D()(inline.output)
    predictions = keras.layers.Dense(3, activation="softmax", name="predictions")
    flat = keras.Model(inputs, predictions(pooled))
    predictions.set_weights(dense.get_weights())
    assert not any(isinstance(lyr, keras.Model) for lyr in flat.layers)
    np.testing.assert_allclose(flat.predict(raw, verbose=0), model.predict(raw, verbose=0), rtol=1e-5, atol=1e-6)
    for layer in ("block6_sepconv1_act", "block5_add", "block7_sepconv2_act"):
        peaks = []
        for cls in range(3):
            want, _ = grad_cam(flat, raw, class_index=cls, layer=layer)
            got, _ = grad_cam(model, raw, class_index=cls, layer=layer)
            np.testing.assert_allclose(got, want, atol=1e-4)
            peaks.append(want.max())
        assert max(peaks) == 1  # not all zero: the comparisons mean something
