"""The reports of a trained classifier: its figures, the report of ``train()``, the files beside the model.

:func:`classification_report` turns labels and class probabilities into
accuracy, per-class precision/recall/F1/support and the confusion matrix
(the validation part of :func:`~keras_xception.tasks.training.train`'s report
and :func:`~keras_xception.tasks.classifier.evaluate_classifier`).
:func:`plot_curves` and :func:`plot_confusion_matrix` draw the training
curves and the confusion matrix with matplotlib (the Agg backend unless a
non-interactive one is set). :func:`train_report` assembles the report of
:func:`~keras_xception.tasks.training.train` and :func:`write_outputs`
writes the model, the PNGs and the JSON report it was asked for.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

__all__ = ["classification_report", "plot_curves", "plot_confusion_matrix", "train_report", "write_outputs"]


def classification_report(labels, probabilities, class_names) -> dict:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix (rows: true, columns: predicted)."""
    labels = np.asarray(labels, np.int64)
    probabilities = np.asarray(probabilities)
    n = len(class_names)
    predicted = np.argmax(probabilities, axis=1) if len(labels) else np.zeros(0, np.int64)
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (labels, predicted), 1)
    per_class = {}
    for k, name in enumerate(class_names):
        tp, support, called = int(cm[k, k]), int(cm[k].sum()), int(cm[:, k].sum())
        precision = tp / called if called else 0.0
        recall = tp / support if support else None
        f1 = 2 * precision * recall / (precision + recall) if recall and precision else 0.0
        per_class[name] = dict(precision=precision, recall=recall, f1=f1, support=support)
    report = dict(
        accuracy=float(np.mean(predicted == labels)) if len(labels) else None,
        count=int(len(labels)),
        per_class=per_class,
        confusion_matrix=cm.tolist(),
    )
    if n > 5 and len(labels):
        top5 = np.argsort(-probabilities, axis=1)[:, :5]
        report["top5_accuracy"] = float(np.mean(np.any(top5 == labels[:, None], axis=1)))
    return report


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(path, head_history, fine_tune_history=None, best=None):
    """Training curves (accuracy and loss, training and validation) of both phases, as a PNG."""
    import matplotlib.ticker

    plt = _pyplot()
    fine_tune_history = fine_tune_history or {}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    n_head = len(head_history.get("loss", []))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = list(head_history.get(prefix + metric, [])) + list(fine_tune_history.get(prefix + metric, []))
            marker = "o" if len(values) <= 30 else None
            ax.plot(range(1, len(values) + 1), values, style, marker=marker, ms=3, label=(prefix or "train_") + metric)
        if fine_tune_history:
            ax.axvline(n_head + 0.5, color="grey", lw=0.8)
            ax.text(n_head + 0.7, 0.98, "fine-tuning", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
        if best:
            ax.axvline(best, color="green", lw=0.8, ls=":", label=f"kept (epoch {best})")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("epoch (head on cached features" + (", then fine-tuning)" if fine_tune_history else ")"))
        ax.set_title(metric)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion_matrix(path, matrix, class_names, title="validation"):
    """The confusion matrix as a PNG: counts in the cells, colour by the row's fraction."""
    plt = _pyplot()
    cm = np.asarray(matrix, np.float64)
    n = len(class_names)
    side = min(max(4.0, 0.45 * n + 2.5), 30.0)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    fractions = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(n), labels=class_names, rotation=90 if n > 6 else 45, ha="center" if n > 6 else "right")
    ax.set_yticks(range(n), labels=class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total = int(cm.sum())
    ax.set_title(f"Confusion matrix, {title}\n{total} images, accuracy {np.trace(cm) / max(total, 1):.3f}", fontsize=10)
    if n <= 40:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    colour = "white" if fractions[i, j] > 0.5 else "black"
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", color=colour, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def train_report(
    *,
    class_names,
    evaluation,
    head,
    fine_tune,
    num_train,
    num_val,
    skipped,
    class_weights,
    transform,
    settings,
    timings,
):
    """``(report, info)``: the report dict ``train()`` returns, and the ``info`` saved with the classifier.

    ``head`` and ``fine_tune`` are the reports of the two phases (``fine_tune``
    None without fine-tuning), ``class_weights`` the weights by class index
    (or None), ``skipped`` ``(path, reason)`` pairs, ``transform`` a
    :class:`~keras_xception.data.transform.Transform`.
    """
    import keras

    fine_tuned = bool(fine_tune and fine_tune["kept"])
    report = dict(
        val_accuracy=evaluation["accuracy"],
        val_loss=fine_tune["val_loss"] if fine_tuned else head["val_loss"],
        class_names=list(class_names),
        num_classes=len(class_names),
        num_train=num_train,
        num_val=num_val,
        per_class=evaluation["per_class"],
        confusion_matrix=evaluation["confusion_matrix"],
        skipped=[dict(path=p, reason=r) for p, r in skipped],
        head=head,
        fine_tune=fine_tune,
        class_weights=None if class_weights is None else {class_names[k]: v for k, v in class_weights.items()},
        transform=transform.to_dict(),
        settings=settings,
        timings=timings,
        versions=dict(keras=keras.__version__, keras_xception=_version()),
        outputs={},
    )
    if "top5_accuracy" in evaluation:
        report["val_top5_accuracy"] = evaluation["top5_accuracy"]
    info = dict(
        weights=settings["weights"],
        trained=dict(
            val_accuracy=report["val_accuracy"],
            num_train=report["num_train"],
            num_val=report["num_val"],
            fine_tuned=fine_tuned,
            settings=settings,
        ),
    )
    return report, info


def write_outputs(
    report, classifier, *, chief, out, curves_path, confusion_path, report_path, head_history, tune_history, started
):
    """Write what :func:`~keras_xception.tasks.training.train` was asked to write; fills ``report["outputs"]``.

    On the chief only: the classifier at ``out`` (``.keras``) with the curves
    and confusion-matrix PNGs beside it (unless given elsewhere), and the
    report as JSON at ``report_path``; ``report["timings"]["total_seconds"]``
    counts from ``started`` (a ``time.perf_counter()``).
    """
    fine_report, head_report = report["fine_tune"], report["head"]
    if chief:
        if out is not None:
            report["outputs"]["model"] = classifier.save(out)
            stem = os.path.splitext(out)[0]
            curves_path = curves_path or stem + "_curves.png"
            confusion_path = confusion_path or stem + "_confusion.png"
        best_overall = (
            (head_report["epochs_run"] + fine_report["best_epoch"])
            if fine_report and fine_report["kept"]
            else head_report["best_epoch"]
        )
        if curves_path:
            report["outputs"]["curves"] = plot_curves(curves_path, head_history, tune_history, best=best_overall)
        if confusion_path:
            report["outputs"]["confusion_matrix"] = plot_confusion_matrix(
                confusion_path, report["confusion_matrix"], report["class_names"]
            )
        if report_path:
            report["outputs"]["report"] = os.fspath(report_path)
    report["timings"]["total_seconds"] = round(time.perf_counter() - started, 3)
    if chief and report_path:
        with open(report_path, "w") as f:
            json.dump(report, f, indent=2, default=float)
            f.write("\n")


def _version():
    import keras_xception

    return keras_xception.__version__
