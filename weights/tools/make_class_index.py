"""Regenerate keras_xception/resources/imagenet_class_index.json (run once; output is committed).

Sources (both installable from PyPI, no network access beyond that):
* the 1000 ImageNet-1k WordNet ids in class-index order: tensorflow-datasets'
  ``datasets/imagenet2012/labels.txt`` (sorted wnids, the order Keras uses);
* the WordNet lemmas of each synset: ``timm/data/_info/imagenet_synset_to_lemma.txt``
  from the timm wheel (``pip download --no-deps timm``, then unzip that file).

Keras's class names are the first lemma with spaces replaced by underscores
(``n02504458`` "African elephant, Loxodonta africana" -> ``African_elephant``).

Usage:
    python weights/tools/make_class_index.py path/to/imagenet_synset_to_lemma.txt
"""

import json
import os
import sys

import tensorflow_datasets as tfds


def main(lemma_file):
    labels = os.path.join(os.path.dirname(tfds.__file__), "datasets", "imagenet2012", "labels.txt")
    with open(labels) as f:
        wnids = [line.strip() for line in f if line.strip()]
    assert len(wnids) == 1000 and wnids == sorted(wnids)
    lemmas = {}
    with open(lemma_file) as f:
        for line in f:
            wnid, text = line.rstrip("\n").split("\t", 1)
            lemmas[wnid] = text.split(",")[0].strip().replace(" ", "_")
    index = {str(i): [w, lemmas[w]] for i, w in enumerate(wnids)}
    out = os.path.join(
        os.path.dirname(__file__), "..", "..", "keras_xception", "resources", "imagenet_class_index.json"
    )
    with open(out, "w") as f:
        json.dump(index, f, indent=0)
        f.write("\n")
    print(f"wrote {len(index)} classes to {os.path.normpath(out)}")


if __name__ == "__main__":
    main(sys.argv[1])
