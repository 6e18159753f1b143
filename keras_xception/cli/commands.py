"""The commands of ``keras-xception``: each takes the parsed arguments and the real standard output
(results go there; progress and messages go to standard error) and returns the exit status.

Heavy modules are imported inside the commands, so the parser answers without TensorFlow.
"""

from __future__ import annotations

import json
import os
import sys

__all__ = [
    "PartialFailure",
    "sample_image",
    "predict",
    "extract",
    "evaluate",
    "weights_list",
    "weights_download",
    "weights_verify",
    "weights_convert",
    "summary",
    "export",
]


class PartialFailure(Exception):
    """The command did its work for part of the input; the message is the summary line (exit 1)."""


def sample_image() -> str:
    """Path of a sample photo that an installed dependency ships (matplotlib's Grace Hopper)."""
    import matplotlib.cbook

    return str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def _check_out_dir(path, flag):
    """A clear error up front (not after the work) when an output file's folder is missing."""
    if path:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise ValueError(f"{flag}: the folder {folder!r} of {path!r} does not exist.")


def _report_skipped(skipped, total, what="images"):
    """Raise :class:`PartialFailure` with a summary when some inputs were skipped (each was warned about)."""
    if skipped:
        raise PartialFailure(f"{len(skipped)} of {total} {what} could not be read and were skipped (listed above).")


def _image_paths(inputs, strict):
    """Image files from files and folders (folders searched recursively); ``(paths, problems)``."""
    from keras_xception.data.files import list_images

    paths, problems = [], []
    for item in inputs:
        if os.path.isdir(item):
            paths += list_images(item, problems=problems, strict=strict)
        elif os.path.exists(item) or not strict:
            paths.append(item)  # unreadable or undecodable files are reported by the pipeline
        else:
            raise ValueError(f"No such file or folder: {item!r}.")
    return paths, problems


def runtime_of(args) -> str:
    """``--runtime``, defaulting to keras for fp32 and to auto for bf16/int8 (keras runs fp32 only)."""
    if args.runtime is not None:
        return args.runtime
    return "keras" if args.precision == "fp32" else "auto"


def check_calibration(args) -> None:
    """``--precision`` and ``--calibration`` of every command, checked before any model is built."""
    if args.calibration is not None and args.precision != "int8":
        raise ValueError(f"--calibration is only used with --precision int8; received --precision {args.precision}.")
    if args.precision == "int8" and args.calibration is None:
        raise ValueError(
            "--precision int8 needs --calibration DIR: a folder of images like the ones to be run (about 300), "
            "read with the model's transform."
        )
    if args.calibration is not None and not os.path.isdir(args.calibration):
        raise ValueError(f"--calibration must be an existing folder of images; received {args.calibration!r}.")


def inference_options(args) -> dict:
    """runtime, precision and calibration of predict, extract and evaluate, checked before any model is built."""
    check_calibration(args)
    runtime = runtime_of(args)
    if runtime == "keras" and args.precision != "fp32":
        raise ValueError(
            f"--runtime keras runs fp32 only; for --precision {args.precision} use --runtime auto, openvino"
            + (" or onnxruntime." if args.precision == "int8" else ".")
        )
    return dict(runtime=runtime, precision=args.precision, calibration=args.calibration)


def write_predictions(paths, tops, skipped, as_json, stdout, width) -> int:
    """``predict``'s ending: per image its top classes (dicts of ``name``, ``score`` and maybe
    ``wnid``) as a table or ``--json`` on stdout, unreadable files in the JSON and on stderr."""
    if as_json:
        out = [{"path": path, "predictions": top} for path, top in zip(paths, tops)]
        out += [{"path": path, "error": reason} for path, reason in skipped]
        json.dump(out, stdout, indent=2)
        print(file=stdout)
    else:
        for path, top in zip(paths, tops):
            print(path, file=stdout)
            for rank, row in enumerate(top, 1):
                wnid = f" {row['wnid']}" if "wnid" in row else ""
                print(f"  {rank}. {row['name']:<{width}}{wnid}  {row['score']:.4f}", file=stdout)
    _report_skipped(skipped, len(paths) + len(skipped))
    return 0


def write_features(out, result, stdout) -> int:
    """``extract``'s ending: the .npz, its path on stdout, a summary and the skipped files on stderr."""
    from keras_xception.tasks.extraction import save_features

    out = out if out.endswith(".npz") else out + ".npz"
    save_features(out, result)
    n, d = result.features.shape
    print(f"{n} images -> {n} x {d} features written to {out}", file=sys.stderr)
    print(out, file=stdout)
    _report_skipped(result.skipped, n + len(result.skipped), "images or folders")
    return 0


def export_precision(args) -> dict:
    """``precision``, ``calibration`` and ``calibration_size`` of ``export``, checked before any model is built."""
    check_calibration(args)
    return dict(precision=args.precision, calibration=args.calibration, calibration_size=args.calibration_size)


def _imagenet_classifier(weights):
    """The 1000-class ImageNet Xception for ``predict``; a clear error for weights without that classifier."""
    from keras_xception.pretrained import formats, loading
    from keras_xception.xception import Xception

    record, path = loading.resolve_weights(weights)
    if record is not None:
        classes = record.classes if record.include_top else None
    else:
        classes = formats.top_classes(path) if path else 1000
    if classes is None:
        raise ValueError(
            f"--weights {weights!r} holds no classifier (an Xception without its top), so predict has no "
            f"classes to name. For feature vectors use `keras-xception extract DIR --weights {weights}`; to "
            "classify your own classes, train a classifier on the backbone (keras_xception.transfer: "
            "build_classifier + train_head) and run that model."
        )
    if classes != 1000:
        raise ValueError(
            f"--weights {weights!r} has a {classes}-class classifier; predict names ImageNet's 1000 classes. "
            "Load that model in Python (keras.saving.load_model) to use its own classes."
        )
    return Xception(weights=weights)


def predict(args, stdout) -> int:
    import numpy as np

    from keras_xception.data.transform import load_image, resolve_transform
    from keras_xception.model.imagenet import decode_predictions
    from keras_xception.tasks.extraction import extract_features

    _check_out_dir(args.cam, "--cam")
    paths, skipped = _image_paths(args.images or [sample_image()], args.strict)
    model = _imagenet_classifier(args.weights)
    transform = resolve_transform(args.weights, model=model, exif_orientation=True)  # user photos: upright
    result = extract_features(
        paths,
        model=model,
        transform=transform,
        batch_size=args.batch_size,
        **inference_options(args),
        verbose=args.verbose,
        strict=args.strict,
    )
    skipped = skipped + list(result.skipped)
    tops = decode_predictions(result.features, top=args.top) if len(result.paths) else []
    if args.cam:
        from keras_xception.tasks.gradcam import grad_cam, save_cam_figure

        panels = []
        for path, probs, top in zip(result.paths, result.features, tops):
            image = load_image(path, transform)
            heatmap, _ = grad_cam(model, transform.preprocess(image[None]), class_index=int(np.argmax(probs)))
            panels.append((image, heatmap, f"{os.path.basename(path)}: {top[0][1]} ({top[0][2]:.3g})"))
        if panels:
            save_cam_figure(args.cam, panels)
            print(f"Grad-CAM heatmaps written to {args.cam}", file=sys.stderr)
    rows = [[dict(wnid=w, name=n, score=p) for w, n, p in top] for top in tops]
    return write_predictions(result.paths, rows, skipped, args.json, stdout, width=30)


def extract(args, stdout) -> int:
    from keras_xception.tasks.extraction import extract_features

    if not os.path.isdir(args.dir):
        raise ValueError(f"DIR must be an existing folder; received {args.dir!r}.")
    _check_out_dir(args.out, "--out")
    result = extract_features(
        args.dir,
        weights=args.weights,
        layer=args.layer,
        image_size=args.image_size,
        batch_size=args.batch_size,
        **inference_options(args),
        verbose=args.verbose,
        strict=args.strict,
    )
    return write_features(args.out, result, stdout)


def evaluate(args, stdout) -> int:
    """ImageNet top-1/top-5 of an Xception weight set over one of the three data sources."""
    from keras_xception.tasks import evaluation

    # The strategy first: multi-worker must be set up before TensorFlow runs anything.
    strategy = evaluation.make_strategy(args.strategy)
    from keras_xception.data import imagenet
    from keras_xception.data.transform import resolve_transform
    from keras_xception.xception import Xception

    if args.tfds_manual_dir is not None and args.tfds_data_dir is None:
        raise ValueError("--tfds-manual-dir needs --tfds-data-dir (where tfds writes the prepared data).")
    _check_out_dir(args.report, "--report")
    transform = resolve_transform(
        args.weights,
        target_size=args.image_size,
        crop_fraction=args.crop_pct,
        resize_mode=args.resize_mode,
        interpolation=args.interpolation,
    )
    if args.tfds_data_dir is not None:
        records = imagenet.tfds_records(args.tfds_data_dir, args.tfds_manual_dir)
    elif args.val_dir is not None:
        records = imagenet.folder_records(args.val_dir, strict=args.strict)
    else:
        records = imagenet.tfrecord_records(args.tfrecords, label_offset=args.label_offset)
    input_shape = None if args.image_size is None else (args.image_size, args.image_size, 3)
    report = evaluation.evaluate(
        lambda: Xception(weights=args.weights, input_shape=input_shape),
        records,
        transform=transform,
        batch_size=args.batch_size,
        limit=args.limit,
        strategy=strategy,
        strict=args.strict,
        per_class=args.per_class,
        **inference_options(args),
        verbose=0 if args.quiet else args.verbose,
    )
    report["weights"] = args.weights
    report["runtime"], report["precision"] = runtime_of(args), args.precision
    if evaluation.is_chief(strategy):
        top = lambda v: "n/a" if v is None else f"{100 * v:.2f}%"  # noqa: E731
        print(
            f"top-1 {top(report['top1'])}  top-5 {top(report['top5'])}  over {report['count']} images "
            f"({len(report['skipped'])} skipped), {report['images_per_second']} images/s, "
            f"{report['elapsed_seconds']} s",
            file=stdout,
        )
        if args.report:
            with open(args.report, "w") as f:
                json.dump(report, f, indent=2)
                f.write("\n")
    _report_skipped(report["skipped"], report["count"] + len(report["skipped"]))
    return 0


def weights_list(args, stdout) -> int:
    from keras_xception.pretrained import download, registry

    rows = []
    for r in registry.list_records():
        path = download.cached_path(r)
        rows.append(dict(r.to_dict(), cached=os.path.isfile(path), cache_path=path))
    if args.json:
        json.dump(rows, stdout, indent=2)
        print(file=stdout)
        return 0
    print(f"{'name':<18} {'top':<5} {'top1':>6} {'top5':>6}  {'cached':<7} file", file=stdout)
    for r in rows:
        acc = lambda v: f"{v:.3f}" if v is not None else "-"  # noqa: E731
        print(
            f"{r['name']:<18} {str(r['include_top']):<5} {acc(r['top1']):>6} {acc(r['top5']):>6}  "
            f"{'yes' if r['cached'] else 'no':<7} {r['file_name']}",
            file=stdout,
        )
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
            status = f"OK ({r.hash_algorithm} {r.file_hash})"
        else:
            digest = download.file_digest(path, r.hash_algorithm)
            status = f"MISMATCH ({r.hash_algorithm} {digest}, expected {r.file_hash})"
            failed.append(name)
        print(f"{name}: {status}  {path}", file=stdout)
    for path in args.file:
        if not os.path.isfile(path):
            raise ValueError(f"--file: no such file: {path!r}.")
        _, top = loading.xception_from_file(path, size=(MIN_INPUT_SIZE, MIN_INPUT_SIZE))
        print(
            f"{path}: loads into Xception(include_top={top}); sha256 {download.file_digest(path, 'sha256')}  "
            f"md5 {download.file_digest(path, 'md5')}",
            file=stdout,
        )
    if failed:
        raise PartialFailure(f"{len(failed)} of {len(names)} weight sets missing or not matching: {', '.join(failed)}.")
    return 0


def weights_convert(args, stdout) -> int:
    from keras_xception.pretrained import download, loading

    _, top = loading.convert_weights(args.src, args.dst, format=args.format)
    print(
        f"wrote {args.dst} ({args.format}, include_top={top}); sha256 {download.file_digest(args.dst, 'sha256')}",
        file=stdout,
    )
    return 0


def summary(args, stdout) -> int:
    from keras_xception.model import analysis
    from keras_xception.xception import Xception

    defaults = dict(
        residual=True, intermediate_activation=None, middle_flow_blocks=8, width_multiplier=1.0, output_stride=32
    )
    if args.ablations:
        variants = [dict(kw) for kw in analysis.ABLATIONS]
    else:
        kw = {k: getattr(args, k) for k in defaults}
        variants = [{k: v for k, v in kw.items() if v != defaults[k]}]
    rows, models = [], []
    for kw in variants:
        model = Xception(weights=None, include_top=not args.no_top, input_shape=(args.size, args.size, 3), **kw)
        row = analysis.summary(model)
        row["name"] = ", ".join(f"{k}={v}" for k, v in kw.items()) or "official"
        rows.append(row)
        models.append(model)
    if args.json:
        out = [dict(r, input_shape=list(r["input_shape"]), output_shape=list(r["output_shape"])) for r in rows]
        if args.layers:
            for r, m in zip(out, models):
                r["layers"] = [dict(c.__dict__, output_shape=list(c.output_shape)) for c in analysis.layer_costs(m)]
        json.dump(out, stdout, indent=2)
        print(file=stdout)
        return 0
    if args.layers:
        for r, m in zip(rows, models):
            print(f"{r['name']}:", file=stdout)
            print(f"  {'layer':<36} {'class':<20} {'output':>18} {'params':>10} {'MMACs':>10}", file=stdout)
            for c in analysis.layer_costs(m):
                shape = "x".join(str(d) for d in c.output_shape[1:])
                print(
                    f"  {c.name:<36} {c.class_name:<20} {shape:>18} {c.params:>10} {c.macs / 1e6:>10.2f}", file=stdout
                )
    print(analysis.format_summary(rows), file=stdout)
    return 0


def export(args, stdout) -> int:
    from keras_xception.data.transform import resolve_transform
    from keras_xception.deploy.export import ParityError
    from keras_xception.deploy.export import export as write_artifact
    from keras_xception.deploy.runtimes import check_export_path
    from keras_xception.xception import Xception

    check_export_path(args.out, args.format)  # before the model is built
    precision = export_precision(args)
    shape = None if args.image_size is None else (args.image_size, args.image_size, 3)
    pooling = None if args.include_top or args.pooling == "none" else args.pooling
    model = Xception(include_top=args.include_top, weights=args.weights, input_shape=shape, pooling=pooling)
    print(
        f"exporting {model.name} ({model.count_params():,} parameters, input {model.input_shape}) "
        f"as {args.format} to {args.out} ...",
        file=sys.stderr,
        flush=True,
    )
    try:
        write_artifact(
            model,
            args.out,
            format=args.format,
            transform=resolve_transform(args.weights, model=model),
            fold_bn=not args.no_fold_bn,
            check=not args.no_check,
            **precision,
        )
    except ParityError as e:
        raise PartialFailure(f"parity check failed: {e}") from None
    print(args.out, file=stdout)
    return 0


def quantize(args, stdout) -> int:
    """int8/bf16 model measured against fp32 on held-out images, written only if it agrees."""
    from keras_xception.deploy.quantization import out_runtime
    from keras_xception.deploy.quantization import quantize as quantize_model

    check_calibration(args)
    if not os.path.isdir(args.holdout):
        raise ValueError(f"--holdout must be an existing folder of images; received {args.holdout!r}.")
    if args.out is not None:
        out_runtime(args.out, args.runtime)  # a bad --out fails before the model is built
    _check_out_dir(args.out, "--out")
    _check_out_dir(args.report, "--report")
    model, transform = _quantize_source(args)
    report = quantize_model(
        model,
        args.calibration,
        args.holdout,
        transform=transform,
        precision=args.precision,
        runtime=args.runtime,
        out=args.out,
        min_agreement=args.min_agreement,
        calibration_size=args.calibration_size,
        holdout_size=args.holdout_size,
        report=args.report,
    )
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


def _quantize_source(args):
    """The model of ``--model`` or ``--weights``, and the transform its images are read with."""
    if args.model is not None:
        import keras

        if not os.path.isfile(args.model):
            raise ValueError(f"--model must be a saved Keras model file (.keras); received {args.model!r}.")
        if args.features or args.image_size:
            raise ValueError("--features and --image-size go with --weights; --model is used as saved.")
        from keras_xception.tasks.classifier import load_classifier, read_metadata

        if read_metadata(args.model) is not None:  # a `train` classifier: its own transform
            classifier = load_classifier(args.model)
            return classifier.model, classifier.transform
        return keras.saving.load_model(args.model), None
    from keras_xception.data.transform import resolve_transform
    from keras_xception.xception import Xception

    shape = None if args.image_size is None else (args.image_size, args.image_size, 3)
    if args.features:
        model = Xception(include_top=False, weights=args.weights, input_shape=shape, pooling="avg")
    else:
        model = Xception(weights=args.weights, input_shape=shape)
    return model, resolve_transform(args.weights, model=model)


# ---------------------------------------------------------------- --model (a classifier from `train`)


def with_model(default, with_model_file):
    """A command function that runs ``with_model_file`` when ``--model`` is given, else ``default``."""

    def command(args, stdout):
        return (with_model_file if args.model else default)(args, stdout)

    command.__name__ = getattr(default, "__name__", "command")
    command.__doc__ = default.__doc__
    return command


def _refuse(args, command, **flags):
    """ValueError for options that do not apply with ``--model`` (``flags``: attribute -> value meaning unset)."""
    given = [
        "--" + name.replace("_", "-") for name, unset in flags.items() if getattr(args, name, unset) not in (unset,)
    ]
    if given:
        raise ValueError(
            f"{', '.join(given)} cannot be combined with --model: `{command} --model` uses the classifier's own "
            "weights, input size and transform (saved with it by `keras-xception train`)."
        )


def _load(path):
    from keras_xception.tasks.classifier import load_classifier

    return load_classifier(path)


def _print_table(report, class_names, stdout):
    width = max([len(c) for c in class_names] + [5])
    print(f"  {'class':<{width}}  precision  recall  support", file=stdout)
    for name in class_names:
        r = report["per_class"][name]
        recall = "-" if r["recall"] is None else f"{r['recall']:.3f}"
        print(f"  {name:<{width}}  {r['precision']:>9.3f}  {recall:>6}  {r['support']:>7}", file=stdout)


def _print_confusion(matrix, class_names, stdout, limit=20):
    if len(class_names) > limit:
        print(f"  (confusion matrix of {len(class_names)} classes: see the JSON report)", file=stdout)
        return
    width = max(max(len(c) for c in class_names), max(len(str(v)) for row in matrix for v in row), 4)
    print("  confusion matrix (rows: true class, columns: predicted):", file=stdout)
    print("  " + " " * width + "  " + " ".join(f"{c[:width]:>{width}}" for c in class_names), file=stdout)
    for name, row in zip(class_names, matrix):
        print(f"  {name:>{width}}  " + " ".join(f"{v:>{width}}" for v in row), file=stdout)


def predict_model(args, stdout) -> int:
    """The classifier's own classes (top-k) for each image."""
    from keras_xception.tasks.extraction import extract_features

    _refuse(args, "predict", weights="imagenet", cam=None)
    classifier = _load(args.model)
    paths, skipped = _image_paths(args.images or [sample_image()], args.strict)
    result = extract_features(
        paths,
        model=classifier.model,
        transform=classifier.transform,
        batch_size=args.batch_size,
        **inference_options(args),
        verbose=args.verbose,
        strict=args.strict,
    )
    skipped = skipped + list(result.skipped)
    tops = [[dict(name=n, score=p) for n, p in classifier.top(probs, args.top)] for probs in result.features]
    width = max([len(c) for c in classifier.class_names] + [10])
    return write_predictions(result.paths, tops, skipped, args.json, stdout, width)


def extract_model(args, stdout) -> int:
    """Feature vectors from the classifier's backbone (pooled; ``--layer`` as without --model)."""
    from keras_xception.model.features import feature_model
    from keras_xception.tasks.extraction import extract_features

    _refuse(args, "extract", weights="imagenet", image_size=None)
    if not os.path.isdir(args.dir):
        raise ValueError(f"DIR must be an existing folder; received {args.dir!r}.")
    _check_out_dir(args.out, "--out")
    classifier = _load(args.model)
    layer = args.layer or "avg_pool"
    try:
        model = feature_model(classifier.model, layer, pool=True, name="classifier_features")
    except ValueError as e:
        raise ValueError(f"--layer {layer!r}: {e}") from None
    result = extract_features(
        args.dir,
        model=model,
        transform=classifier.transform,
        batch_size=args.batch_size,
        **inference_options(args),
        verbose=args.verbose,
        strict=args.strict,
    )
    return write_features(args.out, result, stdout)


def evaluate_model(args, stdout) -> int:
    """Accuracy, per-class figures and the confusion matrix on class folders (``--val-dir``)."""
    from keras_xception.tasks.classifier import evaluate_classifier

    if args.val_dir is None:
        raise ValueError(
            "evaluate --model needs --val-dir DIR: a folder with one sub-folder of images per class, named like "
            "the model's classes (--tfds-data-dir and --tfrecords are ImageNet sources)."
        )
    _refuse(
        args,
        "evaluate",
        weights="imagenet",
        image_size=None,
        crop_pct=None,
        resize_mode=None,
        interpolation=None,
        limit=None,
        tfds_manual_dir=None,
        strategy="default",
    )
    _check_out_dir(args.report, "--report")
    classifier = _load(args.model)
    report = evaluate_classifier(
        classifier,
        args.val_dir,
        batch_size=args.batch_size,
        **inference_options(args),
        strict=args.strict,
        verbose=0 if args.quiet else args.verbose,
    )
    report["model"] = args.model
    names = report["class_names"]
    top5 = f"  top-5 {100 * report['top5_accuracy']:.2f}%" if "top5_accuracy" in report else ""
    print(
        f"accuracy {100 * report['accuracy']:.2f}%{top5}  over {report['count']} images "
        f"({len(report['skipped'])} skipped), {report['elapsed_seconds']} s",
        file=stdout,
    )
    _print_table(report, names, stdout)
    _print_confusion(report["confusion_matrix"], names, stdout)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    _report_skipped(report["skipped"], report["count"] + len(report["skipped"]))
    return 0


def classes_path(path, format: str) -> str:
    """Where ``export --model`` writes the class names (JSON list), next to the transform JSON.

    Inside a SavedModel directory ``keras_xception_classes.json``; else beside
    the file: ``model.onnx`` -> ``model.classes.json``.
    """
    path = os.fspath(path)
    if format == "savedmodel":
        return os.path.join(path, "keras_xception_classes.json")
    return os.path.splitext(path)[0] + ".classes.json"


def export_model(args, stdout) -> int:
    """Export the classifier (raw 0..255 images in, probabilities out) with its transform and class names."""
    from keras_xception.deploy.export import ParityError
    from keras_xception.deploy.export import export as write_artifact
    from keras_xception.deploy.runtimes import check_export_path

    _refuse(args, "export", weights="imagenet", image_size=None, include_top=True, pooling="avg")
    check_export_path(args.out, args.format)
    precision = export_precision(args)
    classifier = _load(args.model)
    model = classifier.model
    print(
        f"exporting the classifier {args.model} ({len(classifier.class_names)} classes, input {model.input_shape}) "
        f"as {args.format} to {args.out} ...",
        file=sys.stderr,
        flush=True,
    )
    try:
        write_artifact(
            model,
            args.out,
            format=args.format,
            transform=classifier.transform,
            fold_bn=not args.no_fold_bn,
            check=not args.no_check,
            **precision,
        )
    except ParityError as e:
        raise PartialFailure(f"parity check failed: {e}") from None
    with open(classes_path(args.out, args.format), "w") as f:
        json.dump(list(classifier.class_names), f, indent=2)
        f.write("\n")
    print(args.out, file=stdout)
    return 0
