"""benchmarks/fit_picture_limits.py chooses limits from measured pictures without the network:
its rules must pick what they say on records whose answer is known."""

from __future__ import annotations

from dataclasses import asdict

from benchmarks.fit_picture_limits import fit_whole_features, outcome, rates, search_framing
from galaxy_core.predict.plausibility import LIMITS, PictureLook

CLEAN = PictureLook(found=True, offset=0.05, sky=3.0, dark_border=0.95, flat_sky=False,
                    fill=0.6, aspect=0.8)


def record(group: str, whole: float = 0.5, matched: float = 0.5, held: bool = False,
           **look: float) -> dict:
    return {"group": group, "name": f"{group}-{whole}-{look}", "label": "spiral",
            "held": held, "error": "", "predicted": "spiral", "p_spiral": 0.9,
            "matched": matched, "whole": whole, "look": {**asdict(CLEAN), **look}}


def test_outcome_tells_framing_from_not_a_galaxy():
    assert outcome(record("hubble")) == "accepted"
    assert outcome(record("hubble", sky=45.0)) == "may be a galaxy"  # bright sky: framing
    assert outcome(record("hubble", flat_sky=True)) == "not a galaxy"
    assert outcome(record("hubble", whole=1.5)) == "not a galaxy"
    assert outcome({**record("hubble"), "error": "not an image"}) == "not a galaxy"


def test_the_whole_picture_limit_is_the_smallest_that_brings_sdss_under_two_percent():
    sdss = [record("sdss") for _ in range(96)] + [record("sdss", whole=w)
                                                   for w in (1.03, 1.05, 1.07, 1.3)]
    nongalaxy = [record("nongalaxy", whole=1.2), record("nongalaxy", whole=3.0)]
    fitted = fit_whole_features(sdss + nongalaxy)
    # 4% flagged at 1.0, 2% at 1.06 (not under), 1% at 1.08
    assert fitted.whole_features == 1.08
    assert rates(sdss + nongalaxy, False, fitted)["sdss"][0] < 0.02


def test_the_whole_picture_limit_never_lets_a_flagged_non_galaxy_through():
    sdss = [record("sdss") for _ in range(95)] + [record("sdss", whole=1.1) for _ in range(5)]
    nongalaxy = [record("nongalaxy", whole=1.05)]  # flagged now, by this check alone
    assert fit_whole_features(sdss + nongalaxy) == LIMITS  # no value keeps both: unchanged


def test_the_framing_search_keeps_every_fit_non_galaxy_flagged_and_ignores_held_back():
    hubble = [record("hubble", sky=40.0), record("hubble", sky=50.0)]
    nongalaxy = [record("nongalaxy", sky=52.0), record("nongalaxy", sky=45.0, held=True)]
    found = search_framing(hubble + nongalaxy, LIMITS)
    assert found.max_sky == 50.0  # both Hubble pictures pass, the fit non-galaxy (52) not
    assert rates(hubble + nongalaxy, False, found) == {"hubble": (0.0, 0.0),
                                                       "nongalaxy": (1.0, 0.0)}
