"""Does the input pipeline keep the model busy? Images/s side by side, per precision. Not a test: prints numbers.

    python benchmarks/pipeline.py [--num-images 200] [--batch-size 32] [--precisions fp32 bf16 int8]

Writes ``--num-images`` real-size photos (500x375 JPEGs made from scikit-image's
sample photos: astronaut, coffee, chelsea, rocket; every other one carries an
EXIF orientation 2..8 written by Pillow, stored sideways where the tag says so)
and measures, on the same files:

* the pipeline alone: :func:`keras_xception.data.dataset.map_batches` with an
  identity function (decode, EXIF orientation, central crop, resize to 299,
  preprocess), with and without ``exif_orientation``; and Pillow on one core
  (open, ``ImageOps.exif_transpose``, crop, bilinear resize) for reference;
* per precision, the pooled Xception (random weights: the speed is the same) as a
  ``keras_xception.Predictor(model, runtime="openvino", precision=...)``
  (int8 calibrated on 32 of the photos):

  * ``model``: fed ready tensors, its marginal rate (the first batch, start-up,
    excluded);
  * ``extract``: the loop :func:`keras_xception.extract_features` runs
    (``map_batches`` over the files with that Predictor), end to end, and its ratio
    to ``model``; also with its start-up (the graph of each ``map_batches`` call,
    the first batch) excluded like the model's: :func:`marginal`.

Each row is the median of ``--repeats`` trials. ``--tf-autotune`` turns tf.data's autotuner back on
(the pipeline turns it off: its thread made an iterator's teardown stall for up to 10 s).

The process's allocator is set as the ``keras-xception`` commands set it
(:func:`keras_xception.cli.keep_freed_memory`; ``--system-allocator``: not).

CPU time per image is this process's, all threads: it moves less than wall time
when other processes load the machine (the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SIZE = (500, 375)  # (width, height): a typical photo, the typical ImageNet validation size


def make_photos(directory, n):
    """``n`` 500x375 JPEGs from scikit-image's sample photos; every other one with an EXIF orientation 2..8."""
    import skimage.data
    from PIL import Image

    sources = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    paths = []
    for i in range(n):
        image = Image.fromarray(sources[i % len(sources)]).resize(SIZE, Image.BICUBIC)
        orientation = 1 if i % 2 == 0 else 2 + (i // 2) % 7
        exif = Image.Exif()
        exif[0x0112] = orientation
        if orientation >= 5:  # stored sideways, as a camera held upright writes it
            image = image.transpose(Image.Transpose.ROTATE_90).resize(SIZE, Image.BICUBIC)
        paths.append(os.path.join(directory, f"photo_{i:04d}.jpg"))
        image.save(paths[-1], quality=90, exif=exif.tobytes())
    return paths


def timed(fn, count):
    """``(images per second, CPU ms per image)`` of ``fn()`` processing ``count`` images."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return count / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / count


def marginal(run, paths, first):
    """``(images per second, CPU ms per image)`` of ``run(paths)`` beyond its first ``first`` images.

    Each ``map_batches`` call builds its ``tf.data`` graph anew (tracing, about 0.17 s here): a
    start-up cost, excluded as the model's is, by timing ``run(paths[:first])`` and subtracting.
    """
    start, cpu = time.perf_counter(), time.process_time()
    run(paths[:first])
    t0, c0 = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    run(paths)
    t1, c1 = time.perf_counter() - start, time.process_time() - cpu
    n = len(paths) - first
    return n / (t1 - t0), 1000 * (c1 - c0) / n


def pillow_one(path, size=299, fraction=0.875):
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        w, h = image.size
        oy, ox = int((h - h * fraction) // 2), int((w - w * fraction) // 2)
        return np.asarray(image.crop((ox, oy, w - ox, h - oy)).resize((size, size), Image.BILINEAR), np.float32)


def median_rate(results):
    """The ``(images per second, CPU ms per image)`` of the trial with the median rate."""
    return sorted(results)[len(results) // 2]


def model_rate(predict, batch, repeats):
    """The marginal rate of ``predict`` on a ready batch: the first call (start-up) excluded."""
    predict(batch)
    return timed(lambda: [predict(batch) for _ in range(repeats)], repeats * len(batch))


def _autotune_on():
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = True
    return options


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-images", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8"])
    p.add_argument("--repeats", type=int, default=1, help="per precision: the median of this many trials")
    p.add_argument("--system-allocator", action="store_true", help="without keep_freed_memory (what extract sets)")
    p.add_argument("--tf-autotune", action="store_true", help="tf.data's autotuner on (the pipeline turns it off)")
    args = p.parse_args(argv)
    if not args.system_allocator:
        from keras_xception.cli import keep_freed_memory

        keep_freed_memory()  # as the keras-xception commands do, before TensorFlow allocates anything

    import keras
    import tensorflow as tf

    import keras_xception as kx
    from keras_xception.data import dataset
    from keras_xception.data.dataset import map_batches

    if args.tf_autotune:
        options = dataset._options
        dataset._options = lambda: options().merge(_autotune_on())
    from keras_xception.tasks.extraction import pooled_feature_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_photos(tmp, args.num_images)
        n = len(paths)
        exif = kx.resolve_transform(exif_orientation=True)
        for label, t in (
            ("pipeline alone, EXIF on (user photos)", exif),
            ("pipeline alone, EXIF off", exif.replace(exif_orientation=False)),
        ):
            run = lambda ps, t=t: map_batches(lambda x: x[:, 0, 0], ps, t, verbose=0)  # noqa: E731
            run(paths[:32])  # warm-up: file cache
            trials = [(timed(lambda r=run: r(paths), n), marginal(run, paths, 32)) for _ in range(args.repeats)]
            rows.append((label, *median_rate([t[0] for t in trials])))
            rows.append((f"{label}, start-up excluded", *median_rate([t[1] for t in trials])))
        rows.append(("Pillow on one core (reference)", *timed(lambda: [pillow_one(q) for q in paths], n)))

        model = pooled_feature_model(weights=None)
        batch = np.stack([kx.load_image(q, exif) for q in paths[: args.batch_size]])
        batch = exif.preprocess(batch)
        for precision in args.precisions:
            calibration = batch if precision == "int8" else None
            predictor = kx.Predictor(model, runtime="openvino", precision=precision, calibration=calibration)
            run = lambda ps, p=predictor: map_batches(p.predict, ps, exif, batch_size=args.batch_size, verbose=0)  # noqa: E731
            trials = []  # model and extract alternate, so that a slow spell of the machine hits both
            for _ in range(args.repeats):
                m = model_rate(predictor.predict, batch, max(2, n // args.batch_size))
                trials.append((m, timed(lambda r=run: r(paths), n), marginal(run, paths, args.batch_size)))
            m, e, s = (median_rate([t[i] for t in trials]) for i in range(3))
            rows.append((f"{precision}: model fed ready tensors", *m))
            rows.append((f"{precision}: extract end to end ({100 * e[0] / m[0]:.0f}% of the model)", *e))
            rows.append((f"{precision}: extract, start-up excluded ({100 * s[0] / m[0]:.0f}% of the model)", *s))

    width = max(len(r[0]) for r in rows)
    print(
        f"{n} JPEGs of 500x375 (half with EXIF orientation 2..8) -> 299x299, batch {args.batch_size}, "
        f"{os.cpu_count()} CPUs, {'system allocator' if args.system_allocator else 'freed memory kept'}, load average {os.getloadavg()[0]:.1f}, TF {tf.__version__}, Keras {keras.__version__}"
    )
    print(f"  {'':<{width}}  {'images/s':>9}  {'CPU ms/image':>12}")
    for label, rate, cpu in rows:
        print(f"  {label:<{width}}  {rate:>9.1f}  {cpu:>12.2f}")


if __name__ == "__main__":
    main()
