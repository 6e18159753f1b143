"""Helpers for the evaluation tests, and a worker process for the distributed ones.

Run as ``python eval_worker.py MODE VAL_DIR WEIGHTS OUT_JSON [BATCH [small]]`` with MODE
``mirrored`` (two logical CPU devices in this process) or ``multi-worker``
(reads TF_CONFIG): evaluates Xception at 71x71 (``small``: the small variant of
conftest.SMALL_OPTIONS) with the weights file WEIGHTS and writes the report to OUT_JSON.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZE = 64  # input size of the tiny test model


def tiny_model(favoured=(), seed=0):
    """A small 1000-class convnet; ``favoured`` classes get a large bias so some predictions are right.

    The kernel makes the scores depend on the image, so top-1/top-5 hits vary
    per image instead of being all or nothing.
    """
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 5, strides=4, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1000, name="predictions")(x)
    model = keras.Model(inp, out, name="tiny")
    favour(model, favoured, seed)
    return model


def favour(model, classes, seed=0, strength=1.0):
    """Make ``classes`` the likely predictions of ``model``'s last Dense layer (in place)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    kernel = rng.normal(0, 8.0 / np.sqrt(kernel.shape[0]), kernel.shape).astype("float32")
    bias = np.full(bias.shape, -20.0, "float32")
    classes = sorted({int(c) for c in classes})
    bias[classes] = rng.uniform(0, strength, len(classes))
    dense.set_weights([kernel, bias])
    return model


def main(mode, val_dir, weights, out, batch=4, variant="full"):
    import tensorflow as tf

    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
        )
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:
        from keras_xception.tasks.evaluation import make_strategy

        strategy = make_strategy("multi-worker")
    from keras_xception import data, evaluation

    def build():
        from conftest import SMALL_OPTIONS

        from keras_xception import Xception

        return Xception(weights=weights, input_shape=(71, 71, 3), **(SMALL_OPTIONS if variant == "small" else {}))

    report = evaluation.evaluate(
        build,
        data.folder_records(val_dir),
        transform=data.resolve_transform(weights, target_size=(71, 71)),
        batch_size=int(batch),
        strategy=strategy,
        per_class=True,
        verbose=0,
    )
    with open(out, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
