import numpy as np
import pytest
import tensorflow as tf

import keras_xception as kx
from keras_xception.data.transform import crop_window


def write(path, array, fmt):
    enc = tf.io.encode_png if fmt == "png" else lambda a: tf.io.encode_jpeg(a, quality=95)
    tf.io.write_file(str(path), enc(tf.constant(array, tf.uint8)))
    return str(path)


@pytest.fixture
def gradient():
    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy * 2, xx, (yy + xx) % 256], -1).astype(np.uint8)


def test_central_crop_window_matches_tf_central_crop(gradient):
    ref = tf.image.central_crop(gradient, 0.875).numpy()
    oy, ox, ch, cw = crop_window(120, 160, (299, 299), 0.875, "central").numpy()
    np.testing.assert_array_equal(gradient[oy : oy + ch, ox : ox + cw], ref)


def test_load_png_is_crop_then_resize(tmp_path, gradient):
    p = write(tmp_path / "g.png", gradient, "png")
    out = kx.load_image(p, target_size=(71, 71))
    ref = tf.image.resize(tf.image.central_crop(gradient, 0.875), (71, 71)).numpy()
    assert out.shape == (71, 71, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-3)


def test_jpeg_fused_decode_equals_decode_then_crop(tmp_path, gradient):
    p = write(tmp_path / "g.jpg", gradient, "jpeg")
    out = kx.load_image(p, target_size=(80, 90))
    full = tf.io.decode_jpeg(tf.io.read_file(p), channels=3)
    ref = tf.image.resize(tf.image.central_crop(full, 0.875), (80, 90)).numpy()
    # libjpeg upsamples chroma differently at the edge of a cropped region, so the
    # fused decode may differ in the last column(s); everywhere else it is identical.
    diff = np.abs(out - ref)
    assert np.mean(diff < 1e-3) > 0.99
    np.testing.assert_allclose(out[:, :-2], ref[:, :-2], atol=1e-3)


def test_shorter_side_mode_crops_a_centred_square(tmp_path, gradient):
    p = write(tmp_path / "g.png", gradient, "png")
    out = kx.load_image(p, target_size=(71, 71), resize_mode="shorter-side", crop_fraction=0.5)
    ref = tf.image.resize(gradient[30:90, 50:110], (71, 71)).numpy()  # 0.5 * 120 = 60, centred
    np.testing.assert_allclose(out, ref, atol=1e-3)


def test_grayscale_becomes_rgb_and_bicubic_stays_in_range(tmp_path):
    g = np.random.default_rng(0).integers(0, 256, (90, 90, 1), dtype=np.uint8)
    p = write(tmp_path / "gray.png", g, "png")
    out = kx.load_image(p, target_size=(71, 71), interpolation="bicubic")
    assert out.shape == (71, 71, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    assert out.min() >= 0 and out.max() <= 255


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        kx.load_image(tmp_path / "missing.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="Cannot decode"):
        kx.load_image(bad)
    for kwargs, match in [
        (dict(crop_fraction=1.5), "crop_fraction"),
        (dict(resize_mode="stretch"), "resize_mode"),
        (dict(interpolation="nearest"), "interpolation"),
        (dict(target_size=(0, 5)), "target_size"),
    ]:
        with pytest.raises(ValueError, match=match):
            kx.load_image(bad, **kwargs)


# ---------------------------------------------------------------- EXIF orientation


def _jpeg_with_orientation(image, orientation, byte_order="pillow", value=None):
    """JPEG bytes (written by Pillow) of the PIL ``image`` with an EXIF Orientation tag.

    ``byte_order``: ``"pillow"`` (Pillow's own EXIF block) or a TIFF block written here in
    ``"II"`` (little-endian) or ``"MM"`` (big-endian) order, with a tag before the orientation.
    """
    import io
    import struct

    from PIL import Image

    if byte_order == "pillow":
        exif = Image.Exif()
        exif[0x0112] = orientation
        exif = exif.tobytes()
    else:  # header, IFD0 with 2 entries (ImageWidth LONG, Orientation SHORT), no next IFD
        e = "<" if byte_order == "II" else ">"
        entries = struct.pack(e + "HHII", 0x0100, 4, 1, 640) + struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0)
        tiff = byte_order.encode() + struct.pack(e + "HI", 42, 8) + struct.pack(e + "H", 2) + entries + b"\0" * 4
        exif = b"Exif\x00\x00" + tiff
    b = io.BytesIO()
    image.save(b, "JPEG", exif=exif, quality=95)
    return b.getvalue()


def _blocky(h=60, w=80, seed=0):
    from PIL import Image

    small = np.random.default_rng(seed).integers(0, 256, (h // 10, w // 10, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.NEAREST)


@pytest.mark.parametrize("byte_order", ["pillow", "II", "MM"])
def test_exif_orientation_matches_pillows_exif_transpose_for_all_eight(byte_order):
    """Pillow's ImageOps.exif_transpose table applied to the same decoded pixels is the reference."""
    from PIL import Image

    from keras_xception.data.transform import decode_and_transform, jpeg_orientation

    T = Image.Transpose
    pil = {2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE}
    pil.update({6: T.ROTATE_270, 7: T.TRANSVERSE, 8: T.ROTATE_90})
    for orientation in range(1, 9):
        data = _jpeg_with_orientation(_blocky(), orientation, byte_order)
        assert int(jpeg_orientation(tf.constant(data))) == orientation
        stored = Image.fromarray(tf.io.decode_jpeg(data, channels=3).numpy())
        ref = np.asarray(stored.transpose(pil[orientation]) if orientation in pil else stored, np.float32)
        t = kx.resolve_transform(target_size=ref.shape[:2], crop_fraction=1.0, exif_orientation=True)
        np.testing.assert_array_equal(decode_and_transform(tf.constant(data), t).numpy(), ref, err_msg=str(orientation))
        # Without exif_orientation the stored pixels, whatever the tag says.
        t = t.replace(target_size=(60, 80), exif_orientation=False)
        np.testing.assert_array_equal(
            decode_and_transform(tf.constant(data), t).numpy(), np.asarray(stored, np.float32)
        )


def test_orientation_is_1_without_a_usable_tag(tmp_path, gradient):
    from keras_xception.data.transform import jpeg_orientation

    plain = tf.io.encode_jpeg(gradient).numpy()
    out_of_range = _jpeg_with_orientation(_blocky(), 9, "II")
    truncated = _jpeg_with_orientation(_blocky(), 6, "MM")[:40]
    orientation = tf.function(jpeg_orientation)
    for data in (
        plain,
        tf.io.encode_png(gradient).numpy(),
        b"",
        b"\xff\xd8\xff",
        b"not an image",
        out_of_range,
        truncated,
    ):
        assert int(orientation(tf.constant(data))) == 1, data[:20]
    assert int(orientation(tf.constant(_jpeg_with_orientation(_blocky(), 6, "II")))) == 6


def test_a_sideways_phone_photo_is_upright_for_user_photos_and_stored_for_imagenet_evaluation(tmp_path):
    """Orientation 6: the camera stored the upright photo rotated 90 degrees counter-clockwise."""
    from PIL import Image

    from keras_xception import data
    from keras_xception.tasks.extraction import extract_features

    upright = np.zeros((90, 60, 3), np.uint8)  # portrait: red top half, blue bottom half
    upright[:45, :, 0] = 255
    upright[45:, :, 2] = 255
    stored = Image.fromarray(np.rot90(upright, 1))  # landscape pixels, as the sensor wrote them
    folder = tmp_path / "photos"
    folder.mkdir()
    path = folder / "phone.jpg"
    path.write_bytes(_jpeg_with_orientation(stored, 6))

    seen = kx.load_image(path, target_size=(90, 60), crop_fraction=1.0)  # default: user photo, upright
    assert seen[10, 30, 0] > 200 > seen[10, 30, 2] and seen[80, 30, 2] > 200 > seen[80, 30, 0]
    imagenet = kx.resolve_transform("imagenet")
    assert imagenet.exif_orientation is False and imagenet.to_dict()["exif_orientation"] is False
    raw = kx.load_image(path, imagenet, target_size=(60, 90), crop_fraction=1.0)
    assert raw[30, 10, 0] > 200 and raw[30, 80, 2] > 200  # stored: red left, blue right
    # The ImageNet evaluation pipeline (folder of class folders, the weights' transform) reads the stored pixels.
    (tmp_path / "val" / "n01440764").mkdir(parents=True)
    (tmp_path / "val" / "n01440764" / "phone.JPEG").write_bytes(path.read_bytes())
    records = data.folder_records(str(tmp_path / "val"))
    (image,), _ = next(iter(data.image_dataset(records, imagenet.replace(target_size=(60, 90), crop_fraction=1.0))))
    np.testing.assert_allclose(image.numpy(), raw, atol=1e-3)
    # extract_features (a user-photo path) reads it upright: the same features as the upright image.
    model = tf.keras.Sequential([tf.keras.Input((90, 60, 3)), tf.keras.layers.Flatten()])
    feats = extract_features(
        [str(path)],
        model=model,
        transform=kx.resolve_transform(target_size=(90, 60), crop_fraction=1.0, exif_orientation=True),
        verbose=0,
    )
    np.testing.assert_allclose(feats.features[0].reshape(90, 60, 3), kx.preprocess_input(seen), atol=1e-4)


def test_transform_records_round_trip_and_old_records_mean_no_exif():
    t = kx.resolve_transform("imagenet", exif_orientation=True)
    assert t.to_dict()["exif_orientation"] is True
    assert kx.Transform.from_dict(t.to_dict()) == t
    old = {k: v for k, v in kx.resolve_transform().to_dict().items() if k != "exif_orientation"}
    assert kx.Transform.from_dict(old).exif_orientation is False
    with pytest.raises(ValueError, match="exif_orientation"):
        kx.resolve_transform(exif_orientation="yes")
    with pytest.raises(ValueError, match="Unknown transform settings"):
        kx.Transform.from_dict(dict(old, colour="red"))


@pytest.mark.parametrize("mode, size, fraction", [("central", (40, 50), 0.875), ("shorter-side", (37, 53), 0.7)])
def test_exif_crop_is_the_crop_of_the_upright_image(mode, size, fraction, tmp_path):
    """The crop is decoded from the stored pixels under the upright view's window, then turned upright.

    Reference: Pillow's exif_transpose table on the whole decoded image, cropped, resized. The fused
    crop-decode differs from decode-then-crop only next to the crop's edges (libjpeg's chroma
    upsampling), as for an upright JPEG; the inside is identical.
    """
    from PIL import Image

    from keras_xception.data.transform import decode_and_transform, file_windows

    T = Image.Transpose
    pil = {2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE}
    pil.update({6: T.ROTATE_270, 7: T.TRANSVERSE, 8: T.ROTATE_90})
    t = kx.resolve_transform(target_size=size, crop_fraction=fraction, resize_mode=mode, exif_orientation=True)
    paths = [str(tmp_path / f"{orientation}.jpg") for orientation in range(1, 9)]
    for orientation in range(1, 9):
        data = _jpeg_with_orientation(_blocky(63, 81), orientation, "II")
        stored = Image.fromarray(tf.io.decode_jpeg(data, channels=3).numpy())
        upright = np.asarray(stored.transpose(pil[orientation]) if orientation in pil else stored)
        oy, ox, ch, cw = crop_window(upright.shape[0], upright.shape[1], size, fraction, mode).numpy()
        ref = tf.image.resize(upright[oy : oy + ch, ox : ox + cw], size).numpy()
        out = decode_and_transform(tf.constant(data), t).numpy()
        np.testing.assert_allclose(out[3:-3, 3:-3], ref[3:-3, 3:-3], atol=1e-3, err_msg=str(orientation))
        assert np.mean(np.abs(out - ref) < 1e-3) > 0.95 and np.abs(out - ref).max() < 8
        with open(paths[orientation - 1], "wb") as f:
            f.write(data)
    # Files: the window and orientation read up front (Pillow) give the same pixels as the bytes alone.
    for transform in (t, t.replace(exif_orientation=False)):
        windows, orientations = file_windows([*paths, __file__], transform)
        assert list(windows[-1]) == [-1] * 4 and orientations[-1] == 1  # not a JPEG: measured by the pipeline
        for path, window, orientation in zip(paths, windows, orientations):
            data = tf.io.read_file(path)
            expected = decode_and_transform(data, transform).numpy()
            np.testing.assert_array_equal(decode_and_transform(data, transform, orientation, window).numpy(), expected)
            fallback = decode_and_transform(data, transform, orientation, tf.constant([-1] * 4))  # measured here
            np.testing.assert_array_equal(fallback.numpy(), expected)
