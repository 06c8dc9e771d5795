"""The OOD reference survives its file round trip exactly (PCA components are Fortran-ordered,
which once came back scrambled and made every galaxy look out of distribution)."""

import numpy as np
import pytest

from galaxy_core.model.ood import border_brightness, load_ood, ood_scores, save_ood


def test_ood_state_round_trip_keeps_scores(tmp_path):
    rng = np.random.default_rng(0)
    components = np.asfortranarray(rng.normal(size=(8, 32)).astype(np.float32))
    assert not components.flags.c_contiguous
    state = {"pca_mean": rng.normal(size=32).astype(np.float32),
             "pca_components": components,
             "class_means": rng.normal(size=(2, 8)).astype(np.float32),
             "precision": np.eye(8, dtype=np.float32), "scale": np.array([2.0], np.float32)}
    feats = rng.normal(size=(20, 32)).astype(np.float32)
    save_ood(tmp_path, state)
    loaded = load_ood(tmp_path)
    for key, value in state.items():
        np.testing.assert_array_equal(loaded[key], value)
    np.testing.assert_allclose(ood_scores(feats, loaded), ood_scores(feats, state), rtol=1e-6)


def test_bright_border_raises_the_score_dark_sky_does_not():
    rng = np.random.default_rng(1)
    dark = np.zeros((2, 32, 32, 3), np.uint8)
    dark[:, 12:20, 12:20] = 250  # a bright galaxy in the middle does not count
    bright = np.full((1, 32, 32, 3), 180, np.uint8)
    images = np.concatenate([dark, bright])
    np.testing.assert_allclose(border_brightness(images), [0, 0, 180])
    state = {"pca_mean": np.zeros(4, np.float32), "pca_components": np.eye(4, dtype=np.float32),
             "class_means": np.zeros((2, 4), np.float32), "precision": np.eye(4, dtype=np.float32),
             "scale": np.array([10.0], np.float32), "border_scale": np.array([20.0], np.float32)}
    feats = rng.normal(size=(3, 4)).astype(np.float32) * 0.1
    plain = ood_scores(feats, state)
    combined = ood_scores(feats, state, images)
    np.testing.assert_allclose(combined[:2], plain[:2])
    assert combined[2] == np.float32(180 / 20)
    del state["border_scale"]  # references written before the border score still load
    np.testing.assert_allclose(ood_scores(feats, state, images), plain)


def test_fit_ood_scales_validation_galaxies_to_one_and_flags_strangers():
    """Fitted on two clusters of training features: validation galaxies drawn like them score
    about 1 at their 99th percentile, features far from both centres and images with a bright
    border score far above the warning level."""
    from galaxy_core.model.ood import WARN_AT, fit_ood

    rng = np.random.default_rng(2)
    centres = np.zeros((2, 16))
    centres[1, 0] = 6.0

    def galaxies(n):
        labels = rng.integers(0, 2, n)
        return centres[labels] + rng.normal(size=(n, 16)), labels

    train_feats, train_labels = galaxies(400)
    val_feats, _ = galaxies(200)
    val_images = rng.integers(0, 12, (200, 32, 32, 3)).astype(np.uint8)  # dark sky borders
    state, meta = fit_ood(train_feats, train_labels, val_feats, val_images)
    assert state["class_means"].shape == (2, meta["components"])
    val_scores = ood_scores(val_feats, state, val_images)
    assert np.percentile(val_scores, 99) == pytest.approx(1.0, abs=0.05)
    assert meta["val_score_percentiles"]["99"] == pytest.approx(np.percentile(val_scores, 99))
    new_galaxies, _ = galaxies(50)
    assert np.median(ood_scores(new_galaxies, state, val_images[:50])) < WARN_AT
    strangers = new_galaxies + 25.0 * rng.normal(size=(50, 16))
    assert ood_scores(strangers, state).min() > 3 * WARN_AT
    bright = np.full((5, 32, 32, 3), 200, np.uint8)
    assert ood_scores(new_galaxies[:5], state, bright).min() > 3 * WARN_AT


def test_border_brightness_reads_a_memory_mapped_part_in_chunks(tmp_path, monkeypatch):
    """The release step fits the reference on a part read through a memory map: borders are
    averaged a chunk of images at a time, with exactly the numbers of the whole array at once."""
    from galaxy_core.data.cache import CachedImages
    from galaxy_core.model import ood

    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(23, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "part.npy", images)
    whole = border_brightness(images)
    ring = np.ones((16, 16), bool)
    ring[2:-2, 2:-2] = False
    np.testing.assert_array_equal(whole, images[:, ring].reshape(23, -1).mean(1))
    monkeypatch.setattr(ood, "BORDER_CHUNK", 5)  # 23 images: four full chunks and a short one
    mapped = CachedImages(np.load(tmp_path / "part.npy", mmap_mode="r"))
    np.testing.assert_array_equal(border_brightness(mapped), whole)
    np.testing.assert_array_equal(border_brightness(list(images)), whole)
