"""Input-pipeline and evaluation throughput (images/s). Not a test: prints numbers.

    python benchmarks/pipeline.py [--num-images 200] [--batch-size 32] [--eval-images 64] [--repeats 3]

Generates ``--num-images`` JPEGs of 500x375 (the typical ImageNet validation
size) in a class-per-folder tree, then measures, on the same files:

* ``ours``: :func:`keras_xception.data.decode_records` (fused JPEG decode +
  central crop, resize to 299, per-file error isolation), batched, prefetched;
* ``ours, plain map``: the same transform in a plain parallel ``map`` (no
  per-file error isolation), to show what the isolation costs;
* ``keras``: ``keras.utils.image_dataset_from_directory`` (decode, resize the
  whole image to 299; no crop);
* ``model``: Xception at 299 (random weights: the speed is the same) on
  in-memory batches, i.e. the rate the pipeline must sustain;
* ``evaluate``: :func:`keras_xception.evaluate` end to end on the
  first ``--eval-images`` files.

The pipeline runs are interleaved (ours, plain, keras, ours, ...) and the median
of ``--repeats`` is reported, so load from other processes hits all alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_xception import data, evaluation  # noqa: E402


def make_images(directory, n, classes=10, size=(500, 375), seed=0):
    """``n`` smooth random JPEGs of ``size`` (w, h) in ``classes`` WordNet-id folders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    wnids = data.imagenet_wnids()[:classes]
    for i in range(n):
        d = os.path.join(directory, wnids[i % classes])
        os.makedirs(d, exist_ok=True)
        small = rng.integers(0, 256, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize(size, Image.BICUBIC)
        img.save(os.path.join(d, f"img_{i:05d}.JPEG"), quality=90)


def rate(ds):
    """``(images per second, CPU milliseconds per image)`` to iterate ``ds`` (batches of (images, labels)).

    CPU time is this process's, all threads: unlike wall time it hardly moves
    when other processes load the machine.
    """
    start, cpu = time.perf_counter(), time.process_time()
    n = 0
    for batch in ds:
        n += int(batch[0].shape[0])
    return n / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-images", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-images", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    import keras
    import tensorflow as tf

    from keras_xception import Xception
    from keras_xception.data.transform import decode_and_transform

    t = data.resolve_transform("imagenet")
    with tempfile.TemporaryDirectory() as tmp:
        make_images(tmp, args.num_images)
        records = data.folder_records(tmp)

        def ours():
            ds = data.decode_records(records, t)
            return ds.map(lambda i, im, lab, ok: (im, lab)).batch(args.batch_size).prefetch(tf.data.AUTOTUNE)

        def plain():
            ds = records.dataset.map(
                lambda name, lab, path: (decode_and_transform(tf.io.read_file(path), t), lab),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
            return ds.batch(args.batch_size).prefetch(tf.data.AUTOTUNE)

        def keras_dir():
            return keras.utils.image_dataset_from_directory(
                tmp, image_size=t.target_size, batch_size=args.batch_size, shuffle=False, verbose=False
            ).prefetch(tf.data.AUTOTUNE)

        pipelines = {
            "ours (decode_records)": ours,
            "ours without per-file isolation (plain map)": plain,
            "keras image_dataset_from_directory": keras_dir,
        }
        runs = {k: [] for k in pipelines}
        for fn in pipelines.values():
            rate(fn())  # warm-up: file cache, graph construction
        for _ in range(args.repeats):
            for name, fn in pipelines.items():
                runs[name].append(rate(fn()))
        results = {
            k: dict(
                images_per_s=round(statistics.median(r[0] for r in v), 1),
                cpu_ms_per_image=round(statistics.median(r[1] for r in v), 2),
            )
            for k, v in runs.items()
        }

        model = Xception(weights=None)
        x = tf.random.uniform((args.batch_size, 299, 299, 3), -1, 1)
        predict = tf.function(lambda x: model(x, training=False))
        predict(x)
        timings = []
        for _ in range(args.repeats):
            s, c = time.perf_counter(), time.process_time()
            predict(x).numpy()
            timings.append(
                (args.batch_size / (time.perf_counter() - s), 1000 * (time.process_time() - c) / args.batch_size)
            )
        model_key = "model: Xception 299 on in-memory batches"
        results[model_key] = dict(
            images_per_s=round(statistics.median(r[0] for r in timings), 2),
            cpu_ms_per_image=round(statistics.median(r[1] for r in timings), 1),
        )
        report = evaluation.evaluate(
            model, records, transform=t, batch_size=args.batch_size, limit=args.eval_images, verbose=0
        )
        results[f"evaluate(): end to end, {report['count']} images"] = dict(
            images_per_s=report["images_per_second"], cpu_ms_per_image=None
        )
    ours_r = results["ours (decode_records)"]
    ratio = dict(
        by_rate=round(ours_r["images_per_s"] / results[model_key]["images_per_s"], 1),
        by_cpu_time=round(results[model_key]["cpu_ms_per_image"] / ours_r["cpu_ms_per_image"], 1),
    )
    width = max(len(k) for k in results)
    print(
        f"{args.num_images} JPEGs of 500x375 -> 299x299, batch {args.batch_size}, {os.cpu_count()} CPUs, "
        f"TF {tf.__version__}, Keras {keras.__version__}; median of {args.repeats}"
    )
    print(f"  {'':<{width}}  {'images/s':>10}  {'CPU ms/image':>12}")
    for k, v in results.items():
        cpu = "" if v["cpu_ms_per_image"] is None else v["cpu_ms_per_image"]
        print(f"  {k:<{width}}  {v['images_per_s']:>10}  {cpu:>12}")
    print(f"  pipeline / model: {ratio['by_rate']}x by images/s, {ratio['by_cpu_time']}x by CPU time per image")
    results["pipeline / model"] = ratio
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
