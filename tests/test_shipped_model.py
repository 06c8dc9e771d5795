"""The shipped model on real data: it loads safely, reproduces its stored test accuracy on a
sample of its own held-out split, warns on inputs that are not galaxies, and handles the
original project's telescope images through survey matching."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from galaxy_core.config import Config
from galaxy_core.data.prepare import PrepareRequest, prepare
from galaxy_core.locations import SHIPPED_MODEL_DIR
from galaxy_core.model.store import load_model
from galaxy_core.predict.classify import classify_sources

pytestmark = pytest.mark.realdata

N_SAMPLE = 120


@pytest.fixture(scope="module")
def shipped():
    if not (SHIPPED_MODEL_DIR / "model.json").is_file():
        pytest.skip("no shipped model in models/")
    return load_model(SHIPPED_MODEL_DIR)


def _report() -> dict:
    import json

    return json.loads((SHIPPED_MODEL_DIR / "report_test" / "report.json").read_text())


def _gz1_test_figures(shipped) -> tuple[int, float]:
    """The number of GZ1 test galaxies and their stored accuracy. A model trained on several
    surveys reports each one (``by_source``); CI and a fresh clone have only the GZ1 images."""
    by_source = _report().get("by_source")
    if by_source:
        return by_source["gz1"]["n"], by_source["gz1"]["accuracy"]
    return shipped.meta["training"]["n_test"], shipped.meta["metrics"]["test"]["accuracy"]


@pytest.fixture(scope="module")
def test_split(shared_data, shipped, tmp_path_factory):
    """Re-create the GZ1 part of the shipped model's split from the catalogue (same seed; a
    multi-source prepare draws each source's split on its own, so GZ1 alone gives the same
    part) and sample its test galaxies."""
    cfg: Config = shipped.config
    out = tmp_path_factory.mktemp("prepared")
    prepared = prepare(PrepareRequest(images=shared_data / "gz1_sdss" / "images", out=out,
                                      labels=shared_data / "gz1_sdss" / "gz1_classes.csv",
                                      build_cache=False), cfg)
    table = prepared.split_table(shipped.meta["training"]["split"])
    test = table[table["split"] == "test"]
    assert len(test) == _gz1_test_figures(shipped)[0]
    stored = {row["objid"] for row in _report()["predictions"]
              if row.get("source", "gz1") == "gz1"}
    assert set(test["objid"].astype(str)) == stored, "the re-created GZ1 test part differs"
    return prepared, test.sample(N_SAMPLE, random_state=0)


def _to_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_model_card_and_metrics_agree_with_the_report(shipped):
    m = shipped.meta["metrics"]["test"]
    report = _report()
    assert m["accuracy"] == pytest.approx(report["calibrated"]["metrics"]["accuracy"])
    assert report["n"] == shipped.meta["training"]["n_test"]
    card = (SHIPPED_MODEL_DIR / "MODEL_CARD.md").read_text()
    assert f"| accuracy | {100 * m['accuracy']:.1f}%" in card
    assert shipped.meta["weights_dtype"] == "float16"
    # The share kept at 95% accuracy is in the report and the card says the same.
    hit = report["selective"]["at_accuracy"]["0.95"]
    assert hit and 0.5 < hit["coverage"] < 1.0 and hit["accuracy"] >= 0.95
    assert f"which keeps {100 * hit['coverage']:.1f}% of galaxies" in card


def test_sample_of_test_split_matches_stored_accuracy(shipped, test_split):
    prepared, sample = test_split
    preds = classify_sources(shipped, [prepared.image_path(n) for n in sample["image"]],
                             survey="off")
    labels = [p.label for p in preds]
    accuracy = float(np.mean(np.array(labels) == sample["label"].to_numpy()))
    stored = _gz1_test_figures(shipped)[1]
    # 120 galaxies: the binomial standard error is about 2 points; allow 3 of them.
    assert accuracy >= stored - 0.06, (accuracy, stored)
    scores = np.array([p.ood_score for p in preds])
    assert np.median(scores) < 1.0


def test_non_galaxies_are_flagged_out_of_distribution(shipped):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    checker = Image.fromarray((np.indices((256, 256)).sum(0) // 32 % 2 * 255).astype(np.uint8))
    grad = np.linspace(0, 255, 256)
    sky_photo = Image.fromarray(np.stack([grad[:, None].repeat(256, 1) * 0.4,
                                          grad[:, None].repeat(256, 1) * 0.7,
                                          np.full((256, 256), 230.0)], -1).astype(np.uint8))
    preds = classify_sources(shipped, [(n, _to_bytes(i)) for n, i in
                                       (("noise", noise), ("checker", checker),
                                        ("blue sky", sky_photo))], survey="off")
    for p in preds:
        assert p.ok and p.unusual, (p.source, p.ood_score)


def test_seed_examples_go_through_survey_matching(shipped, shared_data):
    folder = shared_data / "seed_examples"
    labels = pd.read_csv(folder / "labels.csv")
    foreign = labels[labels["filename"].str.contains("_to_test")]
    preds = classify_sources(shipped, [folder / f for f in foreign["filename"]], survey="auto")
    assert len(preds) == 4
    for p in preds:
        assert p.ok and p.survey_matched and p.label in {"spiral", "elliptical"}
        assert any("PNG" in n for n in p.notes)
