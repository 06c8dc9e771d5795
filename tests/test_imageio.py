"""The image loader on every odd input a user may bring; all images are written by the tests.

Each case says what the loader must do: return 8-bit RGB (with the checks that matter for that
kind of file) or refuse with ImageLoadError and a message a person can act on.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from galaxy_core.data.imageio import MAX_PIXELS, LoadedImage, load_image, read_image
from galaxy_core.errors import ImageLoadError

DATA = Path(os.environ.get("GALAXY_DATA")
            or Path(__file__).resolve().parents[2] / "shared" / "data")


# --- builders: each returns the bytes of one file --------------------------------------------


def _save(img: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _noise_rgb(size: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), mode="RGB")


def _gradient(dtype: type, high: float, size: int = 64) -> np.ndarray:
    """Left-to-right ramp 0..high: scaling it right must give 0..255, not a flat frame."""
    return np.tile(np.linspace(0, high, size), (size, 1)).astype(dtype)


def rgb_jpeg() -> bytes:
    return _save(_noise_rgb(), "JPEG", quality=90)


def gray_png() -> bytes:
    return _save(Image.fromarray(_gradient(np.uint8, 255), mode="L"), "PNG")


def rgba_png() -> bytes:
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = np.tile(np.linspace(0, 255, 64), (64, 1)).astype(np.uint8)  # fades in
    return _save(Image.fromarray(rgba, mode="RGBA"), "PNG")


def palette_png_transparent() -> bytes:
    img = Image.new("P", (64, 64), 1)
    img.putpalette([0, 0, 0, 255, 255, 255, 255, 0, 0])
    img.paste(2, (0, 0, 32, 64))  # left half red, right half white but transparent
    return _save(img, "PNG", transparency=1)


def png16() -> bytes:
    return _save(Image.fromarray(_gradient(np.uint16, 65535)), "PNG")


def png16_narrow() -> bytes:
    """16-bit data using only 1000..1400: truncating to the high byte would give a flat frame."""
    return _save(Image.fromarray(_gradient(np.uint16, 400) + np.uint16(1000)), "PNG")


def tiff16() -> bytes:
    return _save(Image.fromarray(_gradient(np.uint16, 65535)), "TIFF")


def tiff_float() -> bytes:
    data = _gradient(np.float32, 2.0) - np.float32(1.0)  # -1..1
    data[5, 5] = np.nan
    return _save(Image.fromarray(data, mode="F"), "TIFF")


def fits_1band() -> bytes:
    data = _gradient(np.float32, 1000.0) + np.float32(10.0)
    data[10:14, 10:14] = np.nan
    buffer = io.BytesIO()
    fits.writeto(buffer, data)
    return buffer.getvalue()


def fits_3band() -> bytes:
    ramp = np.linspace(0, 1, 64)
    cube = np.stack([np.tile(ramp, (64, 1)),            # R grows to the right
                     np.tile(ramp[:, None], (1, 64)),   # G grows with FITS row (upwards)
                     np.full((64, 64), 0.5)])
    cube[2, 0, 0] = np.nan
    buffer = io.BytesIO()
    fits.writeto(buffer, cube.astype(np.float64))
    return buffer.getvalue()


def gif() -> bytes:
    return _save(_noise_rgb().convert("P"), "GIF")


def bmp() -> bytes:
    return _save(_noise_rgb(), "BMP")


def webp() -> bytes:
    return _save(_noise_rgb(), "WEBP")


def tiny() -> bytes:
    return _save(Image.new("RGB", (2, 2), (255, 0, 0)), "PNG")


def empty() -> bytes:
    return b""


def truncated_jpeg() -> bytes:
    data = _save(_noise_rgb(256), "JPEG", quality=95)
    return data[: len(data) // 2]


def truncated_png() -> bytes:
    data = _save(_noise_rgb(256), "PNG")
    return data[: len(data) // 2]


def random_bytes() -> bytes:
    return np.random.default_rng(1).bytes(5000)


def text() -> bytes:
    return b"objid,label\n587722981741363294,spiral\n" * 20


def html() -> bytes:
    return b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n"


def pdf() -> bytes:
    return b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"


def zip_archive() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("galaxy.jpg", rgb_jpeg())
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small valid PNG whose IHDR is patched (CRC fixed) to claim ``width`` x ``height``."""
    data = bytearray(_save(Image.new("RGB", (16, 16)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def huge_png() -> bytes:
    return png_claiming(100_000, 100_000)


def over_limit_png() -> bytes:
    """Over MAX_PIXELS but under Pillow's own bomb limit: only our header check stops it."""
    return png_claiming(8000, 8000)


# --- checks on successful loads ----------------------------------------------------------------


def _array(loaded: LoadedImage) -> np.ndarray:
    return np.asarray(loaded.image, dtype=np.int32)


def spans_full_range(loaded: LoadedImage) -> None:
    """A ramp must come out as a ramp over nearly 0..255, not all black or all white."""
    gray = _array(loaded)[..., 0]
    assert gray.min() <= 5 and gray.max() >= 250
    assert 60 < gray.mean() < 195
    assert np.all(np.diff(gray[32].astype(int)) >= 0), "the ramp must stay monotonic"


def is_gray(loaded: LoadedImage) -> None:
    pixels = _array(loaded)
    assert np.array_equal(pixels[..., 0], pixels[..., 1])
    assert np.array_equal(pixels[..., 1], pixels[..., 2])


def gray_ramp(loaded: LoadedImage) -> None:
    is_gray(loaded)
    spans_full_range(loaded)


def rgba_on_black(loaded: LoadedImage) -> None:
    red = _array(loaded)[..., 0]
    assert red[:, 0].max() <= 5, "fully transparent pixels must become black"
    assert red[:, -1].min() >= 195, "opaque pixels keep their colour"


def palette_transparent_black(loaded: LoadedImage) -> None:
    pixels = _array(loaded)
    assert (pixels[:, :32] == [255, 0, 0]).all()
    assert (pixels[:, 32:] == 0).all(), "the transparent palette entry must become black"


def fits_gray_with_nans(loaded: LoadedImage) -> None:
    gray_ramp(loaded)
    assert loaded.image.size == (64, 64)


def fits_rgb(loaded: LoadedImage) -> None:
    pixels = _array(loaded)
    red, green = pixels[..., 0], pixels[..., 1]
    assert red[:, -1].mean() > red[:, 0].mean() + 150, "band 1 is red and grows to the right"
    # FITS row 0 is the bottom: after flipping, the top of the picture has the high rows
    assert green[0].mean() > green[-1].mean() + 150
    assert not np.array_equal(red, green)


def anything(loaded: LoadedImage) -> None:
    assert loaded.image.size == (64, 64)


OK = "ok"
Case = tuple[str, Callable[[], bytes], str, str, Callable[[LoadedImage], None] | None]
CASES: list[Case] = [
    # name on disk, builder, outcome, format or message fragment, extra check
    ("galaxy.jpg", rgb_jpeg, OK, "JPEG", anything),
    ("gray.png", gray_png, OK, "PNG", gray_ramp),
    ("rgba_named.jpg", rgba_png, OK, "PNG", rgba_on_black),
    ("palette.png", palette_png_transparent, OK, "PNG", palette_transparent_black),
    ("deep.png", png16, OK, "PNG", gray_ramp),
    ("deep_narrow.png", png16_narrow, OK, "PNG", gray_ramp),
    ("deep.tif", tiff16, OK, "TIFF", gray_ramp),
    ("float.tiff", tiff_float, OK, "TIFF", gray_ramp),
    ("one_band.fits", fits_1band, OK, "FITS", fits_gray_with_nans),
    ("three_band.fits", fits_3band, OK, "FITS", fits_rgb),
    ("anim.gif", gif, OK, "GIF", anything),
    ("old.bmp", bmp, OK, "BMP", anything),
    ("new.webp", webp, OK, "WEBP", anything),
    ("tiny.png", tiny, "refused", "too small", None),
    ("empty.jpg", empty, "refused", "empty", None),
    ("cut.jpg", truncated_jpeg, "refused", "truncated", None),
    ("cut.png", truncated_png, "refused", "truncated", None),
    ("noise.jpg", random_bytes, "refused", "not a recognised image format", None),
    ("notes.jpg", text, "refused", "text file", None),
    ("page.png", html, "refused", "web page", None),
    ("paper.jpg", pdf, "refused", "PDF", None),
    ("bundle.png", zip_archive, "refused", "ZIP", None),
    ("bomb.png", huge_png, "refused", "too large", None),
    ("big.png", over_limit_png, "refused", "too large", None),
]


@pytest.mark.parametrize(("name", "build", "outcome", "expected", "check"), CASES,
                         ids=[case[0] for case in CASES])
def test_every_odd_input(tmp_path: Path, name: str, build: Callable[[], bytes], outcome: str,
                         expected: str, check: Callable[[LoadedImage], None] | None) -> None:
    data = build()
    path = tmp_path / name
    path.write_bytes(data)
    for source in (path, str(path), data):
        if outcome == OK:
            loaded = read_image(source)
            assert loaded.format == expected
            assert loaded.image.mode == "RGB"
            assert check is not None
            check(loaded)
            assert load_image(source).tobytes() == loaded.image.tobytes()
        else:
            with pytest.raises(ImageLoadError) as info:
                read_image(source)
            message = str(info.value)
            assert expected.lower() in message.lower(), message
            assert "\n" not in message and len(message) < 300
            if isinstance(source, Path):
                assert name in message, "messages about files name the file"


def test_notes_say_what_was_done(tmp_path: Path) -> None:
    path = tmp_path / "rgba_named.jpg"
    path.write_bytes(rgba_png())
    notes = " | ".join(read_image(path).notes)
    assert "file name says .jpg but content is PNG" in notes
    assert "composited on black" in notes
    assert "16-bit data scaled to 8 bit" in " ".join(read_image(png16()).notes)
    loaded = read_image(fits_1band())
    assert "FITS asinh stretch" in " ".join(loaded.notes) and "NaN" in " ".join(loaded.notes)
    assert loaded.original_size == (64, 64)
    assert read_image(tiff16()).original_mode.startswith("I;16")


def test_gzipped_fits_is_read() -> None:
    import gzip

    assert read_image(gzip.compress(fits_1band())).format == "FITS"
    with pytest.raises(ImageLoadError, match="only read when they hold FITS"):
        read_image(gzip.compress(rgb_jpeg()))


def test_size_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bomb must be refused from its header: decoding it is the attack."""
    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("pixels were decoded")

    bombs = (huge_png(), over_limit_png())
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    for data in bombs:
        with pytest.raises(ImageLoadError, match="too large"):
            read_image(data)
    assert 8000 * 8000 > MAX_PIXELS


def test_fits_header_size_is_checked_before_reading() -> None:
    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = -32
    header["NAXIS"] = 2
    header["NAXIS1"] = 100_000
    header["NAXIS2"] = 100_000
    data = header.tostring(padding=True).encode("ascii")
    # "truncated" when warnings are errors: astropy then stops at its own size check
    with pytest.raises(ImageLoadError, match="too large|truncated"):
        read_image(data)


def test_over_max_bytes_is_refused(tmp_path: Path) -> None:
    data = rgb_jpeg()
    path = tmp_path / "galaxy.jpg"
    path.write_bytes(data)
    for source in (path, data):
        with pytest.raises(ImageLoadError, match="too big"):
            read_image(source, max_bytes=len(data) - 1)
    assert read_image(path, max_bytes=len(data)).format == "JPEG"


def test_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="not found"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageLoadError, match="folder"):
        read_image(tmp_path)
    with pytest.raises(ImageLoadError):
        read_image("bad\0name.png")
    with pytest.raises(ImageLoadError, match="expected a file path or bytes"):
        read_image(12345)  # type: ignore[arg-type]


# --- property tests: nothing but ImageLoadError may ever escape --------------------------------

SEEDS = {"png": _save(_noise_rgb(16, 2), "PNG"), "jpeg": _save(_noise_rgb(16, 3), "JPEG"),
         "gif": _save(_noise_rgb(16, 4).convert("P"), "GIF"), "tiff": tiff16(),
         "fits": fits_1band()}
PROPERTY = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _loads_or_refuses(data: bytes) -> None:
    try:
        loaded = read_image(data)
    except ImageLoadError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert loaded.image.mode == "RGB"
    assert min(loaded.image.size) >= 8


@PROPERTY
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    _loads_or_refuses(data)


@PROPERTY
@given(st.sampled_from(sorted(SEEDS)),
       st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=8),
       st.one_of(st.none(), st.integers(min_value=0)))
def test_mutated_images_never_crash(kind: str, flips: list[tuple[int, int]],
                                    cut: int | None) -> None:
    data = bytearray(SEEDS[kind])
    for position, value in flips:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    _loads_or_refuses(bytes(data))


@pytest.mark.skipif(not DATA.is_dir(), reason="shared data not present")
def test_seed_examples_are_pngs_named_jpg() -> None:
    for path in sorted((DATA / "seed_examples").glob("*_to_test*.jpg")):
        loaded = read_image(path)
        assert loaded.format == "PNG" and loaded.original_mode == "RGBA"
        assert any("content is PNG" in note for note in loaded.notes)
        assert loaded.image.mode == "RGB"
