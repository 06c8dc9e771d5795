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
