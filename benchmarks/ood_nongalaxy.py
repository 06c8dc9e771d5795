"""Do non-galaxy pictures get flagged, and do galaxies stay unflagged? (issue 14, item 2)

For each set it prints how many inputs get the out-of-distribution warning (score above 1)
with the old score alone (Mahalanobis distance of the model input's features and its border
brightness, taken after survey matching) and with the new one (the larger of the old score and
the picture score of :mod:`galaxy_core.predict.plausibility`, taken on the picture as given), the
distribution of both, and which checks fire. Every input goes the way ``galaxy predict`` takes
it (``--survey-match auto``), read from bytes:

- non-galaxies: ``tests/nongalaxy_images.py`` (scikit-image and matplotlib sample photographs,
  rendered plots, screenshots, text, gradients, solid colours, black frames, noise, satellite
  trails; about 60);
- SDSS galaxies: a sample of split 0's test part, the original JPEG files;
- the 6 seed examples and the 100 unlabelled GZ2 cutouts.

``--training`` also re-measures what the picture checks' limits were fitted on (every training
cutout of split 0: each check's percentiles and how many cutouts fail it), the numbers quoted in
the plausibility module's docstring.

Usage: python benchmarks/ood_nongalaxy.py [--model DIR] [--n-test 200] [--training]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from galaxy_core.data.imageio import read_image  # noqa: E402
from galaxy_core.locations import SHIPPED_MODEL_DIR, default_data_root  # noqa: E402
from galaxy_core.model.ood import WARN_AT  # noqa: E402
from galaxy_core.model.store import load_model  # noqa: E402
from galaxy_core.predict.classify import classify_arrays, model_input  # noqa: E402
from galaxy_core.predict.plausibility import (  # noqa: E402
    WHOLE_FEATURES,
    look_at,
    picture_findings,
    whole_frame,
    whole_frame_scores,
)
from tests.nongalaxy_images import (  # noqa: E402
    non_galaxy_images,
    sdss_test_sample,
    seed_and_gz2,
    split_zero,
)


def measure(loaded, items: list[tuple[str, bytes | Path]], survey: str = "auto") -> dict:
    """Old score, picture score (pixel checks and whole-picture features) and their maximum,
    computed the way :func:`galaxy_core.predict.classify.classify_sources` does."""
    names, inputs, looks, frames = [], [], [], []
    for name, data in items:
        image = read_image(data, name=name).image
        names.append(name)
        inputs.append(model_input(loaded, image, survey)[0])
        looks.append(look_at(image))
        frames.append(whole_frame(image, loaded.config.image_size))
    _, old = classify_arrays(loaded, np.stack(inputs))
    picture, failed = picture_findings(loaded, looks, np.stack(frames))
    return {"names": names, "old": old, "picture": picture, "new": np.maximum(old, picture),
            "failed": failed}


def _quantiles(values: np.ndarray) -> str:
    return " ".join(f"{np.percentile(values, q):5.2f}" for q in (0, 5, 50, 95, 100))


def report(title: str, result: dict, non_galaxy: bool) -> None:
    old, new = result["old"] > WARN_AT, result["new"] > WARN_AT
    n = len(old)
    print(f"\n## {title} (n={n})")
    print(f"flagged: old {old.sum()}/{n} = {old.mean():.1%}   new {new.sum()}/{n} = "
          f"{new.mean():.1%}")
    print("score quantiles       min    5%   50%   95%   max")
    for key in ("old", "picture", "new"):
        print(f"  {key:18s} {_quantiles(result[key])}")
    counts = Counter(check for failed in result["failed"] for check in failed)
    print("checks that fire: " + (", ".join(f"{k} {v}" for k, v in counts.most_common())
                                  or "none"))
    for i, name in enumerate(result["names"]):
        wrong = not new[i] if non_galaxy else new[i]
        if wrong or non_galaxy:
            mark = ("MISSED " if wrong else "") if non_galaxy else "FLAGGED "
            print(f"  {mark}{name}: old {result['old'][i]:.2f}, picture "
                  f"{result['picture'][i]:.2f} ({', '.join(result['failed'][i]) or 'passes'})")


def training_check(loaded, prepared, split: int) -> None:
    """Each picture check's raw value over the split's training cutouts."""
    table = prepared.split_table(split)
    paths = [prepared.image_path(n) for n in table[table["split"] == "train"]["image"]]
    looks, frames = [], []
    for path in paths:
        image = read_image(path).image
        looks.append(look_at(image))
        frames.append(whole_frame(image, loaded.config.image_size))
    whole = whole_frame_scores(loaded, np.stack(frames))
    print(f"\n## training cutouts of split {split} (n={len(paths)}): raw values")
    print("                 min   0.1%    1%    50%    99%  99.9%    max")
    columns = {"offset": [x.offset for x in looks], "sky": [x.sky for x in looks],
               "dark border": [x.dark_border for x in looks], "fill": [x.fill for x in looks],
               "aspect": [x.aspect for x in looks], "whole features": whole}
    for key, values in columns.items():
        qs = " ".join(f"{np.percentile(values, q):6.3f}" for q in (0, 0.1, 1, 50, 99, 99.9, 100))
        print(f"  {key:14s} {qs}")
    print(f"  found {sum(x.found for x in looks)}, flat sky {sum(x.flat_sky for x in looks)}")
    failed = [x.failed() + ([WHOLE_FEATURES] if w > WARN_AT else [])
              for x, w in zip(looks, whole)]
    counts = Counter(check for f in failed for check in f)
    n_bad = sum(bool(f) for f in failed)
    print(f"  fail any check: {n_bad} ({n_bad / len(paths):.2%}); " +
          ", ".join(f"{k} {v}" for k, v in counts.most_common()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL_DIR)
    parser.add_argument("--data", type=Path, default=default_data_root())
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--training", action="store_true",
                        help="also measure the checks on every training cutout (minutes)")
    args = parser.parse_args()
    loaded = load_model(args.model)
    result = measure(loaded, list(non_galaxy_images().items()))
    report("non-galaxy pictures", result, non_galaxy=True)
    if not (args.data / "gz1_sdss" / "images").is_dir():
        print(f"\n(no real data at {args.data}: galaxy sets skipped)")
        return
    with tempfile.TemporaryDirectory() as scratch:
        prepared, split = split_zero(loaded, args.data, Path(scratch) / "prepared")
        test = sdss_test_sample(prepared, split, args.n_test)
        report(f"SDSS galaxies, split {split} test part, original JPEGs",
               measure(loaded, [(str(p.name), p) for p in test]), non_galaxy=False)
        report("seed examples + GZ2 unlabelled cutouts",
               measure(loaded, [(p.name, p) for p in seed_and_gz2(args.data)]),
               non_galaxy=False)
        if args.training:
            training_check(loaded, prepared, split)


if __name__ == "__main__":
    main()
