"""The commands of ``keras-xception``: each takes the parsed arguments and the real standard output (results go
there; progress and messages go to standard error). :func:`check` runs first, before TensorFlow is imported;
heavy modules are imported inside the commands."""

from __future__ import annotations

import glob
import json
import os
import sys

from keras_xception.data.files import list_folder


class PartialFailure(Exception):
    """The command did its work for part of the input; the message is the summary line (exit 1)."""


def sample_image() -> str:
    """Path of a sample photo that an installed dependency ships (matplotlib's Grace Hopper)."""
    import matplotlib.cbook

    return str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def check(args) -> None:
    """Every check that needs no model, run before TensorFlow is imported; ``ValueError`` says what is wrong.

    The positional images of ``predict`` are split into the existing ones (``args.images``) and the
    missing ones (``args.missing``: ``(path, reason)``, skipped like unreadable files), unless none exists.
    """
    for dest, flag in (("out", "--out"), ("report", "--report"), ("report_path", "--report"), ("cam", "--cam")):
        path = getattr(args, dest, None)
        folder = os.path.dirname(os.path.abspath(path or "."))
        if path and not os.path.isdir(folder):
            raise ValueError(f"{flag}: the folder {folder!r} of {path!r} does not exist.")
    if getattr(args, "model", None) is not None:
        _check_model(args)
    elif getattr(args, "weights", None) is not None:
        _check_weights(args.weights)
        if getattr(args, "arch", None) and args.weights == "imagenet":  # the arch's own ImageNet weights
            from keras_xception.pretrained.registry import imagenet_of

            args.weights = imagenet_of(args.arch)
    if getattr(args, "precision", None) is not None:
        args.runtime = runtime_of(args)
    if hasattr(args, "images"):
        args.images, args.missing = _existing(args.images or [sample_image()], args.strict)
    for dest, flag in (("dir", "DIR"), ("holdout", "--holdout")):
        if getattr(args, dest, None) is not None:
            _check_folder(getattr(args, dest), flag)
    if args.command == "extract":
        _check_input(args)
    if getattr(args, "val_dir", None) is not None and os.path.isdir(args.val_dir):
        list_folder(args.val_dir)  # a missing ImageNet folder: data.imagenet says where to get it
    if args.command == "evaluate":
        _check_evaluate(args)
    if args.command == "train":
        _check_train(args)
    if args.command == "export":
        from keras_xception.deploy.runtimes import check_export_path

        check_export_path(args.out, args.format)


def _check_folder(path, flag=None):
    """An existing, readable folder with at least one file somewhere under it."""
    if not os.path.isdir(path):
        raise ValueError(f"{flag} must be an existing folder of images; received {path!r} (no such folder).")
    list_folder(path)
    if not any(files for _, _, files in os.walk(path)):
        raise ValueError(f"No image files under {path!r}{f' ({flag})' if flag else ''}: the folder is empty.")


def _check_input(args):
    """``extract``: INPUT exists (a folder with files, a list file or TFRecord files); --address with --engine ray."""
    if os.path.isdir(args.input):
        _check_folder(args.input, "INPUT")
    elif not glob.glob(args.input):
        raise ValueError(
            f"INPUT must be a folder of images, a .txt or .parquet list or TFRecord files: {args.input!r}."
        )
    if args.address and args.engine != "ray":
        raise ValueError("--address is the Ray cluster of --engine ray; add --engine ray.")


def _existing(inputs, strict):
    """``(existing paths, [(missing path, reason)])``; ``ValueError`` when nothing exists, or with ``strict``."""
    missing = [(p, "No such file or folder") for p in inputs if not os.path.exists(p)]
    if missing and (strict or len(missing) == len(inputs)):
        raise ValueError(f"No such file or folder: {', '.join(repr(p) for p, _ in missing)}.")
    for path in filter(os.path.isdir, inputs):
        _check_folder(path)
    return [p for p in inputs if os.path.exists(p)], missing


def _check_model(args):
    if not os.path.isfile(args.model):
        raise ValueError(
            f"No model file at {args.model!r}: --model takes a saved .keras model (from `keras-xception train`)."
        )
    given = [d for d, default in args.weights_only.items() if getattr(args, d) != default]
    if given:
        raise ValueError(
            f"{', '.join('--' + d.replace('_', '-') for d in given)} cannot be combined with --model: "
            f"`{args.command} --model` uses the model's own weights, input size and transform."
        )


def _check_weights(weights):
    from keras_xception.pretrained import registry

    preset = os.path.isfile(os.path.join(weights, "config.json"))  # a KerasHub preset directory
    if not registry.is_registered(weights) and not os.path.isfile(weights) and not preset:
        known = ", ".join(r.name for r in registry.list_records())
        raise ValueError(
            f"--weights must be a registered weight set ({known}), a weights file, a KerasHub preset directory "
            f"or 'none'; received {weights!r} (no such file)."
        )


def _check_evaluate(args):
    if args.tfds_manual_dir is not None and args.tfds_data_dir is None:
        raise ValueError("--tfds-manual-dir needs --tfds-data-dir (where tfds writes the prepared data).")
    if args.model is not None:
        if args.val_dir is None:
            raise ValueError(
                "evaluate --model needs --val-dir DIR: a folder with one sub-folder of images per class, named "
                "like the model's classes (--tfds-data-dir and --tfrecords are ImageNet sources)."
            )
        _check_folder(args.val_dir, "--val-dir")  # class folders, a subset of the model's classes


def _check_train(args):
    """DATA_DIR has at least two classes; the options pass :class:`~keras_xception.tasks.options.TrainOptions`."""
    if not args.out.endswith(".keras"):
        raise ValueError(f"--out must be a .keras file (the Keras model format); received {args.out!r}.")
    _check_folder(args.data_dir, "DATA_DIR")
    path = args.data_dir
    names = [d for d in list_folder(path) if os.path.isdir(os.path.join(path, d)) and not d.startswith(".")]
    if len(names) < 2:
        raise ValueError(
            f"DATA_DIR {path!r} must hold one sub-folder of images per class (at least 2 classes); it has "
            f"{len(names)}: {names}."
        )
    if args.val_dir is not None:
        _check_folder(args.val_dir, "--val-dir")
    if args.augment and not args.fine_tune_epochs:
        raise ValueError(
            "--augment applies to fine-tuning only (the head trains on cached features, each image as it is); "
            "add --fine-tune-epochs N."
        )
    _train_options(args)


def runtime_of(args) -> str:
    """``--runtime`` (keras for fp32, auto for bf16/int8 when not given), checked with ``--precision`` and
    ``--calibration``."""
    runtime = getattr(args, "runtime", None) or ("keras" if args.precision == "fp32" else "auto")
    if args.calibration is not None and args.precision != "int8":
        raise ValueError(f"--calibration is only used with --precision int8; received --precision {args.precision}.")
    if args.precision == "int8" and args.calibration is None:
        raise ValueError(
            "--precision int8 needs --calibration DIR: a folder of images like the ones to be run (about 300), "
            "read with the model's transform."
        )
    if args.calibration is not None:
        _check_folder(args.calibration, "--calibration")
    if runtime == "keras" and args.precision != "fp32":
        raise ValueError(
            f"--runtime keras runs fp32 only; for --precision {args.precision} use --runtime auto, openvino"
            + (" or onnxruntime." if args.precision == "int8" else ".")
        )
    return runtime


def inference(args) -> dict:
    """``runtime`` (as :func:`check` set it), ``precision`` and ``calibration`` of a model run."""
    return dict(runtime=args.runtime, precision=args.precision, calibration=args.calibration)


def classifier_of(args):
    """The ``--model`` classifier (:class:`keras_xception.tasks.classifier.Classifier`), or None with ``--weights``."""
    if getattr(args, "model", None) is None:
        return None
    from keras_xception.tasks.classifier import load_classifier

    return load_classifier(args.model)


def _run_model(source, model, transform, args, **options):
    """The one run of a model over image files (predict, extract): the task layer's ``extract_features``."""
    from keras_xception.tasks.extraction import extract_features

    options.update(batch_size=args.batch_size, verbose=args.verbose, strict=args.strict, **inference(args))
    return extract_features(source, model=model, transform=transform, **options)


def _model(args, **kwargs):
    """``(model, transform, classifier)`` of ``--model`` (a classifier from ``train``; for ``quantize``, any saved
    Keras model) or of ``--weights`` and ``--image-size`` (``kwargs``: the Xception's other arguments)."""
    from keras_xception.data.metadata import read_record
    from keras_xception.data.transform import resolve_transform
    from keras_xception.xception import build

    if args.model is None:
        shape = None if args.image_size is None else (args.image_size, args.image_size, 3)
        model = build(args.arch, weights=args.weights, input_shape=shape, **kwargs)
        return model, resolve_transform(args.weights, model=model), None
    if args.command == "quantize" and read_record(args.model) is None:  # a Keras model not made by `train`
        import keras

        return keras.saving.load_model(args.model), None, None
    classifier = classifier_of(args)
    return classifier.model, classifier.transform, classifier


def _report_skipped(skipped, total, what="images"):
    """Raise :class:`PartialFailure` with a summary when some inputs were skipped (each was warned about)."""
    if skipped:
        raise PartialFailure(f"{len(skipped)} of {total} {what} could not be read and were skipped (listed above).")


def _print_json(data, stdout):
    json.dump(data, stdout, indent=2)
    print(file=stdout)


def _print_table(rows, stdout, align=None, indent="  "):
    """``rows`` (the first: the header) in columns as wide as their widest cell; ``align``: ``<`` or ``>`` per
    column (default: the first left, the others right)."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    align = align or "<" + ">" * (len(widths) - 1)
    for row in rows:
        print(indent + "  ".join(f"{c:{a}{w}}" for c, a, w in zip(row, align, widths)).rstrip(), file=stdout)


def _print_per_class(report, class_names, stdout):
    """Per class: precision, recall and support (``evaluate --model``, ``train``)."""
    rows = [("class", "precision", "recall", "support")]
    for name in class_names:
        r = report["per_class"][name]
        recall = "-" if r["recall"] is None else f"{r['recall']:.3f}"
        rows.append((name, f"{r['precision']:.3f}", recall, r["support"]))
    _print_table(rows, stdout)


def predict(args, stdout) -> int:
    """Top classes of each image: ImageNet's (``--weights``) or the classifier's (``--model``)."""
    import warnings

    from keras_xception.data.files import list_images
    from keras_xception.data.results import Skipped

    paths, problems = [], []
    for item in args.images:
        paths += list_images(item, problems=problems, strict=args.strict) if os.path.isdir(item) else [item]
    if not paths:
        raise ValueError(f"No image files under {', '.join(repr(p) for p in args.images)}.")
    problems, missing = [Skipped(*p) for p in problems], [Skipped(*p) for p in args.missing]
    for s in [*problems, *missing]:  # the pipeline warns about the files it cannot read
        warnings.warn(f"Skipping {s}", stacklevel=2)
    classifier = classifier_of(args)
    if classifier is not None:
        result = _run_model(paths, classifier.model, classifier.transform, args)
        rows = [[dict(name=n, score=p) for n, p in classifier.top(probs, args.top)] for probs in result.features]
    else:
        from keras_xception.data.transform import resolve_transform
        from keras_xception.model.imagenet import decode_predictions

        model = _imagenet_classifier(args.weights, args.arch)
        transform = resolve_transform(args.weights, model=model, exif_orientation=True)  # user photos: upright
        result = _run_model(paths, model, transform, args)
        tops = decode_predictions(result.features, top=args.top)
        rows = [[dict(wnid=w, name=n, score=p) for w, n, p in top] for top in tops]
        if args.cam:
            _write_cam(args.cam, model, transform, result, tops)
    skipped = [*problems, *result.skipped, *missing]  # extract_features gives Skipped already
    if args.json:
        out = [{"path": path, "predictions": top} for path, top in zip(result.paths, rows)]
        _print_json(out + [{"path": s.path, "error": s.reason} for s in skipped], stdout)
    else:
        _print_predictions(result.paths, rows, stdout)
    _report_skipped(skipped, len(result.paths) + len(skipped))
    return 0


def _print_predictions(paths, rows, stdout):
    """Per image its top classes: rank, name, ImageNet wnid (with ``--weights``) and score."""
    for path, top in zip(paths, rows):
        print(path, file=stdout)
        table = [(f"{i}.", r["name"], r.get("wnid", ""), f"{r['score']:.4f}") for i, r in enumerate(top, 1)]
        _print_table(table, stdout, align="><<>")


def _imagenet_classifier(weights, arch=None):
    """The 1000-class ImageNet Xception for ``predict``; a clear error for weights without that classifier."""
    from keras_xception.pretrained import formats, loading
    from keras_xception.xception import build

    record, path = loading.resolve_weights(weights)
    if record is not None:
        classes = record.classes if record.include_top else None
    else:
        classes = formats.top_classes(path) if path else 1000
    if classes is None:
        raise ValueError(
            f"--weights {weights!r} holds no classifier (an Xception without its top), so predict has no "
            f"classes to name. For feature vectors use `keras-xception extract DIR --weights {weights}`; to "
            "classify your own classes, train a classifier on the backbone (`keras-xception train`, or "
            "keras_xception.transfer: build_classifier + train_head) and run it with --model."
        )
    if classes != 1000:
        raise ValueError(
            f"--weights {weights!r} has a {classes}-class classifier; predict names ImageNet's 1000 classes. "
            "Load that model in Python (keras.saving.load_model) to use its own classes."
        )
    return build(arch, weights=weights)


def _write_cam(out, model, transform, result, tops):
    """``predict --cam``: a Grad-CAM heatmap of each image's top class, in one PNG."""
    import numpy as np

    from keras_xception.data.transform import load_image
    from keras_xception.tasks.gradcam import grad_cam, save_cam_figure

    panels = []
    for path, probs, top in zip(result.paths, result.features, tops):
        image = load_image(path, transform)
        heatmap, _ = grad_cam(model, transform.preprocess(image[None]), class_index=int(np.argmax(probs)))
        panels.append((image, heatmap, f"{os.path.basename(path)}: {top[0][1]} ({top[0][2]:.3g})"))
    if panels:
        save_cam_figure(out, panels)
        print(f"Grad-CAM heatmaps written to {out}", file=sys.stderr)


def extract(args, stdout) -> int:
    """Feature vectors of every image under DIR: the backbone of ``--weights`` or of the ``--model`` classifier."""
    from keras_xception.data.transform import resolve_transform
    from keras_xception.model.features import feature_model
    from keras_xception.tasks.extraction import pooled_feature_model

    classifier = classifier_of(args)
    if classifier is not None:
        transform, layer = classifier.transform, args.layer or "avg_pool"
        try:
            model = feature_model(classifier.model, layer, pool=True, name="classifier_features")
        except ValueError as e:
            raise ValueError(f"--layer {layer!r}: {e}") from None
    else:
        transform = resolve_transform(args.weights, target_size=args.image_size, exif_orientation=True)
        model = pooled_feature_model(args.weights, args.layer, transform.target_size, arch=args.arch)
    options = {k: getattr(args, k) for k in ("out", "overwrite", "shard_size", "engine", "address")}
    r = _run_model(args.input, model, transform, args, **options)  # a manifest with out a folder, else Results
    n, d = (r["images"], r["dimension"]) if isinstance(r, dict) else r.features.shape
    skipped, where = (r["skipped"], f"in {r['shards']} Parquet shards in") if isinstance(r, dict) else (r.skipped, "to")
    print(f"{n} images -> {n} x {d} features written {where} {args.out}", file=sys.stderr)
    print(args.out, file=stdout)
    _report_skipped(skipped, n + len(skipped), "images or folders")
    return 0


def evaluate(args, stdout) -> int:
    """ImageNet top-1/top-5 of ``--weights``, or accuracy and confusion matrix of ``--model`` on class folders."""
    report, chief = (_evaluate_classifier if args.model is not None else _evaluate_imagenet)(args, stdout)
    if chief and args.report:
        with open(args.report, "w") as f:
            _print_json(report, f)
    _report_skipped(report["skipped"], report["count"] + len(report["skipped"]))
    return 0


def _evaluate_imagenet(args, stdout):
    from keras_xception.tasks import evaluation

    strategy = evaluation.make_strategy(args.strategy)  # first: multi-worker is set up before TF runs anything
    from keras_xception.data import imagenet
    from keras_xception.data.transform import resolve_transform
    from keras_xception.xception import build

    overrides = dict(crop_fraction=args.crop_pct, resize_mode=args.resize_mode, interpolation=args.interpolation)
    transform = resolve_transform(args.weights, target_size=args.image_size, **overrides)
    if args.tfds_data_dir is not None:
        records = imagenet.tfds_records(args.tfds_data_dir, args.tfds_manual_dir)
    elif args.val_dir is not None:
        records = imagenet.folder_records(args.val_dir, strict=args.strict)
    else:
        records = imagenet.tfrecord_records(args.tfrecords, label_offset=args.label_offset)
    shape = None if args.image_size is None else (args.image_size, args.image_size, 3)
    options = {name: getattr(args, name) for name in ("batch_size", "limit", "strict", "per_class")}
    options.update(inference(args), strategy=strategy, verbose=args.verbose)
    report = evaluation.evaluate(
        lambda: build(args.arch, weights=args.weights, input_shape=shape), records, transform=transform, **options
    )
    report.update(weights=args.weights, runtime=args.runtime, precision=args.precision)
    if not evaluation.is_chief(strategy):
        return report, False
    top1, top5 = ("n/a" if v is None else f"{100 * v:.2f}%" for v in (report["top1"], report["top5"]))
    print(
        f"top-1 {top1}  top-5 {top5}  over {report['count']} images ({len(report['skipped'])} skipped), "
        f"{report['images_per_second']} images/s, {report['elapsed_seconds']} s",
        file=stdout,
    )
    return report, True


def _evaluate_classifier(args, stdout):
    from keras_xception.tasks.evaluation import evaluate_classifier

    options = dict(batch_size=args.batch_size, strict=args.strict, verbose=args.verbose, **inference(args))
    report = evaluate_classifier(args.model, args.val_dir, **options)
    report["model"] = args.model
    top5 = f"  top-5 {100 * report['top5_accuracy']:.2f}%" if "top5_accuracy" in report else ""
    print(
        f"accuracy {100 * report['accuracy']:.2f}%{top5}  over {report['count']} images "
        f"({len(report['skipped'])} skipped), {report['elapsed_seconds']} s",
        file=stdout,
    )
    names, matrix = report["class_names"], report["confusion_matrix"]
    _print_per_class(report, names, stdout)
    if len(names) > 20:
        print(f"  (confusion matrix of {len(names)} classes: see the JSON report)", file=stdout)
    else:
        print("  confusion matrix (rows: true class, columns: predicted):", file=stdout)
        rows = [("", *names), *([name, *row] for name, row in zip(names, matrix))]
        _print_table(rows, stdout, align=">" * len(rows[0]))
    return report, True


def weights_list(args, stdout) -> int:
    from keras_xception.pretrained import download, registry

    rows = []
    for r in registry.list_records():
        path = download.cached_path(r)
        rows.append(dict(r.to_dict(), cached=os.path.isfile(path), cache_path=path))
    if args.json:
        _print_json(rows, stdout)
        return 0
    acc = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    table = [("name", "top", "top1", "top5", "cached", "file")]
    for r in rows:
        cached = "yes" if r["cached"] else "no"
        table.append((r["name"], r["include_top"], acc(r["top1"]), acc(r["top5"]), cached, r["file_name"]))
    _print_table(table, stdout, align="<<>><<", indent="")
    mirror = os.environ.get(download.MIRROR_ENV, "")
    print(f"cache: {download.cache_dir()}   mirror: ${download.MIRROR_ENV}={mirror}", file=stdout)
    return 0


def weights_download(args, stdout) -> int:
    from keras_xception.pretrained import download

    for name in args.names or ["imagenet", "imagenet_notop"]:
        print(f"{name}: {download.get_file(name, force_download=args.force)}", file=stdout)
    return 0


def weights_verify(args, stdout) -> int:
    """Registered sets' cached files (hash), and given files (they load into an Xception)."""
    from keras_xception.model.spec import MIN_INPUT_SIZE
    from keras_xception.pretrained import download, loading, registry

    failed = []
    names = args.names or ([] if args.file else [r.name for r in registry.list_records()])
    for name in names:
        r = registry.get_record(name)
        path = download.cached_path(r)
        if not os.path.isfile(path):
            status = f"MISSING (run: keras-xception weights download {name})"
            failed.append(name)
        elif download.verify_file(path, r):
            status = f"OK ({r.hash_algorithm} {r.file_hash})" if r.file_hash else "OK (a whole safetensors file)"
        else:
            digest = download.file_digest(path, r.hash_algorithm or "sha256")
            status = f"MISMATCH ({r.hash_algorithm} {digest}, expected {r.file_hash})"
            failed.append(name)
        print(f"{name}: {status}  {path}", file=stdout)
    for path in args.file:
        if not os.path.isfile(path):
            raise ValueError(f"--file: no such file: {path!r}.")
        _, top = loading.xception_from_file(path, size=(MIN_INPUT_SIZE, MIN_INPUT_SIZE))
        digests = f"sha256 {download.file_digest(path, 'sha256')}  md5 {download.file_digest(path, 'md5')}"
        print(f"{path}: loads into Xception(include_top={top}); {digests}", file=stdout)
    if failed:
        raise PartialFailure(f"{len(failed)} of {len(names)} weight sets missing or not matching: {', '.join(failed)}.")
    return 0


def weights_convert(args, stdout) -> int:
    from keras_xception.pretrained import download, loading

    _, top = loading.convert_weights(args.src, args.dst, format=args.format)
    digest = download.file_digest(args.dst, "sha256")
    print(f"wrote {args.dst} ({args.format}, include_top={top}); sha256 {digest}", file=stdout)
    return 0


def summary(args, stdout) -> int:
    """Parameters and MACs of the variant given by the options (those unlike Xception's defaults), or of
    ``--ablations``; ``--layers``: per layer too."""
    import inspect

    from keras_xception.model import analysis
    from keras_xception.xception import Xception, build

    defaults = inspect.signature(Xception).parameters
    names = ("residual", "intermediate_activation", "middle_flow_blocks", "width_multiplier", "output_stride")
    given = {k: getattr(args, k) for k in names if getattr(args, k) != defaults[k].default}
    arch = args.arch or "xception"
    if arch != "xception" and (args.ablations or set(given) - {"output_stride"}):
        raise ValueError(f"--arch {arch} takes --output-stride only of the variant options (they are Xception's).")
    rows, models = [], []
    for kw in [dict(kw) for kw in analysis.ABLATIONS] if args.ablations else [given]:
        shape = (args.size, args.size, 3)
        model = build(arch, weights=None, include_top=not args.no_top, input_shape=shape, **kw)
        name = ", ".join(f"{k}={v}" for k, v in kw.items()) or "official"
        rows.append(
            dict(
                analysis.summary(model), name=name if arch == "xception" else f"{arch} {name}".replace(" official", "")
            )
        )
        models.append(model)
    layers = [analysis.layer_costs(m) for m in models] if args.layers else []
    if args.json:
        out = [dict(r, input_shape=list(r["input_shape"]), output_shape=list(r["output_shape"])) for r in rows]
        for r, costs in zip(out, layers):
            r["layers"] = [dict(c.__dict__, output_shape=list(c.output_shape)) for c in costs]
        _print_json(out, stdout)
        return 0
    for r, costs in zip(rows, layers):
        print(f"{r['name']}:", file=stdout)
        table = [("layer", "class", "output", "params", "MMACs")]
        for c in costs:
            shape = "x".join(str(d) for d in c.output_shape[1:])
            table.append((c.name, c.class_name, shape, c.params, f"{c.macs / 1e6:.2f}"))
        _print_table(table, stdout, align="<<>>>")
    print(analysis.format_summary(rows), file=stdout)
    return 0


def export(args, stdout) -> int:
    """Export the ``--weights`` Xception or the ``--model`` classifier, with its transform (and class names)."""
    from keras_xception.deploy.export import ParityError
    from keras_xception.deploy.export import export as write_artifact

    pooling = None if args.include_top or args.pooling == "none" else args.pooling
    model, transform, classifier = _model(args, include_top=args.include_top, pooling=pooling)
    print(
        f"exporting {args.model or model.name} ({model.count_params():,} parameters, input {model.input_shape}) "
        f"as {args.format} to {args.out} ...",
        file=sys.stderr,
        flush=True,
    )
    options = {name: getattr(args, name) for name in ("format", "precision", "calibration", "calibration_size")}
    class_names = None if classifier is None else classifier.class_names
    try:
        write_artifact(
            model, args.out, transform=transform, class_names=class_names, check=not args.no_check, **options
        )
    except ParityError as e:
        raise PartialFailure(f"parity check failed: {e}") from None
    print(args.out, file=stdout)
    return 0


def quantize(args, stdout) -> int:
    """int8/bf16 model measured against fp32 on held-out images, written only if it agrees."""
    from keras_xception.deploy.quantization import out_runtime
    from keras_xception.deploy.quantization import quantize as quantize_model

    if args.out is not None:
        out_runtime(args.out, args.runtime)  # a bad --out fails before the model is built
    model, transform, _ = _model(args, include_top=not args.features, pooling="avg" if args.features else None)
    names = ("precision", "runtime", "out", "min_agreement", "calibration_size", "holdout_size", "report")
    options = {name: getattr(args, name) for name in names}
    report = quantize_model(model, args.calibration, args.holdout, transform=transform, **options)
    figures = [f"{k} {report[k]:.4f}" for k in ("top1_agreement", "top5_overlap") if k in report]
    figures += [f"cosine {report['cosine_mean']:.4f} (min {report['cosine_min']:.4f})"]
    figures += [f"max |diff| {report['max_abs_diff']:.3g}", f"mean |diff| {report['mean_abs_diff']:.3g}"]
    print(
        f"{report['precision']} on {report['runtime']} vs fp32 over {report['holdout_images']} held-out images: "
        + ", ".join(figures),
        file=stdout,
    )
    if report["written"]:
        print(f"written to {report['written']}", file=stdout)
    if not report["passed"]:
        raise PartialFailure(
            f"{report['gate']} {report['value']:.4f} < --min-agreement {report['min_agreement']}"
            + ("; nothing was written" if args.out else "")
        )
    return 0


def _train_options(args) -> dict:
    """The :class:`~keras_xception.tasks.options.TrainOptions` among ``args``, checked (no TensorFlow)."""
    import dataclasses

    from keras_xception.tasks.options import TrainOptions

    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainOptions) if hasattr(args, f.name)}
    TrainOptions(**options)
    return options


def train(args, stdout) -> int:
    """Train a classifier on DATA_DIR (class folders); write the model, plots and report."""
    from keras_xception.tasks import reports, training

    classifier, report = training.train(args.data_dir, **_train_options(args))
    if report["outputs"]:  # written by the chief only
        print(reports.summary(report), file=stdout)
        _print_per_class(report, classifier.class_names, stdout)
        for what, path in report["outputs"].items():
            print(f"{what.replace('_', ' ')}: {path}", file=stdout)
    _report_skipped(report["skipped"], report["num_train"] + report["num_val"] + len(report["skipped"]))
    return 0
