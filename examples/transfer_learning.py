"""Transfer learning with a pretrained Xception in one call: ``keras_xception.train``.

    python examples/transfer_learning.py --data-dir photos/ --out flowers.keras --report report.json

``--data-dir`` is a class-per-folder tree (``photos/daisy/*.jpg``,
``photos/tulip/*.jpg``, ...); without it the tfds ``tf_flowers`` dataset is
used (downloaded on first use, about 220 MB, and written once as such a tree).
The same as ``keras-xception train photos/ --out flowers.keras``: the head is
trained on cached backbone features until the validation loss stops improving
(``--epochs auto``), then optionally fine-tuned (``--fine-tune-epochs``, with
``--augment``). The classifier file knows its class names and its transform:
``keras_xception.load_classifier(path).classify(["cat.jpg"])``, or
``keras-xception predict --model flowers.keras cat.jpg``.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="class-per-folder image tree (default: tfds tf_flowers)")
    p.add_argument("--weights", default="imagenet", type=weights_arg, help="registered name, weights file, or 'none'")
    p.add_argument("--image-size", type=int, default=299, help="square input side, >= 71 (default 299)")
    p.add_argument("--epochs", default="auto", help="head epochs: auto (early stopping) or N (default auto)")
    p.add_argument("--fine-tune-epochs", type=int, default=0, help="fine-tuning epochs; 0 skips it (default 0)")
    p.add_argument("--augment", action="store_true", help="augment the images while fine-tuning")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--val-split", type=float, default=0.2, help="validation fraction, seeded (default 0.2)")
    p.add_argument("--out", default="model.keras", help="output .keras model (default model.keras)")
    p.add_argument("--report", help="write the JSON report here")
    args = p.parse_args(argv)
    if not 0 < args.val_split < 1:
        p.error(f"--val-split must be in (0, 1); received {args.val_split}")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        p.error(f"--data-dir {args.data_dir!r} is not a directory")
    if args.epochs != "auto":
        try:
            args.epochs = int(args.epochs)
        except ValueError:
            p.error(f"--epochs must be 'auto' or an integer; received {args.epochs!r}")
    return args


def weights_arg(text):
    """``--weights`` as the CLI reads it: ``none`` (any case) means random weights."""
    return None if text.lower() == "none" else text


def fail(error, status):
    """Leave as the CLI does: ``transfer_learning.py: error: ...`` on stderr, no traceback."""
    print(f"{os.path.basename(__file__)}: error: {error}", file=sys.stderr)
    raise SystemExit(status)


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


def flowers_tree(folder):
    """tf_flowers written once as ``folder/<class>/<index>.jpg`` (the encoded JPEGs as they are)."""
    if not os.path.isdir(folder):
        ds, classes = load_tfds_flowers()
        tmp = folder + ".partial"
        for index, (contents, label) in enumerate(ds.as_numpy_iterator()):
            os.makedirs(os.path.join(tmp, classes[label]), exist_ok=True)
            with open(os.path.join(tmp, classes[label], f"{index:05d}.jpg"), "wb") as f:
                f.write(contents)
        os.replace(tmp, folder)
    return folder


def main(argv=None):
    args = parse_args(argv)
    import keras_xception as kx
    from keras_xception.pretrained.download import WeightsDownloadError

    data_dir = args.data_dir or flowers_tree(
        os.path.join(os.path.expanduser("~"), "tensorflow_datasets", "tf_flowers_folders")
    )
    try:
        classifier, report = kx.train(
            data_dir,
            val_split=args.val_split,
            weights=args.weights,
            image_size=args.image_size,
            epochs=args.epochs,
            fine_tune_epochs=args.fine_tune_epochs,
            augment=args.augment,
            batch_size=args.batch_size,
            out=args.out,
            report_path=args.report,
        )
    except WeightsDownloadError as e:  # offline, or a mirror without the file: the message says what to do
        fail(e, 1)
    except ValueError as e:  # bad arguments or data
        fail(e, 2)
    print(
        f"val_accuracy {report['val_accuracy']:.4f} ({', '.join(classifier.class_names)}); saved to {args.out}",
        file=sys.stderr,
    )
    return report


if __name__ == "__main__":
    main()
