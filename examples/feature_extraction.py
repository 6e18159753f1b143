"""Feature extraction and nearest-neighbour image search with Xception.

    python examples/feature_extraction.py photos/ --query photos/cat.jpg --k 5

Computes one feature vector per image under the folder (recursive) with
:func:`keras_xception.extract_features`: ``load_image`` +
``preprocess_input``, then the average-pooled output of the last block
(2048-d), or of ``--layer NAME``. Then ranks all images by cosine similarity
to the query image (default: the first image found) and prints the ``--k``
nearest. ``--out features.npz`` also saves the features (the same file as
``keras-xception extract``).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", help="folder of images (searched recursively)")
    p.add_argument("--query", help="query image (default: the first image in the folder)")
    p.add_argument("--k", type=int, default=5, help="neighbours to show (default 5)")
    p.add_argument("--weights", default="imagenet", type=weights_arg, help="registered name, weights file, or 'none'")
    p.add_argument("--layer", help="use this layer's output (globally average pooled)")
    p.add_argument("--image-size", type=int, help="square input side (default: the weights' size, 299)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--out", help="also save the features to this .npz")
    args = p.parse_args(argv)
    if not os.path.isdir(args.dir):
        p.error(f"DIR {args.dir!r} is not a directory")
    if args.query and not os.path.isfile(args.query):
        p.error(f"--query {args.query!r}: no such file")
    if args.k < 1:
        p.error(f"--k must be >= 1; received {args.k}")
    return args


def weights_arg(text):
    """``--weights`` as the CLI reads it: ``none`` (any case) means random weights."""
    return None if text.lower() == "none" else text


def fail(error, status):
    """Leave as the CLI does: ``feature_extraction.py: error: ...`` on stderr, no traceback."""
    print(f"{os.path.basename(__file__)}: error: {error}", file=sys.stderr)
    raise SystemExit(status)


def cosine_neighbours(features, query, k):
    """Indices and cosine similarities of the ``k`` rows of ``features`` most similar to ``query``."""
    f = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    q = query / max(float(np.linalg.norm(query)), 1e-12)
    sims = f @ q
    order = np.argsort(-sims, kind="stable")[:k]
    return order, sims[order]


def main(argv=None):
    """Print and return the ``--k`` nearest neighbours; exit 2 on bad input, 1 if weights cannot be downloaded."""
    args = parse_args(argv)
    from keras_xception.pretrained.download import WeightsDownloadError

    try:
        return neighbours_of(args)
    except WeightsDownloadError as e:  # offline, or a mirror without the file: the message says what to do
        fail(e, 1)
    except ValueError as e:  # bad arguments or data
        fail(e, 2)


def neighbours_of(args):
    from keras_xception import extract_features
    from keras_xception.tasks.extraction import save_features

    result = extract_features(
        args.dir, weights=args.weights, layer=args.layer, image_size=args.image_size, batch_size=args.batch_size
    )
    if args.out:
        save_features(args.out, result)
    paths = list(result.paths)
    if args.query is None:
        qi, query = 0, result.features[0]
    elif os.path.abspath(args.query) in map(os.path.abspath, paths):
        qi = [os.path.abspath(p) for p in paths].index(os.path.abspath(args.query))
        query = result.features[qi]
    else:  # a query from outside the folder: extract it the same way
        qi = None
        query = extract_features(
            [args.query], weights=args.weights, layer=args.layer, image_size=args.image_size, verbose=0
        ).features[0]
    order, sims = cosine_neighbours(result.features, query, args.k + (qi is not None))
    neighbours = [(paths[i], float(s)) for i, s in zip(order, sims) if i != qi][: args.k]
    print(f"{len(paths)} images, {result.features.shape[1]}-d features. Nearest to {args.query or paths[0]}:")
    for rank, (path, sim) in enumerate(neighbours, 1):
        print(f"  {rank}. {sim:.4f}  {path}")
    return neighbours


if __name__ == "__main__":
    main()
