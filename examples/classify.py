"""Classify images with ImageNet-pretrained Xception through the Python API.

    python examples/classify.py [IMAGE ...] [--weights imagenet|NAME|PATH|none] [--top 5]

With no image, classifies the sample photo that matplotlib ships (Grace Hopper).
The official weights are downloaded (and verified) on first use; ``--weights none``
means random weights. Errors are reported as the CLI reports them: a message on
stderr, exit status 2 for bad input, 1 when the weights cannot be downloaded.
"""

import argparse
import os
import sys

import numpy as np


def weights_arg(text):
    """``--weights`` as the CLI reads it: ``none`` (any case) means random weights."""
    return None if text.lower() == "none" else text


def fail(error, status):
    """Leave as the CLI does: ``classify.py: error: ...`` on stderr, no traceback."""
    print(f"{os.path.basename(__file__)}: error: {error}", file=sys.stderr)
    raise SystemExit(status)


def classify(args):
    import keras_xception as kx
    from keras_xception.cli import sample_image

    model = kx.Xception(weights=args.weights)
    size = tuple(model.input_shape[1:3])
    paths = args.images or [sample_image()]
    batch = np.stack([kx.load_image(p, target_size=size) for p in paths])
    preds = model.predict(kx.preprocess_input(batch), verbose=0)
    for path, top in zip(paths, kx.decode_predictions(preds, top=args.top)):
        print(path)
        for wnid, name, score in top:
            print(f"  {score:.3f}  {name} ({wnid})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*")
    ap.add_argument("--weights", default="imagenet", type=weights_arg)
    ap.add_argument("--top", type=int, default=5)
    args = ap.parse_args(argv)
    missing = [p for p in args.images if not os.path.isfile(p)]
    if missing:
        ap.error(f"no such file: {', '.join(missing)}")
    from keras_xception.pretrained.download import WeightsDownloadError

    try:
        classify(args)
    except WeightsDownloadError as e:  # offline, or a mirror without the file: the message says what to do
        fail(e, 1)
    except ValueError as e:  # bad arguments or data
        fail(e, 2)


if __name__ == "__main__":
    main()
