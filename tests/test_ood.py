"""The OOD reference survives its file round trip exactly (PCA components are Fortran-ordered,
which once came back scrambled and made every galaxy look out of distribution)."""

import numpy as np

from galaxy_core.predict.ood import load_ood, ood_scores, save_ood


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
    from galaxy_core.predict.ood import border_brightness

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
