"""Custom layers of the Xception variants (the official model uses only built-in Keras layers)."""

from __future__ import annotations

import keras

__all__ = ["DilatedMaxPooling2D"]


@keras.saving.register_keras_serializable(package="keras_xception")
class DilatedMaxPooling2D(keras.layers.Layer):
    """Stride-1 ``"same"`` max pooling whose window taps are ``dilation_rate`` apart (padding: ``-inf``).

    ``output_stride=8``'s block-13 pooling: after one removed downsampling, a 3x3 window dilated by 2
    sees exactly the inputs of the official stride-2 pooling, so the features are the official ones.
    """

    def __init__(self, pool_size=3, dilation_rate=2, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if pool_size % 2 != 1:
            raise ValueError(f"`pool_size` must be odd; received pool_size={pool_size!r}.")
        self.pool_size = int(pool_size)
        self.dilation_rate = int(dilation_rate)
        self.data_format = data_format or keras.config.image_data_format()
        self.strides = (1, 1)

    def call(self, x):
        k, d = self.pool_size, self.dilation_rate
        pad = d * (k - 1) // 2
        h, w = (2, 3) if self.data_format == "channels_first" else (1, 2)
        paddings = [[0, 0]] * 4
        paddings[h] = paddings[w] = [pad, pad]
        xp = keras.ops.pad(x, paddings, constant_values=float("-inf"))
        out = None
        for i in range(k):
            for j in range(k):
                index = [slice(None)] * 4
                index[h] = slice(i * d, i * d - 2 * pad or None)
                index[w] = slice(j * d, j * d - 2 * pad or None)
                tap = xp[tuple(index)]
                out = tap if out is None else keras.ops.maximum(out, tap)
        return out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, dilation_rate=self.dilation_rate, data_format=self.data_format)
        return config
