"""Transfer learning with a pretrained Xception: train a new classifier on your images.

    python examples/transfer_learning.py --data-dir photos/ --out flowers.keras \
        --report report.json --epochs 5 --fine-tune-epochs 2

``--data-dir`` is a class-per-folder tree (``photos/daisy/*.jpg``,
``photos/tulip/*.jpg``, ...); without it the tfds ``tf_flowers`` dataset is
used (downloaded on first use, about 220 MB). A seeded ``--val-split`` of
every class is held out for validation.

Phase 1 trains a new head (pooling, dropout, Dense) on the frozen backbone
with the fast path of :func:`keras_xception.transfer.train_head`: backbone
features are computed once and the head is trained on them. Phase 2
(``--fine-tune-epochs`` > 0) unfreezes the top 2 blocks (BatchNorm stays
frozen) and fine-tunes at learning rate 1e-5. The result is one ordinary
Keras model taking raw [0, 255] RGB images of ``--image-size``, saved to
``--out``; ``--report`` gets a JSON summary (``val_accuracy``, per-phase
seconds, history) and a training-curve PNG is written next to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

SEED = 1337  # the validation split and shuffling are seeded with this
FINE_TUNE_BLOCKS = 2  # top Xception blocks unfrozen in phase 2 (block13, block14)
FINE_TUNE_LR = 1e-5


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="class-per-folder image tree (default: tfds tf_flowers)")
    p.add_argument(
        "--weights", default="imagenet", help="registered name, or a weights file (.h5, .weights.h5, .keras)"
    )
    p.add_argument("--image-size", type=int, default=299, help="square input side, >= 71 (default 299)")
    p.add_argument("--epochs", type=int, default=5, help="head-training epochs (default 5)")
    p.add_argument("--fine-tune-epochs", type=int, default=0, help="fine-tuning epochs; 0 skips it (default 0)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--val-split", type=float, default=0.2, help="validation fraction, seeded (default 0.2)")
    p.add_argument("--out", default="model.keras", help="output .keras model (default model.keras)")
    p.add_argument("--report", help="write a JSON report here")
    args = p.parse_args(argv)
    checks = [
        (args.image_size >= 71, f"--image-size must be >= 71 (Xception's minimum); received {args.image_size}"),
        (args.epochs >= 1, f"--epochs must be >= 1; received {args.epochs}"),
        (args.fine_tune_epochs >= 0, f"--fine-tune-epochs must be >= 0; received {args.fine_tune_epochs}"),
        (args.batch_size >= 1, f"--batch-size must be >= 1; received {args.batch_size}"),
        (0 < args.val_split < 1, f"--val-split must be in (0, 1); received {args.val_split}"),
        (args.out.endswith(".keras"), f"--out must end in .keras; received {args.out!r}"),
        (args.data_dir is None or os.path.isdir(args.data_dir), f"--data-dir {args.data_dir!r} is not a directory"),
    ]
    for ok, message in checks:
        if not ok:
            p.error(message)
    for path, flag in ((args.out, "--out"), (args.report, "--report")):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            p.error(f"{flag}: the folder of {path!r} does not exist")
    return args


def folder_datasets(args, transform):
    """Training and validation datasets from a class-per-folder tree."""
    from keras_xception import folders

    tp, tl, vp, vl, classes = folders.class_folder_split(args.data_dir, args.val_split, seed=SEED)
    if not vp:
        raise SystemExit(f"--val-split {args.val_split} leaves no validation images; use more images per class.")
    train = folders.image_dataset(tp, transform, labels=tl, batch_size=args.batch_size, shuffle=True, seed=SEED)
    val = folders.image_dataset(vp, transform, labels=vl, batch_size=args.batch_size)
    return train, val, classes, len(tp), len(vp)


def load_tfds_flowers():
    """tf_flowers as encoded images (downloads when online); a clear SystemExit when it cannot."""
    import tensorflow_datasets as tfds

    try:
        ds, info = tfds.load(
            "tf_flowers",
            split="train",
            as_supervised=True,
            with_info=True,
            decoders={"image": tfds.decode.SkipDecoding()},
        )
    except Exception as e:  # no network, no disk, missing optional deps: all end here
        raise SystemExit(
            "Could not load the tfds 'tf_flowers' dataset (it is downloaded on first use, about "
            f"220 MB; are you offline?): {type(e).__name__}: {e}\n"
            "Pass --data-dir with a class-per-folder image tree instead."
        ) from None
    return ds, info.features["label"].names


def tfds_datasets(args, transform):
    """Training and validation datasets from tf_flowers, split per example with a seeded hash."""
    import numpy as np
    import tensorflow as tf

    from keras_xception.data import Records, image_dataset

    ds, classes = load_tfds_flowers()
    items = list(ds.as_numpy_iterator())  # encoded bytes: small enough to hold (about 220 MB)
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(items))
    n_val = int(round(args.val_split * len(items)))

    def make(indices, shuffle):  # encoded images as Records: the package's pipeline and bad-file policy
        names = [f"tf_flowers[{i}]" for i in indices]
        labels = np.array([items[i][1] for i in indices], "int64")
        examples = tf.data.Dataset.from_tensor_slices((names, labels, [items[i][0] for i in indices]))
        records = Records(examples, payload_is_path=False, size=len(indices), description="tf_flowers")
        return image_dataset(records, transform, batch_size=args.batch_size, shuffle=shuffle, seed=SEED)

    return make(order[n_val:], True), make(order[:n_val], False), classes, len(items) - n_val, n_val


def plot_curves(path, head_history, tune_history):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    n_head = len(head_history.get("loss", []))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = head_history.get(prefix + metric, []) + tune_history.get(prefix + metric, [])
            ax.plot(range(1, len(values) + 1), values, style, marker="o", label=(prefix or "train_") + metric)
        if tune_history:
            ax.axvline(n_head + 0.5, color="grey", lw=0.8)
            ax.text(n_head + 0.6, ax.get_ylim()[1], "fine-tuning", va="top", fontsize=8, color="grey")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    import keras

    from keras_xception import transfer
    from keras_xception.data.transform import resolve_transform

    keras.utils.set_random_seed(SEED)
    # The datasets skip undecodable files (Dataset.ignore_errors), so their length is
    # unknown until the first epoch ends; Keras then warns that the input "ran out".
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    transform = resolve_transform(args.weights, target_size=args.image_size)
    if args.data_dir:
        train, val, classes, n_train, n_val = folder_datasets(args, transform)
    else:
        train, val, classes, n_train, n_val = tfds_datasets(args, transform)
    print(f"{len(classes)} classes, {n_train} training and {n_val} validation images", file=sys.stderr)

    model = transfer.build_classifier(
        len(classes), weights=args.weights, input_shape=(args.image_size, args.image_size, 3)
    )
    report = {
        "classes": list(classes),
        "num_train": n_train,
        "num_val": n_val,
        "image_size": args.image_size,
        "weights": args.weights,
        "batch_size": args.batch_size,
        "val_split": args.val_split,
    }
    t0 = time.perf_counter()
    head = transfer.train_head(model, train, val, epochs=args.epochs, batch_size=args.batch_size)
    report["head"] = {
        "epochs": args.epochs,
        "seconds": round(time.perf_counter() - t0, 2),
        "val_accuracy": float(head.history["val_accuracy"][-1]),
        "history": head.history,
    }
    tune_history = {}
    if args.fine_tune_epochs:
        t0 = time.perf_counter()
        tune = transfer.fine_tune(
            model,
            train,
            val,
            epochs=args.fine_tune_epochs,
            blocks=FINE_TUNE_BLOCKS,
            learning_rate=FINE_TUNE_LR,
            initial_epoch=args.epochs,
        )
        tune_history = tune.history
        report["fine_tune"] = {
            "epochs": args.fine_tune_epochs,
            "blocks": FINE_TUNE_BLOCKS,
            "learning_rate": FINE_TUNE_LR,
            "seconds": round(time.perf_counter() - t0, 2),
            "val_accuracy": float(tune.history["val_accuracy"][-1]),
            "history": tune.history,
        }
    report["val_accuracy"] = report.get("fine_tune", report["head"])["val_accuracy"]
    model.save(args.out)
    curves = os.path.splitext(args.out)[0] + "_curves.png"
    plot_curves(curves, head.history, tune_history)
    report["model"], report["curves"] = args.out, curves
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2, default=float)
    print(f"val_accuracy {report['val_accuracy']:.4f}; model saved to {args.out}, curves to {curves}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
