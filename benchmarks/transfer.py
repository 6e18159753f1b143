"""Benchmark: head training on cached features vs plain ``fit`` with a frozen backbone; and ``train``'s
default head against a logistic-regression probe on a small real image set.

    python benchmarks/transfer.py --json transfer.json
    python benchmarks/transfer.py --probe digits --json probe.json   # needs scikit-learn

``--probe digits``: scikit-learn's bundled digits (1797 real 8x8 greyscale
scans of handwritten digits, 10 classes), upscaled to ``--image-size`` RGB
PNGs in class folders. ``keras_xception.train`` with its defaults (head on
cached features, early stopping on the validation loss) is compared with
``sklearn.linear_model.LogisticRegression`` (defaults, ``max_iter=5000``)
fit on the same pooled features of the same training split, scored on the
same validation split; and with the old fixed 5-epoch head. Time: the whole
``train`` call against plain ``fit`` (backbone + head on the images every
epoch), whose per-epoch time is measured over ``--plain-epochs`` epochs and
multiplied by the number of head epochs ``train`` ran.

Both approaches train the same new head (same initial weights) on the same
data for the same number of epochs, with the backbone frozen:

* ``plain``: ``train_head(..., cached=False)``, i.e. ``model.fit`` on
  backbone + head; the backbone runs over the training and validation images
  in every epoch.
* ``cached``: ``train_head(..., cached=True)``: the backbone runs once to
  compute pooled features, the head trains on them.

Times cover the whole of ``train_head`` (feature computation, graph tracing,
training and per-epoch validation). The runs are interleaved
(plain, cached, plain, cached, ...) so load from other processes on a shared
machine hits both alike; reported: the ratio of the median times, the ratio of
the fastest runs, and each pair's ratio. Afterwards the
cached-path classifier (one ordinary Keras model) is evaluated on the
validation images, to show that its accuracy on images equals the accuracy
measured on the cached features.

Data: a generated class-per-folder tree (:func:`write_synthetic_tree`; the
classes differ in colour and stripe width). Weights: no pretrained weights
can be downloaded where this was written, so the backbone has random weights
whose BatchNormalization statistics are calibrated on one batch of the
training images (without that, random-init features are ~1e-5 and a head
barely trains in 5 epochs). The timing does not depend on the weights values.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from synthetic import write_synthetic_tree  # noqa: E402


def calibrate_batchnorm(backbone, images):
    """Set every BatchNorm's moving statistics to those of ``images`` (one pass, momentum 0)."""
    import keras

    bns = [lyr for lyr in backbone.layers if isinstance(lyr, keras.layers.BatchNormalization)]
    saved = [(lyr.momentum, lyr.trainable) for lyr in bns]
    for lyr in bns:
        lyr.momentum, lyr.trainable = 0.0, True
    backbone(images, training=True)
    for lyr, (momentum, trainable) in zip(bns, saved):
        lyr.momentum, lyr.trainable = momentum, trainable


def write_digits_tree(root, size):
    """sklearn's digits as ``root/digit_<k>/<i>.png``, upscaled (bilinear) to ``size`` x ``size`` RGB."""
    import numpy as np
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0 * 255.0).astype("float32")[..., None]
    big = tf.image.resize(images, (size, size), method="bilinear").numpy()
    big = np.clip(np.repeat(big, 3, axis=-1), 0, 255).astype("uint8")
    for i, (image, label) in enumerate(zip(big, digits.target)):
        folder = os.path.join(root, f"digit_{label}")
        os.makedirs(folder, exist_ok=True)
        tf.io.write_file(os.path.join(folder, f"{i:04d}.png"), tf.io.encode_png(image))
    return len(big)


def probe(args):
    """Default ``train`` vs a logistic-regression probe on the same features; time vs plain ``fit``."""
    import keras
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    import keras_xception as kx
    from keras_xception import folders, preprocess_input, transfer
    from keras_xception.model.features import feature_model

    warnings.filterwarnings("ignore", message="Your input ran out of data")
    tmp = tempfile.mkdtemp(prefix="xception_probe_bench_")
    n = write_digits_tree(tmp, args.image_size)
    size = (args.image_size,) * 2
    tp, tl, vp, vl, classes = folders.class_folder_split(tmp, 0.2, seed=args.seed)
    t = kx.resolve_transform(target_size=size)
    calib = np.stack([kx.load_image(p, t) for p in tp[:: max(1, len(tp) // 64)][:64]])

    def backbone():  # random weights, BatchNorm statistics calibrated on 64 training images
        keras.utils.set_random_seed(0)
        b = transfer.build_backbone(None, size + (3,))
        calibrate_batchnorm(b, preprocess_input(calib))
        return b

    results = {"config": {**vars(args), "images": n, "num_train": len(tp), "num_val": len(vp)}}
    for name, kwargs in (("default", {}), ("fixed_5_epochs", {"epochs": 5})):
        t0 = time.perf_counter()
        classifier, report = kx.train(
            tmp,
            backbone=backbone,
            weights=None,
            image_size=args.image_size,
            batch_size=args.batch_size,
            seed=args.seed,
            verbose=0,
            **kwargs,
        )
        results[name] = {
            "val_accuracy": report["val_accuracy"],
            "head_epochs": report["head"]["epochs_run"],
            "best_epoch": report["head"]["best_epoch"],
            "seconds": round(time.perf_counter() - t0, 2),
            "timings": report["timings"],
        }
        print(name, results[name], flush=True)
        if name == "default":
            default_classifier, head_epochs = classifier, report["head"]["epochs_run"]

    # The same pooled features of the same split, for the probe.
    extractor = feature_model(default_classifier.model, "avg_pool", pool=True, name="features")
    tr = default_classifier.transform

    def features(paths):
        out = []
        for i in range(0, len(paths), 64):
            batch = np.stack([kx.load_image(p, tr) for p in paths[i : i + 64]])
            out.append(extractor.predict_on_batch(batch))
        return np.concatenate(out)

    xt, xv = features(tp), features(vp)
    t0 = time.perf_counter()
    lr = LogisticRegression(max_iter=5000).fit(xt, tl)
    results["logistic_regression"] = {
        "val_accuracy": float(lr.score(xv, vl)),
        "seconds_on_features": round(time.perf_counter() - t0, 2),
    }
    head_on_same = float(np.mean(default_classifier.model.get_layer("head").predict(xv, verbose=0).argmax(1) == vl))
    results["default"]["val_accuracy_recomputed_on_probe_features"] = head_on_same
    print("logistic_regression", results["logistic_regression"], flush=True)

    # Plain fit: backbone + head on the images every epoch; per-epoch time x the epochs train() ran.
    train_ds = folders.image_dataset(tp, tr, labels=tl, batch_size=args.batch_size, shuffle=True, seed=0)
    val_ds = folders.image_dataset(vp, tr, labels=vl, batch_size=args.batch_size)
    model = transfer.build_classifier(len(classes), backbone=backbone(), input_shape=size + (3,))
    t0 = time.perf_counter()
    transfer.train_head(model, train_ds, val_ds, epochs=args.plain_epochs, cached=False, verbose=0)
    per_epoch = (time.perf_counter() - t0) / args.plain_epochs
    results["plain_fit"] = {
        "measured_epochs": args.plain_epochs,
        "seconds_per_epoch": round(per_epoch, 2),
        "estimated_seconds_for_default_epochs": round(per_epoch * head_epochs, 1),
    }
    results["summary"] = {
        "default_val_accuracy": results["default"]["val_accuracy"],
        "logistic_regression_val_accuracy": results["logistic_regression"]["val_accuracy"],
        "gap_points": round(
            100 * (results["logistic_regression"]["val_accuracy"] - results["default"]["val_accuracy"]), 2
        ),
        "fixed_5_epochs_val_accuracy": results["fixed_5_epochs"]["val_accuracy"],
        "default_train_seconds": results["default"]["seconds"],
        "plain_fit_seconds_estimated": results["plain_fit"]["estimated_seconds_for_default_epochs"],
        "cpu_count": os.cpu_count(),
        "keras": keras.__version__,
    }
    print(json.dumps(results["summary"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--probe", choices=("digits",), help="default train() vs a logistic-regression probe (see above)")
    p.add_argument("--plain-epochs", type=int, default=2, help="with --probe: plain-fit epochs timed")
    p.add_argument("--seed", type=int, default=1337, help="with --probe: the split's seed")
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2, help="runs of each approach, interleaved")
    p.add_argument(
        "--colour-noise",
        type=float,
        default=0.8,
        help="blend up to this fraction of a random colour into each image (0: trivially separable)",
    )
    p.add_argument(
        "--cache-images",
        action="store_true",
        help="decode the images once into memory (default: every epoch reads and decodes the files, "
        "as examples/transfer_learning.py does)",
    )
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if args.probe:
        return probe(args)

    import keras

    from keras_xception import folders, preprocess_input, resolve_transform, transfer

    warnings.filterwarnings("ignore", message="Your input ran out of data")
    keras.utils.set_random_seed(0)
    tmp = tempfile.mkdtemp(prefix="xception_transfer_bench_")
    write_synthetic_tree(
        tmp, args.classes, args.per_class, sizes=(args.image_size, args.image_size + 32), colour_noise=args.colour_noise
    )
    tp, tl, vp, vl, classes = folders.class_folder_split(tmp, 0.2, seed=0)
    size = (args.image_size,) * 2
    t = resolve_transform(target_size=size)
    train = folders.image_dataset(tp, t, labels=tl, batch_size=args.batch_size, shuffle=True, seed=0)
    val = folders.image_dataset(vp, t, labels=vl, batch_size=args.batch_size)
    if args.cache_images:  # then both approaches measure model work only, not decoding
        train, val = train.cache(), val.cache()
        for _ in train.concatenate(val):
            pass

    backbone = transfer.build_backbone(None, size + (3,))
    calibrate_batchnorm(backbone, preprocess_input(next(iter(train))[0].numpy()))
    head0 = transfer.build_head(len(classes), dropout=0.2)
    init = head0.get_weights()

    results = {"plain": [], "cached": []}
    for rep in range(args.repeats):
        for method in ("plain", "cached"):
            head = transfer.build_head(len(classes), dropout=0.2)
            head.set_weights(init)
            model = transfer.build_classifier(backbone=backbone, head=head, input_shape=size + (3,))
            t0 = time.perf_counter()
            hist = transfer.train_head(
                model, train, val, epochs=args.epochs, cached=method == "cached", batch_size=args.batch_size, verbose=0
            )
            seconds = time.perf_counter() - t0
            entry = {"seconds": round(seconds, 2), "val_accuracy": float(hist.history["val_accuracy"][-1])}
            if method == "cached":
                entry["model_val_accuracy"] = float(model.evaluate(val, verbose=0, return_dict=True)["accuracy"])
            results[method].append(entry)
            print(f"run {rep + 1} {method:>6}: {entry}", flush=True)

    plain = statistics.median(r["seconds"] for r in results["plain"])
    cached = statistics.median(r["seconds"] for r in results["cached"])
    pairs = [p["seconds"] / c["seconds"] for p, c in zip(results["plain"], results["cached"])]
    summary = {
        "config": {**vars(args), "num_train": len(tp), "num_val": len(vp), "backbone_weights": "random, BN calibrated"},
        "runs": results,
        "median_seconds": {"plain": plain, "cached": cached},
        "speedup": round(plain / cached, 2),  # ratio of the medians
        "speedup_of_fastest_runs": round(
            min(r["seconds"] for r in results["plain"]) / min(r["seconds"] for r in results["cached"]), 2
        ),
        "speedup_per_pair": [round(r, 2) for r in pairs],  # each plain run / the cached run right after it
        "val_accuracy": {
            "plain": [r["val_accuracy"] for r in results["plain"]],
            "cached": [r["val_accuracy"] for r in results["cached"]],
            "cached_model_on_images": [r["model_val_accuracy"] for r in results["cached"]],
        },
        "cpu_count": os.cpu_count(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }
    keys = ("median_seconds", "speedup", "speedup_of_fastest_runs", "speedup_per_pair", "val_accuracy")
    print(json.dumps({k: summary[k] for k in keys}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return summary


if __name__ == "__main__":
    main()
