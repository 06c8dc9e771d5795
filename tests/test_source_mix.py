"""How often each survey is drawn in training (``--source-weight``), and the class weights and
prior correction that follow from that mix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galaxy_core.config import Config
from galaxy_core.data.cache import Part
from galaxy_core.errors import GalaxyError
from galaxy_core.train.mix import (class_weights, draw_weights, loss_weights, release_weights,
                                   row_sources, sample_probabilities)


def _part(per_source: dict[str, tuple[int, int]]) -> Part:
    """A part with ``(ellipticals, spirals)`` rows per source, as ``galaxy prepare`` writes
    them: images named ``source/i.jpg`` and a ``source`` column (none for source "")."""
    names, labels, sources = [], [], []
    for source, (ell, spi) in per_source.items():
        for label, count in ((0, ell), (1, spi)):
            names += [f"{source}/{len(names) + i}.jpg" if source else f"{len(names) + i}.jpg"
                      for i in range(count)]
            labels += [label] * count
            sources += [source] * count
    table = pd.DataFrame({"objid": [str(i) for i in range(len(names))], "image": names})
    if any(sources):
        table["source"] = sources
    return Part(images=np.zeros((len(names), 2, 2, 3), np.uint8),
                labels=np.asarray(labels, dtype=np.int64), table=table)


def test_sources_come_from_the_prepared_table():
    part = _part({"gz1": (2, 1), "gz2": (1, 1)})
    assert row_sources(part).tolist() == ["gz1"] * 3 + ["gz2"] * 2
    assert set(row_sources(_part({"": (2, 2)}))) == {""}


def test_weighted_draws_reach_the_asked_mix():
    part = _part({"gz1": (15, 5), "gz2": (48, 32)})  # gz1 is a fifth of the rows
    probs = sample_probabilities(part, Config(source_weights={"gz1": 4.0}))
    share = probs[row_sources(part) == "gz1"].sum()
    assert share == pytest.approx(80 / 160)  # 20 rows x 4 against 80 rows x 1
    drawn = np.random.default_rng(0).choice(len(part), size=20_000, p=probs)
    assert np.mean(row_sources(part)[drawn] == "gz1") == pytest.approx(0.5, abs=0.02)
    assert sample_probabilities(part, Config()) is None  # a plain shuffle, as before


def test_class_weights_follow_the_drawn_mix_as_if_the_rows_were_repeated():
    part = _part({"gz1": (15, 5), "gz2": (48, 32)})
    config = Config(source_weights={"gz1": 3.0})
    repeated = np.concatenate([part.labels] + [part.labels[:20]] * 2)  # gz1 rows three times
    assert loss_weights(part, config) == pytest.approx(class_weights(repeated))
    assert not np.allclose(loss_weights(part, config), class_weights(part.labels))
    # a weighted loss on the drawn mix gives each class the same total weight
    drawn = np.bincount(part.labels, weights=draw_weights(part, config))
    assert drawn * loss_weights(part, config) == pytest.approx([drawn.sum() / 2] * 2)


def test_the_release_step_returns_to_the_prepared_mix_not_the_drawn_one():
    part = _part({"gz1": (15, 5), "gz2": (48, 32)})
    weighted = Config(source_weights={"gz1": 3.0})
    assert release_weights(part, weighted) == pytest.approx(class_weights(part.labels))
    assert release_weights(part, weighted.replace(balance="none")) == pytest.approx([1, 1])


def test_the_sampler_balances_classes_within_the_source_mix():
    part = _part({"gz1": (15, 5), "gz2": (48, 32)})
    probs = sample_probabilities(part, Config(balance="sampler", source_weights={"gz1": 2.0}))
    assert probs[part.labels == 1].sum() == pytest.approx(0.5)
    gz1_spirals = probs[(row_sources(part) == "gz1") & (part.labels == 1)]
    gz2_spirals = probs[(row_sources(part) == "gz2") & (part.labels == 1)]
    assert gz1_spirals[0] == pytest.approx(2 * gz2_spirals[0])


@pytest.mark.parametrize("weights, message", [
    ({"gz3": 2.0}, "'gz3', which the training part does not hold; its sources: 'gz1', 'gz2'"),
    ({"gz1": 0.0}, "must be above 0"),
    ({"gz1": -1.0}, "must be above 0"),
])
def test_bad_source_weights_are_one_clear_error(weights, message):
    part = _part({"gz1": (3, 2), "gz2": (3, 2)})
    with pytest.raises(GalaxyError, match=message):
        loss_weights(part, Config(source_weights=weights))


@pytest.mark.parametrize("value", ["gz1", "=3", "gz1=", "gz1=abc", "gz1=0", "gz1=-2", "gz1=1e9"])
def test_a_malformed_source_weight_is_refused_by_the_command_line(value, tmp_path, capsys):
    from galaxy_core.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["train", "--out", str(tmp_path / "run"), "--source-weight", value])
    assert stop.value.code == 2 and "give NAME=WEIGHT" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_source_the_data_does_not_hold_stops_training_before_it_starts(tmp_path, gz1_fixture,
                                                                          capsys):
    from galaxy_core.cli import main

    prepared = tmp_path / "prepared"
    assert main(["prepare", "--labels", str(gz1_fixture["leaf"]), "--images",
                 str(gz1_fixture["images_gz1"]), "--out", str(prepared), "--image-size", "32",
                 "--workers", "1"]) == 0
    code = main(["train", "--data", str(prepared), "--out", str(tmp_path / "run"),
                 "--arch", "resnet18", "--epochs", "1", "--image-size", "32",
                 "--source-weight", "gz1=3"])
    err = capsys.readouterr().err
    assert code == 2 and "names 'gz1', which the training part does not hold" in err
    assert "its sources: none (one folder)" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # a refused fresh run leaves no folder behind


def test_subclass_weights_multiply_the_source_weight():
    part = _part({"gz1": (4, 2), "gz2": (6, 4)})
    part.table["subclass"] = ["elliptical"] * 4 + ["spiral"] * 2 \
        + ["smooth, cigar-shaped"] * 2 + ["smooth, round"] * 4 + ["disk, spiral"] * 4
    config = Config(source_weights={"gz1": 3.0}, subclass_weights={"smooth, cigar-shaped": 4.0})
    assert draw_weights(part, config).tolist() == [3.0] * 6 + [4.0] * 2 + [1.0] * 8
    # the class weights follow: the cigar draws add to the ellipticals' share
    drawn = np.bincount(part.labels, weights=draw_weights(part, config))
    assert drawn.tolist() == [4 * 3 + 2 * 4 + 4, 2 * 3 + 4]


def test_an_unknown_subclass_names_the_ones_there(tmp_path):
    part = _part({"gz2": (2, 2)})
    part.table["subclass"] = ["smooth, round"] * 2 + ["disk, spiral"] * 2
    with pytest.raises(GalaxyError, match="'smooth, cigar'.*sub-classes: 'disk, spiral', "
                                          "'smooth, round'"):
        draw_weights(part, Config(subclass_weights={"smooth, cigar": 2.0}))


def test_the_command_line_takes_a_subclass_name_with_a_comma(tmp_path):
    from galaxy_core.cli import _train_config, build_parser

    args = build_parser().parse_args(["train", "--out", str(tmp_path / "run"),
                                      "--subclass-weight", "smooth, cigar-shaped=3",
                                      "--subclass-weight", "smooth=2"])
    assert _train_config(args).subclass_weights == {"smooth, cigar-shaped": 3.0, "smooth": 2.0}
