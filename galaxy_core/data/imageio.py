"""The one image loader: whatever a user hands us becomes an 8-bit RGB picture or one clear error.

Training, the CLI and the app all read images through :func:`read_image` (or its shortcut
:func:`load_image`), so a file that works in one place works everywhere and a bad file fails with
the same one-line :class:`~galaxy_core.errors.ImageLoadError` everywhere.

Why it is more than ``Image.open(...).convert("RGB")``:

* Real files lie about their kind (the project's own seed examples are PNGs named ``.jpg``), so the
  format is taken from the bytes (magic numbers), never from the name.
* Astronomers bring FITS and 16-bit or float TIFF/PNG; truncating those to 8 bits gives a black or
  white frame, so they are scaled by percentiles (FITS with an asinh stretch, as survey colour
  images are made).
* Transparent PNGs composite on black, because black is what sky looks like in the training data.
* Hostile or broken files (decompression bombs, truncated downloads, PDFs, random bytes) must never
  crash the caller with a library exception, so sizes are checked from the header before any pixel
  is decoded, the decode is forced with ``load()``, and every failure becomes ImageLoadError.
"""

from __future__ import annotations

import io
import re
import stat
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from galaxy_core.errors import ImageLoadError, NotAnImageError

MAX_PIXELS = 50_000_000
"""Largest width x height accepted; checked from the header, before decoding."""
MIN_SIDE = 8
"""Smallest width or height accepted: below this there is no galaxy to see."""
MAX_ASPECT = 20.0
"""Longest/shortest side beyond which the picture is a strip, not a sky image."""
DEFAULT_MAX_BYTES = 200 * 2**20
"""Largest file accepted by default (200 MiB)."""
MAX_DECODED_BYTES = 256 * 2**20
"""Largest decoded picture accepted (width x height x bytes per pixel, from the header, before
decoding): a 95 KB PNG can hold 49 megapixels of 16-bit data, so the file's size says nothing
of the work. Deep pictures (16-bit, 32-bit, float) larger than :data:`FITS_MAX_SIDE` are then
averaged down in blocks of rows before they are scaled to 8 bits, as large FITS images are."""
MAX_FRAMES = 1000
"""Frames (pages of a TIFF, frames of a GIF) counted at most: only the first is ever read, and
counting a 100,000-page TIFF took a minute (time grows with the square of the count)."""

PERCENTILE_LOW, PERCENTILE_HIGH = 0.5, 99.5
"""Clip points used to bring 16-bit, float and FITS data into 0..255 (robust to hot pixels)."""
ASINH_A = 0.1
"""Softening of the FITS asinh stretch (astropy's AsinhStretch ``a``): faint outskirts stay visible
while bright cores do not saturate, like SDSS colour composites."""

_PIL_FORMATS = ("JPEG", "PNG", "TIFF", "GIF", "BMP", "WEBP")
_SUPPORTED = "JPEG, PNG, TIFF, GIF, BMP, WebP or FITS"

_SUFFIX_FORMAT = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG", ".png": "PNG",
    ".tif": "TIFF", ".tiff": "TIFF", ".gif": "GIF", ".bmp": "BMP", ".webp": "WEBP",
    ".fits": "FITS", ".fit": "FITS", ".fts": "FITS",
}
IMAGE_SUFFIXES: tuple[str, ...] = tuple(_SUFFIX_FORMAT)
"""File suffixes of the image kinds this loader reads: the one list that folder searches, image
lookup by id, example lists and upload widgets use (the content decides the format; a suffix
only says which files to try)."""
GZIP_SUFFIX = ".gz"
"""Also read when given directly or uploaded (``.fits.gz``)."""

_NOT_IMAGES = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x7fELF", "a program (ELF executable)"),
    (b"MZ", "a Windows program"),
)
_UNSUPPORTED_IMAGES = (
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"),
)
_UNSUPPORTED_BRANDS = {b"avif": "an AVIF image", b"avis": "an AVIF image sequence",
                       b"heic": "a HEIC image", b"heix": "a HEIC image", b"mif1": "a HEIF image"}
"""ISO media brands (bytes 8-12 after ``ftyp``) of image formats this loader does not decode."""


@dataclass
class LoadedImage:
    """An image ready for the model plus what was done to get it, for users and model cards."""

    image: Image.Image
    """8-bit RGB."""
    format: str
    """Detected from the bytes: JPEG, PNG, TIFF, GIF, BMP, WEBP or FITS."""
    original_mode: str
    """Pillow mode of the file (``RGBA``, ``I;16``...); for FITS e.g. ``FITS float32 (3, H, W)``."""
    original_size: tuple[int, int]
    """(width, height) as stored in the file."""
    notes: list[str] = field(default_factory=list)
    """Human-readable remarks on conversions, e.g. ``RGBA composited on black``."""


def load_image(source: str | Path | bytes) -> Image.Image:
    """Open ``source`` (a path or raw bytes) as 8-bit RGB, or raise ImageLoadError saying why."""
    return read_image(source).image


def read_image(source: str | Path | bytes, max_bytes: int = DEFAULT_MAX_BYTES,
               name: str | None = None) -> LoadedImage:
    """Read ``source`` into a :class:`LoadedImage`; any problem raises ImageLoadError only.

    The whole file is read into memory (bounded by ``max_bytes``) so that the format can be sniffed
    and the decoders never see a file that changes under them. ``name`` is the original file name
    of uploaded bytes: it labels messages and lets a misleading suffix be noted.
    """
    label = _label(name if name is not None else source)
    try:
        data, suffix = _read_bytes(source, max_bytes)
        if name is not None and not suffix:
            suffix = Path(name).suffix.lower()
        return _decode(data, suffix, max_bytes)
    except ImageLoadError as exc:  # same kind, labelled with the file name
        raise type(exc)(f"{label}: {exc}" if label else str(exc)) from None
    except MemoryError:
        raise ImageLoadError(f"{label or 'image'}: not enough memory to decode it") from None
    except Exception as exc:  # last line of defence: no library exception may escape
        raise ImageLoadError(f"{label or 'image'}: cannot be read ({_reason(exc)})") from None


# --- reading bytes -----------------------------------------------------------------------------


def _label(source: object) -> str:
    """Short name for messages: the file name for paths, nothing for raw bytes."""
    if isinstance(source, (str, Path)):
        try:
            return " ".join((Path(source).name or str(source)).split()) or "image"
        except Exception:
            return "image"
    return ""


def _read_bytes(source: object, max_bytes: int) -> tuple[bytes, str]:
    """Return the file content and its (lower-case) suffix, refusing big or unreadable sources."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        suffix = ""
    elif isinstance(source, (str, Path)):
        path = Path(source)
        suffix = "".join(path.suffixes[-2:]).lower() if path.name.lower().endswith(".gz") \
            else path.suffix.lower()
        try:
            if path.is_dir():
                raise ImageLoadError("is a folder, not an image file")
            if path.is_symlink() and not path.exists():
                raise ImageLoadError("broken symbolic link (its target does not exist)")
            mode = path.stat().st_mode
            if not stat.S_ISREG(mode):
                raise ImageLoadError(f"not a regular file ({_file_kind(mode)}); only files are "
                                     "read")
            size = path.stat().st_size
            if size > max_bytes:
                raise ImageLoadError(f"file too big ({_mib(size)}; the limit is {_mib(max_bytes)})")
            with path.open("rb") as handle:
                data = handle.read(max_bytes + 1)
        except FileNotFoundError:
            raise ImageLoadError("file not found") from None
        except PermissionError:
            raise ImageLoadError("permission denied") from None
        except (OSError, ValueError) as exc:
            raise ImageLoadError(f"cannot read the file ({_reason(exc)})") from None
    else:
        raise ImageLoadError(f"expected a file path or bytes, got {type(source).__name__}")
    if not data:
        raise ImageLoadError("the file is empty")
    if len(data) > max_bytes:
        raise ImageLoadError(f"file too big ({_mib(len(data))}; the limit is {_mib(max_bytes)})")
    return data, suffix


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a plain file")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


_OBJECT_REPR = re.compile(r"<[^<>]*? at 0x[0-9a-fA-F]+>")
MAX_REASON = 200


def _reason(exc: BaseException) -> str:
    """One line describing a library exception, without tracebacks, newlines or object reprs
    (``<_io.BytesIO object at 0x...>`` made one kind of error into thousands of distinct
    strings), cut to :data:`MAX_REASON` characters."""
    text = _OBJECT_REPR.sub("the data", " ".join(str(exc).split()))
    if len(text) > MAX_REASON:
        text = text[:MAX_REASON - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- format sniffing ---------------------------------------------------------------------------


def sniff_format(data: bytes) -> str:
    """Name the image format from its first bytes; raise ImageLoadError saying what it is if not."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"SIMPLE  ="):
        return "FITS"
    if head.startswith(b"\x1f\x8b"):
        return "GZIP"
    for magic, what in _UNSUPPORTED_IMAGES:
        if head.startswith(magic):
            raise ImageLoadError(f"this is {what}, which is not supported ({_SUPPORTED})")
    if head[4:8] == b"ftyp" and head[8:12] in _UNSUPPORTED_BRANDS:
        raise ImageLoadError(f"this is {_UNSUPPORTED_BRANDS[head[8:12]]}, which is not "
                             f"supported ({_SUPPORTED})")
    for magic, what in _NOT_IMAGES:
        if head.startswith(magic):
            raise NotAnImageError(f"this is {what}, not an image")
    if _looks_like_text(data[:4096]):
        start = data[:512].lstrip().lower()
        if start.startswith((b"<!doctype html", b"<html")):
            raise NotAnImageError("this is a web page (HTML), not an image; did the download "
                                  "fail?")
        raise NotAnImageError("this is a text file, not an image")
    raise NotAnImageError(f"not a recognised image format (expected {_SUPPORTED})")


def _looks_like_text(chunk: bytes) -> bool:
    """True when the bytes read as UTF-8 text that is nearly all printable."""
    text = chunk.decode("utf-8", errors="replace")
    if not text:
        return False
    printable = sum((ch.isprintable() and ch != "\ufffd") or ch in "\t\r\n\f" for ch in text)
    return printable >= 0.95 * len(text)


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress gzip data without ever holding more than ``limit`` bytes (zip bombs)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ImageLoadError(f"the gzip data is corrupt ({_reason(exc)})") from None
    if len(out) > limit:
        raise ImageLoadError(f"the gzip file unpacks to more than {_mib(limit)}")
    if not inflater.eof:
        raise ImageLoadError("the gzip file is truncated")
    return out


# --- decoding ----------------------------------------------------------------------------------


def _decode(data: bytes, suffix: str, max_bytes: int) -> LoadedImage:
    """Dispatch on the sniffed format and note any mismatch with the file name."""
    fmt = sniff_format(data)
    notes: list[str] = []
    if fmt == "GZIP":
        data = _gunzip(data, max_bytes)
        if sniff_format(data) != "FITS":
            raise ImageLoadError("gzip-compressed files are only read when they hold FITS; "
                                 "decompress it first")
        fmt = "FITS"
        notes.append("gzip-compressed FITS unpacked")
        suffix = suffix.removesuffix(".gz")
    named = _SUFFIX_FORMAT.get(suffix)
    if named and named != fmt:
        notes.append(f"file name says {suffix} but content is {fmt}")
    loaded = _decode_fits(data) if fmt == "FITS" else _decode_pil(data, fmt)
    loaded.notes[:0] = notes
    _check_output(loaded.image)
    return loaded


def _check_size(width: int, height: int) -> None:
    """Refuse sizes that are absurd, before any pixel is decoded."""
    if width * height > MAX_PIXELS:
        raise ImageLoadError(f"image too large ({width}x{height} pixels; the limit is "
                             f"{MAX_PIXELS / 1e6:.0f} megapixels)")
    if min(width, height) < MIN_SIDE:
        raise ImageLoadError(f"image too small ({width}x{height} pixels; at least "
                             f"{MIN_SIDE}x{MIN_SIDE} is needed)")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageLoadError(f"image is an extremely thin strip ({width}x{height} pixels)")


_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "RGB": 3, "YCbCr": 3,
               "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I": 4, "F": 4}
"""Bytes per pixel of a Pillow mode (its samples x bytes per sample); 16-bit modes are 2."""


def decoded_bytes(width: int, height: int, mode: str) -> int:
    """What a ``width`` x ``height`` picture in Pillow ``mode`` takes once decoded."""
    per_pixel = 2 if mode.startswith("I;16") else _MODE_BYTES.get(mode, 4)
    return width * height * per_pixel


def _check_decoded_bytes(width: int, height: int, mode: str) -> None:
    """Refuse, from the header, a picture whose decoded size is over :data:`MAX_DECODED_BYTES`."""
    need = decoded_bytes(width, height, mode)
    if need > MAX_DECODED_BYTES:
        raise ImageLoadError(f"image too large once decoded ({width}x{height} pixels of {mode}: "
                             f"{_mib(need)}; the limit is {_mib(MAX_DECODED_BYTES)})")


def decoded_size(data: bytes) -> int:
    """The memory ``data`` would take once decoded, from its header alone, for deciding how to
    schedule the work (a small file can decode to gigabytes); never raises. A gzip file counts
    as the most it may unpack to; an unreadable header as the file's own size."""
    try:
        fmt = sniff_format(data)
        if fmt == "GZIP":
            return max(len(data), DEFAULT_MAX_BYTES)
        if fmt not in _PIL_FORMATS:
            return len(data)
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            return max(len(data), decoded_bytes(img.width, img.height, img.mode))
    except Exception:
        return len(data)


def _check_output(img: Image.Image) -> None:
    """Guard the contract: every success is 8-bit RGB of an acceptable size."""
    if img.mode != "RGB":  # pragma: no cover - a bug in this module, not in the file
        raise ImageLoadError(f"internal error: decoded to mode {img.mode}, not RGB")
    _check_size(img.width, img.height)


def _decode_pil(data: bytes, fmt: str) -> LoadedImage:
    """Decode a Pillow-readable format fully and convert it to 8-bit RGB.

    Warnings are not silenced here: ``warnings.catch_warnings`` is not thread-safe and the loader
    runs in thread pools and Streamlit sessions. Our own size check runs before Pillow's bomb
    warning threshold; if a caller turns warnings into errors, they are caught like any other.
    """
    try:
        img = Image.open(io.BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(f"image too large, refused as a decompression bomb "
                             f"({_reason(exc)})") from None
    except Exception as exc:
        raise ImageLoadError(f"not a valid {fmt} file, or it is truncated "
                             f"({_reason(exc)})") from None
    with img:
        _check_size(img.width, img.height)
        mode, size = img.mode, img.size
        _check_decoded_bytes(img.width, img.height, mode)
        notes: list[str] = []
        frames = _frame_count(img)
        if frames > MAX_FRAMES:
            notes.append(f"more than {MAX_FRAMES} frames: using the first")
        elif frames > 1:
            notes.append(f"{frames} frames: using the first")
        try:
            img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageLoadError("image too large, refused as a decompression bomb") from None
        except Exception as exc:
            raise ImageLoadError(f"the {fmt} file is truncated or corrupt "
                                 f"({_reason(exc)})") from None
        rgb = _to_rgb(_upright(img, notes), notes)
    return LoadedImage(image=rgb, format=fmt, original_mode=mode, original_size=size, notes=notes)


def _frame_count(img: Image.Image) -> int:
    """Frames in an animated/multi-page file, counted up to ``MAX_FRAMES + 1`` (a larger count
    reads as more than :data:`MAX_FRAMES`), without failing on a broken one. Pillow's
    ``n_frames`` walks every page of a TIFF, so a TIFF's pages are counted here by following
    its chain of directory offsets, each read once, and the image is left on its first page."""
    if img.format != "TIFF":
        try:
            return min(int(getattr(img, "n_frames", 1)), MAX_FRAMES + 1)
        except Exception:
            return 1
    try:
        return _tiff_page_count(img.fp, MAX_FRAMES + 1)  # type: ignore[attr-defined]
    except Exception:
        return 1


def _tiff_page_count(handle: object, limit: int) -> int:
    """Pages of the TIFF in ``handle`` (a file object at any position), at most ``limit``:
    the chain of image file directories followed from the header, a loop counted once."""
    stream = handle  # type: ignore[assignment]
    where = stream.tell()  # type: ignore[attr-defined]
    try:
        stream.seek(0)  # type: ignore[attr-defined]
        head = stream.read(16)  # type: ignore[attr-defined]
        order = "little" if head[:2] == b"II" else "big"
        big = int.from_bytes(head[2:4], order) == 43  # BigTIFF
        offset = int.from_bytes(head[8:16] if big else head[4:8], order)
        count_size, entry_size, next_size = (8, 20, 8) if big else (2, 12, 4)
        seen: set[int] = set()
        while offset and offset not in seen and len(seen) < limit:
            seen.add(offset)
            stream.seek(offset)  # type: ignore[attr-defined]
            entries = int.from_bytes(stream.read(count_size), order)  # type: ignore[attr-defined]
            stream.seek(offset + count_size + entries * entry_size)  # type: ignore[attr-defined]
            raw = stream.read(next_size)  # type: ignore[attr-defined]
            if len(raw) < next_size:
                break
            offset = int.from_bytes(raw, order)
        return max(1, len(seen))
    finally:
        stream.seek(where)  # type: ignore[attr-defined]


def _upright(img: Image.Image, notes: list[str]) -> Image.Image:
    """Turn camera pictures upright as their EXIF tag says; broken EXIF is ignored."""
    try:
        orientation = img.getexif().get(0x0112, 1)
        if orientation not in range(2, 9):  # 1 is upright; 0, 9 and others mean nothing
            return img
        turned = ImageOps.exif_transpose(img)
    except Exception:
        return img
    if turned is None or turned is img:
        return img
    notes.append(f"rotated as its EXIF orientation tag ({orientation}) says")
    return turned


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, keeping the dynamic range of deep images."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img.convert("RGB")
    if mode in ("I", "F") or mode.startswith("I;16"):
        gray = _scale_deep(_deep_values(img, notes), notes, mode)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"))
        if alpha.min() < 255:
            black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            notes.append(f"{mode} with transparency composited on black")
            return Image.alpha_composite(black, rgba).convert("RGB")
        notes.append(f"{mode}: fully opaque alpha channel dropped")
        return rgba.convert("RGB")
    if mode in ("L", "1"):
        notes.append("grayscale copied to R, G and B")
    elif mode == "P":
        notes.append("palette colours expanded")
    elif mode != "RGB":
        notes.append(f"{mode} converted to RGB")
    return img.convert("RGB")


def _deep_values(img: Image.Image, notes: list[str]) -> np.ndarray:
    """The pixels of a deep (16/32-bit, float) picture as an array; one larger than
    :data:`FITS_MAX_SIDE` is averaged over whole blocks a band of rows at a time, so the
    float64 work of scaling it (several times the picture's size) is never done at full size."""
    width, height = img.size
    factor = -(-max(width, height) // FITS_MAX_SIDE)
    if factor <= 1:
        return np.asarray(img)
    rows = max(factor, _FITS_BLOCK_BYTES // (8 * width) // factor * factor)
    out = np.empty((-(-height // factor), -(-width // factor)), dtype=np.float64)
    for start in range(0, height, rows):
        stop = min(start + rows, height)
        band = np.asarray(img.crop((0, start, width, stop))).astype(np.float64)
        out[start // factor:-(-stop // factor)] = _block_mean(band, factor)
    notes.append(f"large image averaged over {factor}x{factor} pixel blocks while read "
                 f"({width}x{height} -> {out.shape[1]}x{out.shape[0]})")
    return out


def _scale_deep(values: np.ndarray, notes: list[str], mode: str) -> np.ndarray:
    """Map 16/32-bit or float pixels to uint8 by percentile clipping (truncation loses them)."""
    scaled, lo, hi = _percentile_scale(values.astype(np.float64))
    kind = "float" if mode == "F" else ("16-bit" if mode.startswith("I;16") else "32-bit")
    notes.append(f"{kind} data scaled to 8 bit (percentiles {PERCENTILE_LOW}-{PERCENTILE_HIGH}: "
                 f"{lo:.6g}..{hi:.6g})")
    return np.round(scaled * 255).astype(np.uint8)


def _percentile_scale(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Linear 0..1 scaling between robust percentiles of the finite values; NaN/inf become 0."""
    finite = np.isfinite(values)
    if not finite.any():
        raise ImageLoadError("the image has no finite pixel values")
    lo, hi = np.percentile(values[finite], [PERCENTILE_LOW, PERCENTILE_HIGH])
    if not hi > lo:  # nearly constant: fall back to the full range so edges are not lost
        lo, hi = float(values[finite].min()), float(values[finite].max())
    out = np.zeros(values.shape, dtype=np.float64)
    if hi > lo:
        out[finite] = np.clip((values[finite] - lo) / (hi - lo), 0.0, 1.0)
    return out, float(lo), float(hi)


# --- FITS --------------------------------------------------------------------------------------

FITS_STREAM_BYTES = 20 * 2**20
"""FITS image data larger than this is never converted whole: it is read in blocks of rows
straight from the file's bytes (no copy of them is made), only the planes that are shown, and
block-averaged down to :data:`FITS_MAX_SIDE` while it is stretched. Converted whole, a 150 MB
float32 frame needed about 2 GB of float64 temporaries."""
FITS_MAX_SIDE = 2048
"""Longest side a large FITS image is decoded to (by a whole block-averaging factor): several
times what survey matching (424 px) and the model (at most a few hundred px) ever look at."""
FITS_SAMPLE_PIXELS = 4_000_000
"""Pixels (an even grid) from which the stretch percentiles of a large FITS image are taken."""
_FITS_BLOCK_BYTES = 8 * 2**20
"""About this many float64 bytes per block of rows while a large FITS image is streamed."""


def _decode_fits(data: bytes) -> LoadedImage:
    """First HDU with 2-D or 3-D image data -> RGB, via astropy, with an asinh stretch.

    The HDUs are read lazily from the bytes; image data bigger than :data:`FITS_STREAM_BYTES`
    goes through :func:`_fits_hdu_to_rgb_streamed` (blocks of rows, downsampled), smaller data
    through :func:`_fits_hdu_to_rgb` (whole, full resolution)."""
    from astropy.io import fits  # only FITS users pay for the import

    try:
        hdul = fits.open(io.BytesIO(data), memmap=False, lazy_load_hdus=True)
    except Exception as exc:
        raise ImageLoadError(f"not a valid FITS file ({_reason(exc)})") from None
    with hdul:
        try:
            for index, hdu in enumerate(hdul):
                shape = _fits_image_shape(hdu)
                if shape is None:
                    continue
                if _fits_data_bytes(hdu, shape) > FITS_STREAM_BYTES:
                    _check_fits_length(hdul, index, hdu, len(data))
                    return _fits_hdu_to_rgb_streamed(hdu, shape, index)
                return _fits_hdu_to_rgb(hdu, shape, index)
        except ImageLoadError:
            raise
        except Exception as exc:
            raise ImageLoadError(f"the FITS file is truncated or corrupt "
                                 f"({_reason(exc)})") from None
    raise ImageLoadError("the FITS file holds no 2-D or 3-D image")


def _fits_image_shape(hdu: object) -> tuple[int, ...] | None:
    """Shape (numpy order) of an image HDU read from its header only, or None if not an image."""
    from astropy.io import fits

    if not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
        return None
    header = hdu.header
    prefix = "ZNAXIS" if isinstance(hdu, fits.CompImageHDU) and "ZNAXIS" in header else "NAXIS"
    naxis = int(header.get(prefix, 0))
    if naxis < 2:
        return None
    shape = tuple(int(header.get(f"{prefix}{i}", 0)) for i in range(naxis, 0, -1))
    core = _squeeze_leading(shape)
    if len(core) not in (2, 3) or min(core) < 1:
        return None
    return core


def _squeeze_leading(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Drop degenerate leading axes (radio cubes store images as 1x1xHxW)."""
    shape = tuple(shape)
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _fits_bitpix(hdu: object) -> int:
    from astropy.io import fits

    header = hdu.header  # type: ignore[attr-defined]
    if isinstance(hdu, fits.CompImageHDU) and "ZBITPIX" in header:
        return int(header["ZBITPIX"])
    return int(header.get("BITPIX", 8))


def _fits_data_bytes(hdu: object, shape: tuple[int, ...]) -> int:
    """Size of an image HDU's data (uncompressed) from its header."""
    return int(np.prod(shape, dtype=np.int64)) * max(abs(_fits_bitpix(hdu)) // 8, 1)


def _check_fits_length(hdul: object, index: int, hdu: object, total: int) -> None:
    """Refuse a plain image HDU whose data runs past the end of the file, before reading it."""
    from astropy.io import fits

    if isinstance(hdu, fits.CompImageHDU):
        return  # its size on disk is the compressed table's; astropy checks that itself
    header = hdu.header  # type: ignore[attr-defined]
    naxis = int(header.get("NAXIS", 0))
    full = int(np.prod([int(header.get(f"NAXIS{i}", 0)) for i in range(1, naxis + 1)],
                       dtype=np.int64))
    start = int(hdul.fileinfo(index)["datLoc"])  # type: ignore[attr-defined]
    if start + full * (abs(_fits_bitpix(hdu)) // 8) > total:
        raise ImageLoadError("the FITS file is truncated (less data than its header says)")


def _fits_hdu_to_rgb_streamed(hdu: object, shape: tuple[int, ...], index: int) -> LoadedImage:
    """:func:`_fits_hdu_to_rgb` for large data, in bounded memory.

    Only the planes shown are read (one, or three for R, G, B), in blocks of rows that are views
    of the file's bytes (``hdu.section``; scaled integers are scaled block by block). The stretch
    percentiles come from an even grid of at most :data:`FITS_SAMPLE_PIXELS` pixels; each block
    is then stretched at full resolution and block-averaged by a whole factor down to at most
    :data:`FITS_MAX_SIDE` px, so the picture equals the full-resolution one shrunk by an
    area-averaging filter, within rounding."""
    height, width = shape[-2], shape[-1]
    planes = shape[0] if len(shape) == 3 else 1
    _check_size(width, height)
    if width * height * planes > 3 * MAX_PIXELS:
        raise ImageLoadError(f"FITS cube too large ({planes}x{height}x{width})")
    header = hdu.header  # type: ignore[attr-defined]
    from astropy.io import fits

    prefix_key = "ZNAXIS" if isinstance(hdu, fits.CompImageHDU) and "ZNAXIS" in header \
        else "NAXIS"
    lead = (0,) * (int(header.get(prefix_key, 0)) - len(shape))  # degenerate leading axes
    section = hdu.section  # type: ignore[attr-defined]
    used = [0, 1, 2] if planes == 3 else [0]

    def rows(plane: int, start: int, stop: int) -> np.ndarray:
        key = lead + ((plane,) if len(shape) == 3 else ()) + (slice(start, stop), slice(None))
        block = np.asarray(section[key])
        if block.shape != (stop - start, width):
            raise ImageLoadError("the FITS file is truncated (less data than its header says)")
        return block

    factor = max(1, -(-max(height, width) // FITS_MAX_SIDE))
    per_block = max(factor, _FITS_BLOCK_BYTES // (8 * width) // factor * factor)
    step = max(1, int(np.sqrt(height * width / FITS_SAMPLE_PIXELS)))
    dtype = "?"
    limits = []
    for plane in used:
        sample = np.empty((-(-height // step), -(-width // step)), dtype=np.float32)
        for start in range(0, height, per_block):
            block = rows(plane, start, min(start + per_block, height))
            dtype = block.dtype.name
            first = (-start) % step
            sample[(start + first) // step:][:len(range(first, len(block), step))] = \
                block[first::step, ::step]
        limits.append(_percentile_limits(sample))
        del sample
    out_h, out_w = -(-height // factor), -(-width // factor)
    bad = 0
    bands = []
    for plane, (lo, hi) in zip(used, limits):
        band = np.empty((out_h, out_w), dtype=np.float64)
        for start in range(0, height, per_block):
            stop = min(start + per_block, height)
            values = rows(plane, start, stop).astype(np.float64)
            finite = np.isfinite(values)
            bad += int(values.size - np.count_nonzero(finite))
            band[start // factor:-(-stop // factor)] = _block_mean(
                _asinh_values(values, finite, lo, hi) * 255, factor)
            del values, finite
        bands.append(np.clip(np.round(band), 0, 255).astype(np.uint8))
        del band
    notes = [] if index == 0 else [f"image taken from FITS extension {index}"]
    if planes == 1:
        notes.append("single FITS band shown as gray")
    elif planes == 3:
        notes.append("3 FITS planes used as R, G, B")
    else:
        notes.append(f"FITS cube with {planes} planes: using the first, as gray")
    if bad:
        notes.append(f"{bad} NaN/infinite pixels set to 0")
    if len(bands) == 1:
        bands *= 3
    rgb = np.flipud(np.stack(bands, axis=-1))  # FITS row 0 is the bottom of the picture
    notes.append(f"FITS asinh stretch (a={ASINH_A}, "
                 f"percentiles {PERCENTILE_LOW}-{PERCENTILE_HIGH}"
                 + (f" of a {step}-pixel grid" if step > 1 else "") + ")")
    if factor > 1:
        notes.append(f"large FITS image averaged over {factor}x{factor} pixel blocks while read "
                     f"({width}x{height} -> {out_w}x{out_h})")
    image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    return LoadedImage(image=image, format="FITS", original_mode=f"FITS {dtype} {shape}",
                       original_size=(width, height), notes=notes)


def _percentile_limits(sample: np.ndarray) -> tuple[float, float]:
    """The clip points :func:`_percentile_scale` would use, from a sample it may reorder."""
    finite = np.isfinite(sample)
    values = sample.ravel() if finite.all() else sample[finite]
    del finite
    if not values.size:
        raise ImageLoadError("the image has no finite pixel values")
    lo, hi = np.percentile(values, [PERCENTILE_LOW, PERCENTILE_HIGH], overwrite_input=True)
    if not hi > lo:
        lo, hi = values.min(), values.max()
    return float(lo), float(hi)


def _asinh_values(values: np.ndarray, finite: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """:func:`_asinh_stretch` before rounding: 0..1 floats, non-finite pixels 0."""
    from astropy.visualization import AsinhStretch

    scaled = np.zeros(values.shape, dtype=np.float64)
    if hi > lo:
        scaled[finite] = np.clip((values[finite] - lo) / (hi - lo), 0.0, 1.0)
    return np.nan_to_num(AsinhStretch(a=ASINH_A)(scaled, clip=True), nan=0.0)


def _block_mean(values: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks; blocks cut by the edge average what they hold."""
    if factor == 1:
        return values
    height, width = values.shape
    padded = np.pad(values, ((0, -height % factor), (0, -width % factor)))
    sums = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor,
                          factor).sum(axis=(1, 3))
    row_counts = np.minimum(factor, height - np.arange(0, height, factor))
    col_counts = np.minimum(factor, width - np.arange(0, width, factor))
    return sums / np.outer(row_counts, col_counts)


def _fits_hdu_to_rgb(hdu: object, shape: tuple[int, ...], index: int) -> LoadedImage:
    """Stretch one FITS image HDU into an RGB picture (bands -> channels, rows flipped)."""
    height, width = shape[-2], shape[-1]
    planes = shape[0] if len(shape) == 3 else 1
    _check_size(width, height)
    if width * height * planes > 3 * MAX_PIXELS:
        raise ImageLoadError(f"FITS cube too large ({planes}x{height}x{width})")
    raw = hdu.data  # type: ignore[attr-defined]
    if raw is None:
        raise ImageLoadError("the FITS image HDU has no data")
    array = np.asarray(raw)
    if array.size != int(np.prod(shape)):
        raise ImageLoadError("the FITS file is truncated (less data than its header says)")
    array = array.reshape(shape).astype(np.float32)
    mode = f"FITS {np.asarray(raw).dtype.name} {shape}"
    notes = [] if index == 0 else [f"image taken from FITS extension {index}"]
    if planes == 1:
        bands = [array.reshape(height, width)]
        notes.append("single FITS band shown as gray")
    elif planes == 3:
        bands = [array[0], array[1], array[2]]
        notes.append("3 FITS planes used as R, G, B")
    else:
        bands = [array[0]]
        notes.append(f"FITS cube with {planes} planes: using the first, as gray")
    bad = sum(int((~np.isfinite(b)).sum()) for b in bands)
    if bad:
        notes.append(f"{bad} NaN/infinite pixels set to 0")
    stretched = [_asinh_stretch(b) for b in bands]
    if len(stretched) == 1:
        stretched *= 3
    rgb = np.flipud(np.stack(stretched, axis=-1))  # FITS row 0 is the bottom of the picture
    notes.append(f"FITS asinh stretch (a={ASINH_A}, "
                 f"percentiles {PERCENTILE_LOW}-{PERCENTILE_HIGH})")
    image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    return LoadedImage(image=image, format="FITS", original_mode=mode,
                       original_size=(width, height), notes=notes)


def _asinh_stretch(band: np.ndarray) -> np.ndarray:
    """Percentile-clip then asinh-stretch one band to uint8 (astropy.visualization's stretch)."""
    from astropy.visualization import AsinhStretch

    scaled, _, _ = _percentile_scale(band.astype(np.float64))
    stretched = AsinhStretch(a=ASINH_A)(scaled, clip=True)
    out = np.round(np.nan_to_num(stretched, nan=0.0) * 255)
    return np.clip(out, 0, 255).astype(np.uint8)
