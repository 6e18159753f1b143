"""Classify images with ImageNet-pretrained Xception through the Python API.

    python examples/classify.py [IMAGE ...] [--weights imagenet|NAME|PATH] [--top 5]

With no image, classifies the sample photo that matplotlib ships (Grace Hopper).
The official weights are downloaded (and verified) on first use.
"""

import argparse

import numpy as np

import keras_xception as kx
from keras_xception.cli import sample_image


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--top", type=int, default=5)
    args = ap.parse_args(argv)

    model = kx.Xception(weights=args.weights)
    size = tuple(model.input_shape[1:3])
    paths = args.images or [sample_image()]
    batch = np.stack([kx.load_image(p, target_size=size) for p in paths])
    preds = model.predict(kx.preprocess_input(batch), verbose=0)
    for path, top in zip(paths, kx.decode_predictions(preds, top=args.top)):
        print(path)
        for wnid, name, score in top:
            print(f"  {score:.3f}  {name} ({wnid})")


if __name__ == "__main__":
    main()
