"""Grad-CAM (Selvaraju et al., ICCV 2017): where in the image the evidence for a class is.

For the score ``y_c`` of class ``c`` (the logit) and the activations ``A`` of a convolutional layer
(default: the Xception's last feature map), channel ``k`` weighs ``alpha_k = mean_ij dy_c/dA_k(i, j)``
and the heatmap is ``relu(sum_k alpha_k A_k)``, scaled to [0, 1]. TensorFlow backend (``tf.GradientTape``).
"""

from __future__ import annotations

import numpy as np

from keras_xception.checks import non_negative_int
from keras_xception.model.features import feature_layers
from keras_xception.model.introspect import find_layer, tap

__all__ = ["grad_cam", "save_cam_figure"]


def grad_cam(model, image, class_index=None, layer=None):
    """Grad-CAM heatmap of ``model`` for one preprocessed image.

    Args:
        model: A Keras classifier, e.g. ``Xception(include_top=True)`` or a ``build_classifier``
            model (nested backbone and head). When its last layer (or its head's) is Dense, the
            gradient is taken of the logit (its pre-activation output), as Grad-CAM prescribes.
        image: One image as ``model`` takes it, ``(H, W, 3)`` or ``(1, H, W, 3)``.
        class_index: The class to explain (default: the top-scoring class).
        layer: The convolutional layer whose activations are weighted, anywhere in ``model``
            (nested models included). Default: the Xception's last feature map
            (``block14_sepconv2_act`` for the official model).

    Returns:
        ``(heatmap, class_index)``: a float32 array of the layer's spatial
        shape with values in [0, 1] (all zeros if nothing supports the class).
    """
    import keras
    import tensorflow as tf

    layer, image = _checked(model, image, class_index, layer)
    last = _last_dense(model)
    dense_top = last is not None
    # The activations, and the classifier's input (its logit = input @ kernel + bias), even
    # where they sit inside nested models (a transfer-learning classifier's backbone and head).
    probe = tap(model, outputs=[layer], inputs=[last.name] if dense_top else [])
    image = tf.convert_to_tensor(image)
    with tf.GradientTape() as tape:
        tape.watch(image)  # records every op of the forward pass, frozen weights or not
        activations, h = probe(image, training=False)[:2]
        scores = tf.matmul(h, last.kernel) + last.bias if dense_top else h
        if class_index is None:
            class_index = int(tf.argmax(scores[0]))
        if not 0 <= int(class_index) < scores.shape[-1]:
            raise ValueError(f"`class_index` must be in [0, {scores.shape[-1]}); received class_index={class_index!r}.")
        score = scores[0, int(class_index)]
    grads = tape.gradient(score, activations)
    if grads is None:
        raise ValueError(f"The class score does not depend on layer {layer!r}; choose an earlier layer.")
    channels_last = keras.config.image_data_format() == "channels_last"
    axes = (1, 2) if channels_last else (2, 3)
    weights = tf.reduce_mean(grads, axis=axes, keepdims=True)
    cam = tf.reduce_sum(weights * activations, axis=-1 if channels_last else 1)[0]
    cam = tf.nn.relu(cam).numpy().astype("float32")
    peak = cam.max()
    return (cam / peak if peak > 0 else cam), int(class_index)


def _checked(model, image, class_index, layer):
    """``(layer, image as a (1, H, W, C) float32 batch)`` after checking :func:`grad_cam`'s arguments."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"Grad-CAM needs the TensorFlow backend (tf.GradientTape); the Keras backend is "
            f"{keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow."
        )
    if layer is None:
        try:
            layer = feature_layers(model)[max(feature_layers(model))]  # the last feature map
        except ValueError:
            raise ValueError(
                "`layer` must name a convolutional layer when the model contains no Xception (the "
                "default is the Xception's last feature map); received layer=None."
            ) from None
    if find_layer(model, layer) is None:
        raise ValueError(
            f"`layer` must name a layer of the model or of a model nested in it; received layer={layer!r}."
        )
    image = np.asarray(image, dtype="float32")
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"`image` must be one image, (H, W, C) or (1, H, W, C); received shape {image.shape}.")
    if class_index is not None:
        non_negative_int(class_index, "class_index")
    return layer, image


def _last_dense(model):
    """The Dense layer that makes ``model``'s output (possibly inside a nested head), or None."""
    import keras

    layer = model.layers[-1]
    while isinstance(layer, keras.Model):
        layer = layer.layers[-1]
    return layer if isinstance(layer, keras.layers.Dense) else None


def save_cam_figure(path, panels):
    """Draw heatmaps over images and save one figure (PNG, or any matplotlib format).

    ``panels``: a list of ``(image, heatmap, title)``; ``image`` in [0, 255]
    (H, W, 3), ``heatmap`` any 2D size (stretched over the image).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 4.4), squeeze=False)
    for ax, (image, heatmap, title) in zip(axes[0], panels):
        image = np.clip(np.asarray(image), 0, 255).astype("uint8")
        h, w = image.shape[:2]
        ax.imshow(image)
        ax.imshow(heatmap, cmap="jet", alpha=0.45, extent=(0, w, h, 0), interpolation="bilinear", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
