"""The two fitting phases of :func:`~keras_xception.tasks.training.train` and their Keras plumbing.

* :func:`head_phase`: the head (dropout + Dense) on the cached pooled
  features, without augmentation; early stopping on the validation loss
  with ``epochs="auto"``.
* :func:`fine_tune_phase`: the top blocks unfrozen, on the images (augmented
  when asked); the head-only weights are restored when fine-tuning never
  beat them.

Both compute the validation figures outside the training step, on one
device whatever the strategy (``_validation_callback``), and batch the training
data so that Keras 3.15 can fit under a multi-replica strategy
(:func:`first_batch`, :func:`_batches`); :func:`predictor` runs a model
batch by batch under the strategy.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from keras_xception.data.dataset import Records, image_dataset
from keras_xception.tasks import transfer

__all__ = ["head_phase", "fine_tune_phase", "first_batch", "predictor", "HEAD_NOTE"]

#: What the report says about the head phase.
HEAD_NOTE = (
    "The head was trained on cached backbone features (the frozen backbone ran once over the training "
    "and validation images), without augmentation."
)


def first_batch(n, batch_size, replicas, what):
    """A batch size whose first batch splits evenly over the replicas.

    Keras 3.15's ``fit``/``evaluate`` under a multi-replica strategy reduce the
    first distributed batch with ``MEAN`` to build the model, which fails when
    the replicas hold different numbers of examples (e.g. 3 validation images
    on 2 replicas). Later batches may be uneven. Returns ``batch_size`` when
    ``n`` fills it, else ``n`` rounded down to a multiple of ``replicas``.
    """
    if replicas == 1 or n >= batch_size:
        return batch_size
    if n < replicas:
        raise ValueError(f"{n} {what} for {replicas} replicas: each replica needs at least one; add images.")
    return n - n % replicas


def _tensor_slices(x, y):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y))


def _batches(ds, n, batch_size, replicas, seed):
    """Shuffled (every epoch, seeded) batches of ``ds`` (``n`` examples) for ``fit``.

    Under several replicas a last batch that is not full is dropped (each
    epoch drops other examples): Keras 3.15 fails on a replica whose share of
    a batch is empty.
    """
    import tensorflow as tf

    ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=replicas > 1 and n % batch_size != 0).prefetch(tf.data.AUTOTUNE)


def _validation_callback():
    import keras

    class Validation(keras.callbacks.Callback):
        """``val_loss`` and ``val_accuracy`` at the end of every epoch, computed outside the training step.

        On one device whatever the strategy (so the figures do not depend on
        how the validation set splits over replicas), from the probabilities
        ``scores()`` returns; the loss is the mean cross-entropy, clipped as
        Keras clips it (1e-7). It must come before EarlyStopping in the list.
        """

        def __init__(self, scores, labels):
            super().__init__()
            self._scores, self._labels = scores, np.asarray(labels, np.int64)

        def on_epoch_end(self, epoch, logs=None):
            probs = np.clip(np.asarray(self._scores(), np.float64), 1e-7, 1 - 1e-7)
            rows = np.arange(len(self._labels))
            if logs is not None:
                logs["val_loss"] = float(np.mean(-np.log(probs[rows, self._labels])))
                logs["val_accuracy"] = float(np.mean(np.argmax(probs, axis=1) == self._labels))

    return Validation


def _validation(scores, labels):
    return _validation_callback()(scores, labels)


def _epoch_logger(phase, every, total):
    import keras

    class EpochLog(keras.callbacks.Callback):
        """One line every ``every`` epochs (the head runs up to hundreds of millisecond-epochs)."""

        def on_epoch_end(self, epoch, logs=None):
            if (epoch + 1) % every == 0 or epoch == 0:
                figures = "  ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items() if k != "learning_rate")
                print(f"{phase} epoch {epoch + 1}/{total}: {figures}", flush=True)

    return EpochLog()


def predictor(model, strategy):
    """numpy batch -> numpy outputs under ``strategy`` (``predict_on_batch`` would run every replica on
    the whole batch under a multi-replica strategy, so ``predict`` splits it there)."""
    if strategy.num_replicas_in_sync == 1:
        return model.predict_on_batch
    return lambda x: model.predict(x, batch_size=len(x), verbose=0)


def head_phase(
    model,
    head,
    train,
    val,
    *,
    epochs,
    max_epochs,
    patience,
    learning_rate,
    batch_size,
    replicas,
    strategy,
    class_weight,
    seed,
    verbose,
):
    """Train ``head`` (the top of ``model``) on cached features: ``(report, history)``.

    ``train`` and ``val`` are ``(features, labels)``; ``batch_size`` is the
    training batch (see :func:`first_batch`). ``epochs="auto"``: early
    stopping on the validation loss with ``patience``, best weights
    restored, at most ``max_epochs``. The report is the ``head`` part of
    :func:`~keras_xception.tasks.training.train`'s report.
    """
    import keras

    (x_train, y_train), (x_val, y_val) = train, val
    auto = epochs == "auto"
    head_epochs = max_epochs if auto else epochs
    x_val_tensor = np.asarray(x_val, np.float32)
    callbacks = [_validation(lambda: np.asarray(head(x_val_tensor, training=False)), y_val)]
    stopper = None
    if auto:
        stopper = keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, min_delta=1e-4, restore_best_weights=True, verbose=0
        )
        callbacks.append(stopper)
    if verbose:
        callbacks.append(_epoch_logger("head", 10 if verbose == 1 else 25, f"<={head_epochs}" if auto else head_epochs))
    t0 = time.perf_counter()
    with strategy.scope():
        head_history = transfer.fit_head(
            model,
            _batches(_tensor_slices(x_train, y_train), len(y_train), batch_size, replicas, seed),
            None,
            epochs=head_epochs,
            learning_rate=learning_rate,
            verbose=0,
            callbacks=callbacks,
            class_weight=class_weight,
        ).history
    head_seconds = time.perf_counter() - t0
    val_losses = head_history["val_loss"]
    # The epoch whose weights EarlyStopping restored: the last one that improved by more than
    # min_delta, not always the argmin (a later epoch may have improved by less).
    best_head = stopper.best_epoch + 1 if auto else len(val_losses)
    head_report = dict(
        cached_features=True,
        augmentation=False,
        note=HEAD_NOTE,
        epochs_run=len(val_losses),
        best_epoch=best_head,
        stopped_early=auto and len(val_losses) < head_epochs,
        max_epochs=head_epochs,
        early_stopping=dict(monitor="val_loss", patience=patience, restore_best_weights=True) if auto else None,
        learning_rate=learning_rate,
        val_loss=float(val_losses[best_head - 1]),
        val_accuracy=float(head_history["val_accuracy"][best_head - 1]),
        seconds=round(head_seconds, 3),
        history={k: [float(v) for v in vs] for k, vs in head_history.items()},
    )
    if verbose:
        print(
            f"head: {head_report['epochs_run']} epochs on cached features, kept epoch {best_head} "
            f"(val_loss {head_report['val_loss']:.4f}, val_accuracy {head_report['val_accuracy']:.4f}), "
            f"{head_seconds:.1f} s",
            flush=True,
        )
    return head_report, head_history


def fine_tune_phase(
    model,
    train,
    val,
    transform,
    *,
    epochs,
    blocks,
    learning_rate,
    augmentation,
    head_val_loss,
    batch_size,
    val_batch_size,
    replicas,
    strategy,
    class_weight,
    seed,
    verbose,
):
    """Fine-tune the top ``blocks`` of ``model`` on the images: ``(report, history)``.

    ``train`` and ``val`` are ``(paths, labels)`` of readable images, read
    with ``transform``; ``augmentation``: None or a function ``seed ->``
    Keras augmentation model, applied in the training pipeline. The best
    epoch by validation loss is kept; if it does not beat ``head_val_loss``
    the head-only weights are restored (``report["kept"]`` False). The
    report is the ``fine_tune`` part of
    :func:`~keras_xception.tasks.training.train`'s report.
    """
    import keras
    import tensorflow as tf

    (train_paths, y_train), (val_paths, y_val) = train, val
    t0 = time.perf_counter()
    head_weights = model.get_weights()
    train_ds = image_dataset(
        Records.from_files(train_paths, y_train, "training images"),
        transform,
        batch_size=batch_size,
        shuffle=True,
        seed=seed,
    )
    if replicas > 1 and len(y_train) % batch_size:
        train_ds = train_ds.unbatch().batch(batch_size, drop_remainder=True)
    aug_layers = None
    if augmentation is not None:
        aug = augmentation(seed=seed)
        aug_layers = [type(layer).__name__ for layer in aug.layers]
        train_ds = train_ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    val_ds = image_dataset(
        Records.from_files(val_paths, y_val, "validation images"), transform, batch_size=val_batch_size
    )
    scores = tf.function(lambda x: model(x, training=False))
    val_callback = _validation(lambda: np.concatenate([np.asarray(scores(x)) for x, _ in val_ds]), y_val)
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=max(3, epochs), restore_best_weights=True, verbose=0
    )
    if verbose:
        print(
            f"fine-tuning the top {blocks} blocks for {epochs} epochs "
            f"(learning rate {learning_rate:g}, augmentation {'on' if augmentation is not None else 'off'})",
            flush=True,
        )
    # The datasets skip unreadable files, so their length is unknown until an epoch ends
    # and Keras says the input "ran out of data" at the end of the first: expected here.
    with strategy.scope(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        tune_history = transfer.fine_tune(
            model,
            train_ds,
            None,
            epochs=epochs,
            blocks=blocks,
            learning_rate=learning_rate,
            verbose=verbose,
            callbacks=[val_callback, stopper] + ([_epoch_logger("fine-tuning", 1, epochs)] if verbose else []),
            class_weight=class_weight,
        ).history
    best_tune = int(np.argmin(tune_history["val_loss"]))
    improved = tune_history["val_loss"][best_tune] < head_val_loss
    if not improved:
        model.set_weights(head_weights)
    fine_report = dict(
        epochs=epochs,
        blocks=blocks,
        learning_rate=learning_rate,
        augmentation=aug_layers or False,
        batchnorm="frozen (inference mode)",
        best_epoch=best_tune + 1,
        val_loss=float(tune_history["val_loss"][best_tune]),
        kept=bool(improved),
        seconds=round(time.perf_counter() - t0, 3),
        history={k: [float(v) for v in vs] for k, vs in tune_history.items()},
    )
    if verbose and not improved:
        print("fine-tuning did not lower the validation loss: the head-only weights are kept", flush=True)
    return fine_report, tune_history
