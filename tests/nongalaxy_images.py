"""Pictures that are not galaxies, for the out-of-distribution checks (tests/test_nongalaxy.py and
benchmarks/ood_nongalaxy.py).

Real photographs come only from what installed packages ship, offline: scikit-image's bundled
sample images (``skimage.data``; ``hubble_deep_field`` and ``moon`` are left out as astronomical,
and only images inside the wheel are used, so nothing is downloaded) and matplotlib's sample data
(``matplotlib.cbook.get_sample_data``). The rest is drawn here: plots, dashboard-like
screenshots, text, gradients, solid colours, black frames, noise, a satellite trail, a landscape.
Every image is returned as PNG (or JPEG) bytes, the way a user would upload it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "cell", "chelsea", "checkerboard", "clock",
                  "coffee", "coins", "colorwheel", "grass", "gravel", "horse",
                  "immunohistochemistry", "logo", "microaneurysms", "stereo_motorcycle", "page",
                  "shepp_logan_phantom", "retina", "rocket", "text", "binary_blobs")
"""``skimage.data`` images bundled in the wheel (no download), none of them astronomical."""


def _encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float64)
        span = float(arr.max() - arr.min()) or 1.0
        return np.round(255 * (arr - arr.min()) / span).astype(np.uint8)
    return arr


def skimage_photos() -> dict[str, bytes]:
    import skimage.data

    out = {}
    for name in SKIMAGE_PHOTOS:
        fetch = getattr(skimage.data, name)
        arr = fetch(rng=0) if name == "binary_blobs" else fetch()  # the one drawn at random
        if isinstance(arr, tuple):  # stereo_motorcycle: (left, right, disparity)
            arr = arr[0]
        out[f"skimage_{name}"] = _encode(Image.fromarray(_to_uint8(arr)))
    faces = skimage.data.lfw_subset()
    face = Image.fromarray(_to_uint8(faces[0])).resize((200, 200), Image.Resampling.BICUBIC)
    out["skimage_lfw_face"] = _encode(face, "JPEG")
    return out


def matplotlib_samples() -> dict[str, bytes]:
    from matplotlib import cbook

    out = {}
    for name in ("grace_hopper.jpg", "logo2.png", "Minduka_Present_Blue_Pack.png"):
        with cbook.get_sample_data(name) as f:
            out[f"mpl_{name.split('.')[0]}"] = f.read()
    topo = cbook.get_sample_data("topobathy.npz")["topo"]
    out["mpl_topobathy"] = _plot(lambda fig, ax: ax.imshow(topo, cmap="terrain"), axis=False)
    dem = cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"]
    out["mpl_jacksboro_dem"] = _encode(Image.fromarray(_to_uint8(dem)))
    with cbook.get_sample_data("s1045.ima.gz") as f:
        mri = np.frombuffer(f.read(), np.uint16).reshape(256, 256)
    out["mpl_mri_slice"] = _encode(Image.fromarray(_to_uint8(mri)))
    with cbook.get_sample_data("eeg.dat") as f:
        eeg = np.frombuffer(f.read(), np.int16).reshape(-1, 8)[:800]
    out["mpl_eeg_plot"] = _plot(lambda fig, ax: ax.plot(eeg + np.arange(8) * 400, lw=0.6))
    return out


def _plot(draw: Callable, axis: bool = True, style: str = "default",
          size: tuple[float, float] = (6.4, 4.8)) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.style.context(style):
        fig, ax = plt.subplots(figsize=size, dpi=80)
        draw(fig, ax)
        if not axis:
            ax.set_axis_off()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
    return buf.getvalue()


def rendered_plots() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 300))
    t = np.linspace(0, 10, 200)
    return {
        "plot_scatter": _plot(lambda f, a: a.scatter(x, y, s=8)),
        "plot_scatter_dark": _plot(lambda f, a: a.scatter(x, y, s=8, c=x), style="dark_background"),
        "plot_lines": _plot(lambda f, a: (a.plot(t, np.sin(t)), a.plot(t, np.cos(t)))),
        "plot_lines_dark": _plot(lambda f, a: a.plot(t, np.sin(t) * np.exp(-t / 5)),
                                 style="dark_background"),
        "plot_bars": _plot(lambda f, a: a.bar(list("ABCDEF"), rng.uniform(1, 5, 6))),
        "plot_histogram": _plot(lambda f, a: a.hist(rng.normal(size=2000), bins=40)),
        "plot_pie": _plot(lambda f, a: a.pie([3, 2, 1, 4]), size=(4, 4)),
        "plot_heatmap": _plot(lambda f, a: a.imshow(rng.normal(size=(20, 20)), cmap="viridis")),
        "plot_contour": _plot(lambda f, a: a.contourf(*np.meshgrid(t, t),
                                                       np.sin(np.meshgrid(t, t)[0])
                                                       * np.cos(np.meshgrid(t, t)[1]))),
    }


def _screenshot(dark: bool, seed: int) -> Image.Image:
    """A dashboard-like screenshot: top bar, sidebar, cards with text and a small chart."""
    rng = np.random.default_rng(seed)
    bg, panel, ink, accent = (((14, 17, 23), (38, 39, 48), (250, 250, 250), (255, 75, 75))
                              if dark else ((255, 255, 255), (240, 242, 246), (49, 51, 63),
                                            (255, 75, 75)))
    img = Image.new("RGB", (1280, 800), bg)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, 1280, 48), fill=panel)
    draw.rectangle((0, 48, 260, 800), fill=panel)
    for i in range(8):
        draw.text((24, 80 + 36 * i), f"Page {i + 1}", fill=ink)
    draw.text((300, 70), "Galaxy classifier - results", fill=ink)
    for c in range(3):
        x0 = 300 + c * 320
        draw.rounded_rectangle((x0, 120, x0 + 300, 260), 8, outline=ink, fill=bg)
        draw.text((x0 + 16, 136), f"Metric {c}: {rng.uniform(0, 100):.1f}%", fill=ink)
        draw.rectangle((x0 + 16, 200, x0 + 16 + int(rng.uniform(50, 260)), 220), fill=accent)
    for r in range(10):
        draw.text((300, 300 + 40 * r), " | ".join(f"{v:.3f}" for v in rng.uniform(size=6)),
                  fill=ink)
    return img


def rendered_images() -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    size = 424
    ys, xs = np.mgrid[0:size, 0:size] / size
    out = {}
    out["screenshot_light"] = _encode(_screenshot(False, 0))
    out["screenshot_dark"] = _encode(_screenshot(True, 1))
    text = Image.new("RGB", (800, 600), "white")
    draw = ImageDraw.Draw(text)
    for i in range(30):
        draw.text((20, 10 + 19 * i), "The quick brown fox jumps over the lazy dog. " * 2,
                  fill="black")
    out["text_page"] = _encode(text)
    out["gradient_horizontal"] = _encode(Image.fromarray((xs * 255).astype(np.uint8)))
    out["gradient_vertical_colour"] = _encode(Image.fromarray(
        np.stack([ys * 255, 100 + 0 * ys, (1 - ys) * 255], -1).astype(np.uint8)))
    out["gradient_dark_vertical"] = _encode(Image.fromarray((ys * 60).astype(np.uint8)))
    for name, colour in (("white", (255, 255, 255)), ("red", (220, 30, 30)),
                         ("grey", (128, 128, 128)), ("navy", (10, 20, 80)),
                         ("black", (0, 0, 0))):
        out[f"solid_{name}"] = _encode(Image.new("RGB", (size, size), colour))
    out["black_jpeg"] = _encode(Image.new("RGB", (640, 480)), "JPEG")
    out["all_zero_424"] = _encode(Image.fromarray(np.zeros((424, 424, 3), np.uint8)))
    out["dark_noise"] = _encode(Image.fromarray(
        np.clip(rng.normal(4, 3, (size, size, 3)), 0, 255).astype(np.uint8)))
    out["uniform_noise"] = _encode(Image.fromarray(rng.integers(0, 256, (256, 256, 3),
                                                                dtype=np.uint8)))
    trail = np.zeros((size, size, 3), np.uint8)
    trail[205:219] = 255
    out["satellite_trail_bar"] = _encode(Image.fromarray(trail))
    sky = rng.normal(4, 3, (size, size))
    dist = np.abs((ys - 0.5) - 0.6 * (xs - 0.5)) * size
    sky += 180 * np.exp(-dist**2 / (2 * 2.0**2))
    out["satellite_trail_on_sky"] = _encode(Image.fromarray(
        np.clip(np.repeat(sky[..., None], 3, -1), 0, 255).astype(np.uint8)), "JPEG")
    checker = ((np.floor(xs * 8) + np.floor(ys * 8)) % 2 * 255).astype(np.uint8)
    out["checkerboard"] = _encode(Image.fromarray(checker))
    out["stripes"] = _encode(Image.fromarray(
        (127 + 127 * np.sin(xs * 40)).astype(np.uint8)))
    sun = np.hypot(xs - 0.7, ys - 0.25) < 0.06
    land = np.where((ys > 0.6)[..., None], [60, 140, 50] + rng.normal(0, 12, (size, size, 3)),
                    np.stack([120 + 80 * ys, 170 + 60 * ys, 240 + 0 * ys], -1))
    land[sun] = (255, 240, 200)
    out["landscape_render"] = _encode(Image.fromarray(np.clip(land, 0, 255).astype(np.uint8)),
                                      "JPEG")
    blocks = np.kron(rng.integers(0, 2, (21, 21)), np.ones((16, 16))) * 255
    out["qr_like_blocks"] = _encode(Image.fromarray(blocks.astype(np.uint8)))
    return out


def non_galaxy_images() -> dict[str, bytes]:
    """Every non-galaxy picture, by name (about 60)."""
    return {**skimage_photos(), **matplotlib_samples(), **rendered_plots(), **rendered_images()}


# --- the galaxies the same checks must leave alone ------------------------------------------

N_SDSS = 200
"""SDSS test-split galaxies sampled (``random_state=0``) from split 0's test part."""


def split_zero(loaded, data_root: Path, scratch: Path):
    """The prepared GZ1 set the shipped model was trained on (``data/gz1`` when it holds the
    model's split), else the same split re-created from the catalogue in ``scratch``."""
    from galaxy_core.data.prepare import PrepareRequest, prepare
    from galaxy_core.data.prepared import open_prepared
    from galaxy_core.errors import GalaxyError
    from galaxy_core.locations import prepared_dir

    training = loaded.meta.get("training", {})
    split = int(training.get("split", 0))
    try:
        prepared = open_prepared(prepared_dir())
        table = prepared.split_table(split)
        if (table["split"] == "test").sum() == training.get("n_test"):
            return prepared, split
    except GalaxyError:
        pass
    images = data_root / "gz1_sdss" / "images"
    prepared = prepare(PrepareRequest(images=images, out=scratch,
                                      labels=data_root / "gz1_sdss" / "gz1_classes.csv",
                                      build_cache=False), loaded.config)
    return prepared, split


def sdss_test_sample(prepared, split: int, n: int = N_SDSS) -> list[Path]:
    """``n`` original JPEG files of the split's test part, as a user would give them."""
    table = prepared.split_table(split)
    test = table[table["split"] == "test"]
    return [prepared.image_path(name) for name in test.sample(min(n, len(test)),
                                                              random_state=0)["image"]]


def seed_and_gz2(data_root: Path) -> list[Path]:
    """The 6 seed examples (2 GZ2 cutouts, 4 press images) and the 100 unlabelled GZ2 cutouts."""
    seeds = sorted((data_root / "seed_examples").glob("*.jpg"))
    return seeds + sorted((data_root / "gz2_unlabelled").glob("*.jpg"))
