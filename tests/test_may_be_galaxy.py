"""A flagged picture that may well be a galaxy is told so (issue 23, part 1).

Press pictures of real galaxies fail the picture checks that describe framing (the galaxy fills
or overflows the frame, or sits off centre) while the checks that describe non-sky pictures (no
source, a noiseless sky, a streak, the whole frame's features) pass. Such an input stays flagged
(never accepted, no confidence band) but the page says "may be a galaxy" and what to do, instead
of "not a galaxy"."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dashboard import verdict as words
from galaxy_core.locations import SHIPPED_MODEL_DIR
from galaxy_core.predict.classify import Prediction, classify_sources
from galaxy_core.predict.plausibility import FRAMING_CHECKS, MATCHED_FEATURES, WHOLE_FEATURES
from tests.conftest import draw_galaxy


def flagged(findings: list[str], score: float = 1.5) -> Prediction:
    return Prediction("x.png", "spiral", 0.9, 0.1, ood_score=score, findings=findings)


@pytest.mark.parametrize("findings, may_be", [
    (["bright border"], True),
    (["off centre", "bright sky"], True),
    ([MATCHED_FEATURES], True),
    (["bright border", MATCHED_FEATURES], True),
    (["flat sky"], False),
    (["bright border", WHOLE_FEATURES], False),
    (["no source"], False),
    (["streak", "off centre"], False),
    ([], False),  # flagged with no finding named: nothing says it may be a galaxy
])
def test_only_framing_findings_leave_a_galaxy_possible(findings, may_be):
    assert flagged(findings).may_be_galaxy is may_be
    assert flagged(findings, score=0.8).may_be_galaxy is False  # not flagged at all


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def shipped():
    from galaxy_core.model.store import load_model

    if not (SHIPPED_MODEL_DIR / "model.json").is_file():
        pytest.skip("no shipped model in models/")
    return load_model(SHIPPED_MODEL_DIR)


def test_a_galaxy_that_fills_the_frame_may_be_one_a_grey_frame_may_not(shipped):
    """The centre quarter of a drawn spiral, blown up: its sky is its own light, as in a
    press picture. A grey frame has no source at all."""
    spiral = draw_galaxy("spiral", 240, seed=1)
    zoomed = spiral.crop((90, 90, 150, 150)).resize((240, 240), Image.LANCZOS)
    grey = Image.fromarray(np.full((240, 240, 3), 128, dtype=np.uint8))
    whole, close, plain = classify_sources(shipped, [("whole.png", _png(spiral)),
                                                     ("close.png", _png(zoomed)),
                                                     ("grey.png", _png(grey))])
    assert not whole.unusual and whole.findings == [] and not whole.may_be_galaxy
    assert close.unusual and close.may_be_galaxy, close.findings
    assert set(close.findings) <= FRAMING_CHECKS | {MATCHED_FEATURES}
    assert plain.unusual and not plain.may_be_galaxy and "no source" in plain.findings


def test_the_words_say_may_be_a_galaxy_why_and_what_to_do():
    said = words.verdict("spiral", 0.99, unusual=True, may_be_galaxy=True)
    assert said.band == words.UNFAMILIAR and said.colour == "orange"
    assert "may be a galaxy" in said.headline and said.headline != words.NOT_GALAXY_TEXT
    assert "confident" not in said.headline.lower() and "99" not in said.headline
    advice = words.unfamiliar_advice(["bright border", "off centre"])
    assert words.FINDING_WORDS["bright border"] in advice
    assert words.FINDING_WORDS["off centre"] in advice
    assert "crop the picture to the galaxy" in advice and "survey matching" not in advice
    assert "survey matching to **auto**" in words.unfamiliar_advice([], matched=False)
    # a box helps an off-centre galaxy; a galaxy that fills its frame needs a wider picture
    # (measured on the flagged ESA/Hubble pictures: see unfamiliar_advice)
    off = words.unfamiliar_advice(["off centre"])
    assert "Which galaxy?" in off and "wider picture" not in off
    filling = words.unfamiliar_advice(["bright sky"])
    assert "wider picture" in filling and "crop the picture to the galaxy" not in filling
    assert "crop the picture to the galaxy" in words.unfamiliar_advice(["features after matching"])
    # without may_be_galaxy a flagged input is still "not a galaxy"
    assert words.verdict("spiral", 0.99, unusual=True).headline == words.NOT_GALAXY_TEXT


def test_galaxy_predict_says_how_many_flagged_inputs_may_be_galaxies(shipped, tmp_path, capsys):
    from galaxy_core.cli import main

    spiral = draw_galaxy("spiral", 240, seed=1)
    spiral.crop((90, 90, 150, 150)).resize((240, 240), Image.LANCZOS).save(tmp_path / "a.png")
    Image.fromarray(np.full((240, 240, 3), 128, dtype=np.uint8)).save(tmp_path / "b.png")
    assert main(["predict", str(tmp_path), "--model", str(SHIPPED_MODEL_DIR), "--views", "1",
                 "-o", str(tmp_path / "out.csv")]) == 0
    err = capsys.readouterr().err
    assert "warning: 2 input(s) look unlike the training galaxies" in err
    assert "1 of them may well be galaxies framed unlike a survey cutout" in err
    assert "--box" in err
    # the rows say which is which, so a survey table can be filtered on it
    import pandas as pd

    rows = pd.read_csv(tmp_path / "out.csv", keep_default_na=False).set_index("path")
    close, grey = rows.loc[str(tmp_path / "a.png")], rows.loc[str(tmp_path / "b.png")]
    assert close["ood_verdict"] == "may be a galaxy" and grey["ood_verdict"] == "not like a galaxy"
    assert set(close["ood_findings"].split("; ")) <= FRAMING_CHECKS | {MATCHED_FEATURES}
    assert "no source" in grey["ood_findings"].split("; ")
    # a resumed run counts the rows it reads back as the first run did
    assert main(["predict", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--model",
                 str(SHIPPED_MODEL_DIR), "--views", "1", "-o", str(tmp_path / "out.csv"),
                 "--resume"]) == 0
    err = capsys.readouterr().err
    assert "wrote 0 rows" in err and "1 of them may well be galaxies" in err


def test_an_accepted_input_has_no_verdict_and_an_earlier_output_is_not_continued(tmp_path):
    from galaxy_core.predict.runner import PREDICT_COLUMNS
    from galaxy_core.predict.writers import CsvOutput, OutputError

    sure = Prediction("a.png", "spiral", 0.98, 0.02, ood_score=0.4).row()
    assert sure["ood_verdict"] == "" and sure["ood_findings"] == ""
    assert Prediction("c.png", error="not an image").row()["ood_verdict"] == ""
    earlier = [c for c in PREDICT_COLUMNS if c not in ("ood_verdict", "ood_findings")]
    (tmp_path / "old.csv").write_text(",".join(earlier) + "\n")
    with pytest.raises(OutputError, match="earlier galaxy predict, without the columns "
                                          "ood_findings, ood_verdict"):
        CsvOutput(tmp_path / "old.csv", PREDICT_COLUMNS)


def test_decide_applies_the_limits_it_is_given():
    """The fit (benchmarks/fit_picture_limits.py) tries other limits on measured pictures: the
    same measurements must pass or fail by the limits passed, features included."""
    from dataclasses import replace

    from galaxy_core.predict.plausibility import LIMITS, PictureLook, decide

    look = PictureLook(found=True, offset=0.40, sky=3.0, dark_border=0.95, flat_sky=False,
                       fill=0.6, aspect=0.8)
    assert decide(look, 0.5, 0.5) == ["off centre"]
    assert decide(look, 0.5, 0.5, replace(LIMITS, max_offset=0.45)) == []
    assert decide(look, 1.05, 0.5, replace(LIMITS, max_offset=0.45)) == []
    assert decide(look, 1.2, 1.3, replace(LIMITS, max_offset=0.45)) == [WHOLE_FEATURES,
                                                                         MATCHED_FEATURES]
    assert decide(look, None, None, replace(LIMITS, whole_features=0.5)) == ["off centre"]
