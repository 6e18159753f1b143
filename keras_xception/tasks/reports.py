"""The reports of a trained classifier: its figures (scikit-learn), its plots (matplotlib), the one-line
summary of a training run, and the files that ``train()`` writes beside the model.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

__all__ = ["classification_report", "plot_curves", "plot_confusion_matrix", "head_line", "summary", "write_outputs"]


def classification_report(labels, predicted, class_names, *, top5=None) -> dict:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix (rows: true, columns: predicted).

    By scikit-learn (``confusion_matrix``, ``precision_recall_fscore_support``); ``recall`` is
    None for a class without examples. ``top5``: per example, whether the label was among the
    five best scores (``top5_accuracy`` is reported with more than 5 classes).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels, predicted = np.asarray(labels, np.int64), np.asarray(predicted, np.int64)
    ks = list(range(len(class_names)))
    cm = confusion_matrix(labels, predicted, labels=ks)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=ks, zero_division=0.0)
    per_class = {
        name: dict(
            precision=float(precision[k]),
            recall=float(recall[k]) if support[k] else None,
            f1=float(f1[k]),
            support=int(support[k]),
        )
        for k, name in enumerate(class_names)
    }
    report = dict(
        accuracy=float(np.mean(predicted == labels)) if labels.size else None,
        count=int(labels.size),
        per_class=per_class,
        confusion_matrix=cm.tolist(),
    )
    if len(class_names) > 5 and top5 is not None and labels.size:
        report["top5_accuracy"] = float(np.mean(top5))
    return report


def plot_curves(path, head_history, fine_tune_history=None, best=None):
    """Training curves (accuracy and loss, training and validation) of both phases, as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend
    from matplotlib.ticker import MaxNLocator

    fine_tune_history = fine_tune_history or {}
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (head on cached features" + (", then fine-tuning)" if fine_tune_history else ")"))
        ax.set_title(metric)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_confusion_matrix(path, matrix, class_names, title="validation"):
    """The confusion matrix as a PNG (scikit-learn's display): counts in the cells, colour by the row's fraction."""
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    cm, n = np.asarray(matrix, np.int64), len(class_names)
    side = min(max(4.0, 0.45 * n + 2.5), 30.0)
    fig = Figure(figsize=(side + 1, side))
    ax = fig.subplots()
    display = ConfusionMatrixDisplay(cm / np.maximum(cm.sum(axis=1, keepdims=True), 1), display_labels=class_names)
    display.plot(ax=ax, cmap="Blues", im_kw=dict(vmin=0, vmax=1), include_values=n <= 40, colorbar=False)
    fig.colorbar(display.im_, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    for (i, j), text in np.ndenumerate(display.text_ if n <= 40 else np.empty((0, 0))):
        text.set_text(str(cm[i, j]) if cm[i, j] else "")
    ax.tick_params(axis="x", labelrotation=90 if n > 6 else 45)
    total = int(cm.sum())
    ax.set_title(f"Confusion matrix, {title}\n{total} images, accuracy {np.trace(cm) / max(total, 1):.3f}", fontsize=10)
    return _save(fig, path)


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def head_line(head) -> str:
    """One line on the head phase: epochs, the kept epoch and why, its figures, the time."""
    stopping = head["early_stopping"]
    why = f" (lowest val_loss, min_delta {stopping['min_delta']:g})" if stopping else ""
    return (
        f"head: {head['epochs_run']} epochs on cached features, kept epoch {head['best_epoch']}{why}: "
        f"val_loss {head['val_loss']:.4f}, val_accuracy {head['val_accuracy']:.4f}, {head['seconds']:.1f} s"
    )


def summary(report) -> str:
    """The one-line outcome of :func:`~keras_xception.tasks.training.train`."""
    tune = report["fine_tune"]
    tuned = ""
    if tune:
        kept = f"kept epoch {tune['best_epoch']}" if tune["kept"] else "not kept: no better than the head"
        tuned = f"; fine-tuned {tune['epochs']} epochs, {kept}"
    return (
        f"val_accuracy {report['val_accuracy']:.4f} over {report['num_val']} validation images "
        f"({report['num_train']} training images, {report['num_classes']} classes; {head_line(report['head'])}"
        f"{tuned}; {report['timings'].get('total_seconds', 0):.1f} s in all)"
    )


def write_outputs(report, classifier, run, histories, started):
    """Write what ``train()`` was asked for (``run``: its options; None on a worker that is not the chief).

    The classifier at ``run.out`` with the curves and confusion-matrix PNGs beside it (unless given
    elsewhere), the report as JSON at ``run.report_path``; fills ``report["outputs"]`` and
    ``report["timings"]["total_seconds"]`` (from ``started``, a ``time.perf_counter()``).
    """
    outputs, stem = report["outputs"], None
    if run is not None and run.out is not None:
        outputs["model"] = classifier.save(run.out)
        stem = os.path.splitext(run.out)[0]
    curves = run and (run.curves_path or stem and stem + "_curves.png")
    confusion = run and (run.confusion_path or stem and stem + "_confusion.png")
    if curves:  # mark the epoch (over both phases, from 1) whose weights the classifier has
        head, tune = report["head"], report["fine_tune"]
        best = head["epochs_run"] + tune["best_epoch"] if tune and tune["kept"] else head["best_epoch"]
        outputs["curves"] = plot_curves(curves, *histories, best=best)
    if confusion:
        outputs["confusion_matrix"] = plot_confusion_matrix(
            confusion, report["confusion_matrix"], report["class_names"]
        )
    report["timings"]["total_seconds"] = round(time.perf_counter() - started, 3)
    if run is not None and run.report_path:
        outputs["report"] = run.report_path
        with open(run.report_path, "w") as f:
            json.dump(report, f, indent=2, default=float)
            f.write("\n")
