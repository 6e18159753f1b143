"""Reduced-precision agreement on a trained full-size Xception: int8 and bf16 against float32.

    python benchmarks/quantization.py --json benchmarks/results/quantization.json

Agreement needs a trained model (random weights give near-uniform outputs,
on which any precision "agrees"), and no pretrained weights can be
downloaded where this was written, so the benchmark trains one: the
full-size Xception (22.9M parameters, 8 middle-flow blocks) from scratch on
scikit-learn's bundled handwritten digits (1,797 real 8x8 greyscale scans, 10
classes, scaled to ``--image-size`` RGB). 1,000 digits train it, 300 of those
calibrate int8 (NNCF's recommended count), and the other 797, never seen in
training or calibration, are the held-out set.

For each reduced precision (OpenVINO int8 via NNCF, ONNX Runtime int8, LiteRT
full-integer int8, OpenVINO bf16) it builds a :class:`keras_xception.Predictor` and reports, with
:func:`keras_xception.agreement` (the figures ``keras-xception quantize``
gates on): top-1 agreement with the float32 Keras model, top-5 overlap,
max/mean absolute difference of the probabilities, cosine of the probability
vectors; plus the build (export + quantization) time and each precision's own
accuracy on the held-out labels.
Targets (issue 11): int8 top-1 agreement >= 99%, bf16 >= 99.5%.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

CASES = (("openvino", "int8"), ("onnxruntime", "int8"), ("litert", "int8"), ("openvino", "bf16"))


def digits(size):
    """scikit-learn's digits as ``(size, size, 3)`` model inputs in [-1, 1], and their labels."""
    import tensorflow as tf
    from sklearn.datasets import load_digits

    data = load_digits()
    pixels = np.repeat((data.images * (255.0 / 16.0))[..., None], 3, axis=-1).astype(np.float32)
    return tf.image.resize(pixels, (size, size)).numpy() / 127.5 - 1.0, data.target


def train(x, y, size, epochs, seed, arch="xception"):
    import keras

    from keras_xception import build

    keras.utils.set_random_seed(seed)
    model = build(arch, weights=None, input_shape=(size, size, 3), classes=10)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9  # moving statistics that settle in a few short epochs
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=2)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=71, help="input side (default 71, the minimum)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--calibration", type=int, default=300, help="calibration images (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arch", default="xception", help="keras_xception.build's architecture (e.g. xception41)")
    parser.add_argument("--model", help="reuse (or save) the trained model at this .keras path")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--runtimes", nargs="+", help="only these runtimes' cases (default: every installed one)")
    args = parser.parse_args(argv)

    import keras

    from keras_xception.deploy.predictor import Predictor
    from keras_xception.deploy.quantization import agreement
    from keras_xception.deploy.runtimes import available_runtimes

    x, y = digits(args.image_size)
    order = np.random.default_rng(args.seed).permutation(len(x))
    train_idx, holdout_idx = order[:1000], order[1000:]
    t = time.perf_counter()
    loaded = bool(args.model and os.path.exists(args.model))
    if loaded:
        model = keras.saving.load_model(args.model)
    else:
        model = train(x[train_idx], y[train_idx], args.image_size, args.epochs, args.seed, args.arch)
        if args.model:
            model.save(args.model)
    train_seconds = None if loaded else time.perf_counter() - t
    holdout, labels = x[holdout_idx], y[holdout_idx]
    fp32_accuracy = float(np.mean(model.predict(holdout, verbose=0).argmax(1) == labels))
    how = f"loaded from {args.model} (trained there by this script)" if loaded else f"trained in {train_seconds:.0f} s"
    print(
        f"{model.count_params():,} parameters, {how}; fp32 held-out accuracy {fp32_accuracy:.4f} on {len(holdout)} digits",
        flush=True,
    )
    calibration = x[train_idx[: args.calibration]]
    results = {
        "image_size": args.image_size,
        "arch": args.arch,
        "parameters": model.count_params(),
        "train_seconds": None if loaded else round(train_seconds, 1),
        "model": args.model if loaded else None,
        "fp32_accuracy": fp32_accuracy,
        "holdout_images": len(holdout),
        "cases": {},
    }
    reference = model.predict(holdout, verbose=0)
    installed = available_runtimes()
    for runtime, precision in CASES:
        if runtime not in installed or (args.runtimes and runtime not in args.runtimes):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predictor = Predictor(
                model, runtime, precision=precision, calibration=calibration if precision == "int8" else None
            )
        got = predictor.predict(holdout)
        report = agreement(reference, got)
        report.update(
            accuracy=float(np.mean(got.argmax(1) == labels)),
            calibration_images=predictor.calibration_count,
            build_seconds=round(predictor.build_seconds, 1),
        )
        results["cases"][f"{runtime} {precision}"] = report
        print(
            f"{runtime:>12} {precision}: top-1 agreement {report['top1_agreement']:.4f}, top-5 overlap "
            f"{report['top5_overlap']:.4f}, max |dp| {report['max_abs_diff']:.4f}, mean |dp| "
            f"{report['mean_abs_diff']:.2e}, cosine {report['cosine_mean']:.5f}, accuracy {report['accuracy']:.4f} "
            f"(fp32 {fp32_accuracy:.4f}), calibration {report['calibration_images']}, "
            f"built in {report['build_seconds']} s",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
