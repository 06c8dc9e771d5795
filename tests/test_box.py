"""Pointing at the galaxy (issue 23, part 2): the box (``galaxy_core.data.box``), the finder's
list of candidates, ``galaxy predict --box`` and a catalogue's box columns.

Everything is synthetic: a wide picture with two galaxies far apart (an elliptical on the left,
a spiral on the right) drawn with tests/conftest.py's ``draw_galaxy``, and a tiny untrained
resnet18 (32 px) for the command line, whose answers mean nothing but are exactly repeatable,
so "the box's answer" can be compared with "the crop's answer" to the last digit.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from galaxy_core.cli import main
from galaxy_core.data.box import (
    Box,
    BoxError,
    box_from_cells,
    check_box,
    crop_to_box,
    cutout_box,
    parse_box,
    reasons_to_ask,
    upright_size,
)
from galaxy_core.data.galaxy_finder import find_candidates, find_galaxy
from tests.conftest import draw_galaxy

WIDTH, HEIGHT = 480, 240
LEFT, RIGHT = (110.0, 120.0), (360.0, 118.0)
"""Centres of the two galaxies of :func:`two_galaxies`."""


def two_galaxies() -> Image.Image:
    """A 480x240 picture: an elliptical centred at LEFT and a spiral at RIGHT, each of scale
    length 12 px, on one noisy sky; neither in the middle of the frame."""
    left = draw_galaxy("elliptical", width=WIDTH, height=HEIGHT, centre=LEFT, radius=12, seed=1)
    right = draw_galaxy("spiral", width=WIDTH, height=HEIGHT, centre=RIGHT, radius=12, seed=2,
                        sky=(0, 0, 0), noise=0)
    total = np.asarray(left).astype(int) + np.asarray(right).astype(int)
    return Image.fromarray(np.clip(total, 0, 255).astype(np.uint8))


# --- the finder lists both ----------------------------------------------------------------------
def test_find_candidates_lists_both_galaxies_finders_choice_first():
    """Both galaxies are candidates, each outlined around its own centre, and the first is
    exactly find_galaxy's answer (the page's automatic choice stays what it was)."""
    picture = two_galaxies()
    found = find_candidates(picture)
    assert len(found) == 2
    assert found[0] == find_galaxy(picture)
    centres = sorted((g.x, g.y) for g in found)
    for (x, y), (cx, cy) in zip(centres, (LEFT, RIGHT)):
        assert abs(x - cx) < 3 and abs(y - cy) < 3
    assert reasons_to_ask(found) == ["the picture holds 2 bright sources",
                                     "the galaxy is off-centre"]


def test_one_centred_galaxy_is_not_asked_about():
    picture = draw_galaxy("elliptical", 128, seed=3)
    found = find_candidates(picture)
    assert len(found) == 1 and found[0] == find_galaxy(picture)
    assert reasons_to_ask(found) == []
    assert find_candidates(Image.new("RGB", (64, 64), (5, 5, 5))) == []


def test_a_galaxy_cut_by_the_frame_is_asked_about():
    picture = draw_galaxy("elliptical", width=200, height=200, centre=(10, 100), radius=15,
                          seed=4)
    assert "the galaxy touches the edge of the picture" in reasons_to_ask(find_candidates(picture))


def test_cutout_box_frames_a_candidate_like_a_survey_cutout():
    """Clicking a candidate picks a square around it where it covers the training fraction,
    cut back to the picture, holding its whole outline and not the other galaxy's centre."""
    picture = two_galaxies()
    for galaxy in find_candidates(picture):
        box = cutout_box(galaxy)
        left, top, right, bottom = galaxy.box
        assert box.x0 <= left and box.y0 <= top and box.x1 >= right and box.y1 >= bottom
        assert box.x1 <= WIDTH and box.y1 <= HEIGHT and box.contains(galaxy.x, galaxy.y)
        other = RIGHT if galaxy.x < WIDTH / 2 else LEFT
        assert not box.contains(*other)


# --- the box itself -----------------------------------------------------------------------------
def test_parse_box_reads_four_numbers():
    assert parse_box("10,20,110,220") == Box(10, 20, 110, 220)
    assert parse_box(" 10 , 20.4, 110.6 ,220 ").text == "10,20,111,220"
    assert box_from_cells(["", None, " ", ""]) is None
    assert box_from_cells([1, 2.0, "30", 40]) == Box(1, 2, 30, 40)


@pytest.mark.parametrize("text, words", [
    ("10,20,110", "give four numbers"),
    ("10,20,110,220,5", "give four numbers"),
    ("", "give four numbers"),
    ("a,20,110,220", "'a' is not a number"),
    ("10,20,nan,220", "not a finite number"),
    ("-5,20,110,220", "-5 is negative"),
    ("110,20,10,220", "is empty"),
    ("10,20,10,220", "is empty"),
    ("10,20,14,220", "too small"),
])
def test_parse_box_refuses_in_one_line(text, words):
    with pytest.raises(BoxError) as caught:
        parse_box(text)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_box_cells_partly_empty_are_refused():
    with pytest.raises(BoxError, match="box_x1 empty"):
        box_from_cells(["1", "2", "", "40"])


def test_check_box_names_the_picture_size():
    check_box(Box(0, 0, 480, 240), (480, 240))
    with pytest.raises(BoxError, match="outside the 480x240 picture"):
        check_box(Box(400, 0, 481, 240), (480, 240))
    with pytest.raises(BoxError, match="outside"):
        check_box(Box(500, 250, 600, 300), (480, 240))


def test_crop_scales_full_size_coordinates_to_a_reduced_copy():
    """A box given in the file's full-resolution pixels cuts the same region out of a copy the
    loader averaged down (here by 4)."""
    full = two_galaxies()
    small = full.reduce(4)
    box = Box(40, 60, 200, 180)
    crop = crop_to_box(small, box, full.size)
    assert crop.size == (40, 30)
    assert np.array_equal(np.asarray(crop), np.asarray(small.crop((10, 15, 50, 45))))
    with pytest.raises(BoxError, match="outside the 480x240"):
        crop_to_box(small, Box(0, 0, 481, 100), full.size)


def test_upright_size_follows_a_turned_picture():
    assert upright_size((400, 300), (400, 300)) == (400, 300)
    assert upright_size((400, 300), (300, 400)) == (300, 400)  # EXIF turned it
    assert upright_size((8000, 6000), (2000, 1500)) == (8000, 6000)  # averaged down
    assert upright_size((8000, 6000), (1500, 2000)) == (6000, 8000)  # both


# --- the classification path -------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny untrained resnet18 (32 px); a low temperature spreads its probabilities so that
    two regions' answers differ in the 4th decimal."""
    import torch

    from galaxy_core.config import Config
    from galaxy_core.model.build import build_model
    from galaxy_core.model.store import save_model

    folder = tmp_path_factory.mktemp("model") / "tiny"
    torch.manual_seed(0)
    save_model(folder, build_model("resnet18").eval(), Config(arch="resnet18", image_size=32),
               {"temperature": 0.01, "logit_bias": [0.0, 0.0],
                "training": {"class_counts": {"elliptical": 74, "spiral": 26}}})
    return folder


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_box_is_classified_as_its_crop_would_be(model_dir):
    """classify_sources with a box around one of two galaxies gives exactly the answer (and
    the model input Grad-CAM explains) of that region saved as a file of its own; the other
    galaxy's box gives another answer; a box outside the picture is that input's error."""
    from galaxy_core.model.store import load_model
    from galaxy_core.predict.classify import classify_sources

    loaded = load_model(model_dir)
    picture = two_galaxies()
    boxes = [cutout_box(g) for g in sorted(find_candidates(picture), key=lambda g: g.x)]
    crops = [png(picture.crop((b.x0, b.y0, b.x1, b.y1))) for b in boxes]
    boxed = classify_sources(loaded, [("pair.png", png(picture))] * 3, keep_inputs=True,
                             boxes=[*boxes, Box(0, 0, 481, 100)])
    alone = classify_sources(loaded, [("crop.png", c) for c in crops], keep_inputs=True)
    for pred, crop, box in zip(boxed, alone, boxes):
        assert pred.ok and pred.box == box.text
        assert (pred.label, pred.p_spiral, pred.ood_score, pred.survey_matched) == (
            crop.label, crop.p_spiral, crop.ood_score, crop.survey_matched)
        assert np.array_equal(pred.model_input, crop.model_input)
    assert boxed[0].p_spiral != boxed[1].p_spiral, "the box decided what was classified"
    assert "outside the 480x240 picture" in boxed[2].error and boxed[2].box == "0,0,481,100"


# --- galaxy predict --box -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    """The two-galaxy picture, each galaxy's cutout box (as the chooser frames a click), and
    each cutout saved as a file of its own."""
    folder = tmp_path_factory.mktemp("pictures")
    picture = two_galaxies()
    picture.save(folder / "pair.png")
    found = sorted(find_candidates(picture), key=lambda g: g.x)
    out: dict[str, object] = {"pair": folder / "pair.png"}
    for side, galaxy in zip(("left", "right"), found):
        box = cutout_box(galaxy)
        picture.crop((box.x0, box.y0, box.x1, box.y1)).save(folder / f"{side}.png")
        out[side], out[f"{side}_box"] = folder / f"{side}.png", box
    return out


def predict(model_dir: Path, *args: object) -> tuple[int, list[dict[str, str]], str]:
    """``galaxy predict`` in process, one view, CSV to a file: (exit code, rows, stderr)."""
    import contextlib
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.csv"
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["predict", *map(str, args), "--model", str(model_dir), "--views", "1",
                         "--workers", "0", "-o", str(out)])
        rows = list(csv.DictReader(out.open())) if out.exists() else []
    return code, rows, err.getvalue()


ANSWER = ("label", "p_spiral", "p_elliptical", "ood_score", "survey_matched")


def test_a_box_gives_the_answer_of_the_galaxy_it_holds(model_dir, pictures):
    """--box around one of two galaxies answers exactly as that region saved as a file of its
    own does, records the box, and the other galaxy's box gives another answer."""
    answers = {}
    for side in ("left", "right"):
        box = pictures[f"{side}_box"]
        code, rows, err = predict(model_dir, pictures["pair"], "--box", box.text)
        assert code == 0, err
        (boxed,) = rows
        assert boxed["path"] == str(pictures["pair"]) and boxed["box"] == box.text
        code, rows, err = predict(model_dir, pictures[side])
        (crop,) = rows
        assert [boxed[c] for c in ANSWER] == [crop[c] for c in ANSWER]
        assert "box" not in crop, "an output without --box keeps the columns it always had"
        answers[side] = boxed["p_spiral"]
    assert answers["left"] != answers["right"], "the box decided what was classified"


@pytest.mark.parametrize("box, words", [
    ("0,0,481,240", "lies outside the 480x240 picture"),
    ("500,250,600,300", "lies outside the 480x240 picture"),
    ("=-5,0,100,100", "-5 is negative"),
    ("100,0,100,100", "is empty"),
    ("100,100,50,50", "is empty"),
    ("a,0,100,100", "'a' is not a number"),
    ("0,0,100", "give four numbers"),
    ("0,0,100,100,3", "give four numbers"),
])
def test_a_bad_box_is_one_line_and_exit_2(model_dir, pictures, box, words, capsys):
    args = ["predict", str(pictures["pair"]), "--model", str(model_dir)]
    args += [f"--box{box}"] if box.startswith("=") else ["--box", box]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err


def test_box_goes_with_one_image_file(model_dir, pictures, capsys):
    two_files = ["predict", str(pictures["pair"]), str(pictures["left"])]
    a_folder = ["predict", str(pictures["pair"].parent)]
    a_catalogue = ["predict", "--catalogue", str(pictures["pair"]), "--path-column", "x"]
    for args in (two_files, a_folder, a_catalogue):
        assert main([*args, "--box", "0,0,100,100", "--model", str(model_dir)]) == 2
        err = capsys.readouterr().err
        assert "--box" in err and "one image file" in err and err.count("\n") == 1, err


# --- galaxy predict --each-galaxy ----------------------------------------------------------------
def test_each_galaxy_gives_each_galaxy_of_a_picture_its_own_row(model_dir, pictures, tmp_path):
    """--each-galaxy over a folder: the two-galaxy picture becomes two rows, the finder's
    choice first, each with the box a click on it gives and exactly the answer of --box with
    that box; a picture of one centred galaxy stays one row, answered as without the option;
    an unreadable file keeps its one error row."""
    from galaxy_core.data.galaxy_finder import find_galaxy

    folder = tmp_path / "pictures"
    folder.mkdir()
    (folder / "a_pair.png").write_bytes(pictures["pair"].read_bytes())
    draw_galaxy("spiral", size=96, seed=3).save(folder / "b_single.png")
    (folder / "c_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code, rows, err = predict(model_dir, folder, "--each-galaxy")
    assert code == 1, err  # the broken file
    assert [Path(r["path"]).name for r in rows] == ["a_pair.png"] * 2 + ["b_single.png",
                                                                         "c_broken.png"]
    first = cutout_box(find_galaxy(two_galaxies()))
    assert rows[0]["box"] == first.text
    assert {rows[0]["box"], rows[1]["box"]} == {pictures["left_box"].text,
                                               pictures["right_box"].text}
    for row in rows[:2]:
        _, (alone,), _ = predict(model_dir, pictures["pair"], "--box", row["box"])
        assert [row[c] for c in ANSWER] == [alone[c] for c in ANSWER]
    assert rows[2]["box"] == "" and rows[3]["box"] == "" and rows[3]["error"]
    _, (plain,), _ = predict(model_dir, folder / "b_single.png")
    assert [rows[2][c] for c in ANSWER] == [plain[c] for c in ANSWER]
    assert "1 picture(s) held several galaxies" in err and "2 rows" in err, err


def test_each_galaxy_output_resumes_row_for_row(model_dir, pictures, tmp_path, capsys):
    """--resume checks each written row against its job: a picture split into rows splits
    the same way again, so a finished output resumes with nothing to do and a cut one ends
    as the whole run does."""
    out = tmp_path / "out.csv"
    args = ["predict", str(pictures["pair"]), str(pictures["left"]), "--each-galaxy",
            "--model", str(model_dir), "--views", "1", "--workers", "0", "-o", str(out)]
    assert main(args) == 0
    whole = out.read_text()
    assert len(whole.splitlines()) == 1 + 3  # header, the pair's two galaxies, the left one
    lines = whole.splitlines(keepends=True)
    out.write_text("".join(lines[:2]))  # cut after the pair's first galaxy
    assert main([*args, "--resume"]) == 0
    assert out.read_text() == whole
    assert main([*args, "--resume"]) == 0
    assert out.read_text() == whole and "3 row(s) already" in capsys.readouterr().err


def test_each_galaxy_boxes_are_in_full_resolution_pixels(tmp_path):
    """A deep (16-bit) picture over 2048 px is averaged down when it is read; the boxes still
    count pixels of the file, so each holds its galaxy's centre at full resolution."""
    from galaxy_core.predict.each_galaxy import galaxy_boxes
    from galaxy_core.predict.inputs import Entry

    scale = 5
    grey = np.asarray(two_galaxies().convert("L").resize((WIDTH * scale, HEIGHT * scale)))
    path = tmp_path / "deep.png"
    Image.fromarray(grey.astype(np.uint16) * 257).save(path)
    boxes = galaxy_boxes(Entry(path))
    assert len(boxes) == 2
    for (cx, cy) in (LEFT, RIGHT):
        holding = [b for b in boxes if b.x0 <= cx * scale < b.x1 and b.y0 <= cy * scale < b.y1]
        assert len(holding) == 1, (cx, cy, boxes)
    assert all(b.x1 <= WIDTH * scale and b.y1 <= HEIGHT * scale for b in boxes)
    assert max(b.x1 for b in boxes) > 2048, "the boxes live in the file's pixels, not the copy's"


def test_each_galaxy_keeps_a_given_box_and_refuses_box_with_it(model_dir, pictures, capsys):
    """A job that already has a box is a person's choice and passes unchanged; --box and
    --each-galaxy together are one clear error."""
    from galaxy_core.predict.each_galaxy import Expansion, each_galaxy
    from galaxy_core.predict.inputs import Entry
    from galaxy_core.predict.jobs import Job

    given = Job(Entry(pictures["pair"]), box=Box(0, 0, 100, 100))
    tally = Expansion()
    assert list(each_galaxy([given], tally)) == [given] and tally.pictures == 0
    expanded = list(each_galaxy([Job(Entry(pictures["pair"]))], tally))
    assert len(expanded) == 2 and (tally.pictures, tally.rows) == (1, 2)
    assert main(["predict", str(pictures["pair"]), "--box", "0,0,100,100", "--each-galaxy",
                 "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert "--each-galaxy" in err and "--box" in err and err.count("\n") == 1, err


# --- the dashboard's chooser: a click or a drag as the component reports it ----------------------
def test_catalogue_box_columns_give_each_row_its_region(model_dir, pictures, tmp_path):
    """A catalogue's box_x0..box_y1 columns: each row classified in its own box (the same
    answer as --box), an empty box means the whole picture, a bad box is that row's error
    and the other rows go on."""
    left, right = pictures["left_box"], pictures["right_box"]
    table = tmp_path / "cat.csv"
    rows = [("a", left.x0, left.y0, left.x1, left.y1), ("b", right.x0, right.y0, right.x1,
                                                         right.y1),
            ("c", "", "", "", ""), ("d", "x", 0, 100, 100), ("e", 0, 0, 9999, 100),
            ("f", 0, 0, "", 100)]
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "file", "box_x0", "box_y0", "box_x1", "box_y1"])
        writer.writerows((r[0], str(pictures["pair"]), *r[1:]) for r in rows)
    code, out, err = predict(model_dir, "--catalogue", table, "--path-column", "file",
                             "--id-columns", "id")
    assert code == 1, err
    by_id = {row["id"]: row for row in out}
    assert [row["id"] for row in out] == ["a", "b", "c", "d", "e", "f"]
    assert by_id["a"]["box"] == left.text and by_id["b"]["box"] == right.text
    assert by_id["c"]["box"] == "" and not by_id["c"]["error"]
    _, (alone,), _ = predict(model_dir, pictures["pair"], "--box", right.text)
    assert [by_id["b"][c] for c in ANSWER] == [alone[c] for c in ANSWER]
    assert "catalogue row 4: box" in by_id["d"]["error"] and "not a number" in by_id["d"]["error"]
    assert "outside the 480x240 picture" in by_id["e"]["error"]
    assert "box_x1 empty" in by_id["f"]["error"]


def test_catalogue_with_some_box_columns_is_refused(model_dir, pictures, tmp_path, capsys):
    table = tmp_path / "cat.csv"
    table.write_text(f"file,box_x0,box_y0\n{pictures['pair']},0,0\n")
    assert main(["predict", "--catalogue", str(table), "--path-column", "file",
                 "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert "box_x1" in err and err.count("\n") == 1, err


def test_a_click_picks_a_galaxy_and_a_drag_draws_a_box():
    """What streamlit-image-coordinates sends (press and release points in the pixels of the
    picture as the browser drew it, and that width) becomes the chooser's option and box in the
    file's full-resolution pixels, here for a picture shown at half size by the browser and a
    page copy averaged down 2x from a 960x480 file."""
    from dashboard.pointing import BOX, Pointing

    picture = two_galaxies()  # the page's copy, standing for a 960x480 file
    where = Pointing.of(picture, (960, 480))
    assert where.shown(None).size == (480, 240)
    right = max(range(1, 3), key=lambda n: where.candidates[n - 1].x)
    drawn = 240  # the browser drew the 480 px picture 240 px wide
    click = {"x1": RIGHT[0] / 2, "y1": RIGHT[1] / 2, "x2": RIGHT[0] / 2, "y2": RIGHT[1] / 2,
             "width": drawn, "height": 120}
    option, box = where.region_at(click)
    assert option == str(right) and box == where.candidate_box(right)
    assert box.contains(RIGHT[0] * 2, RIGHT[1] * 2) and box.x1 <= 960
    drag = {"x1": 10, "y1": 10, "x2": 60, "y2": 70, "width": drawn, "height": 120}
    assert where.region_at(drag) == (BOX, Box(40, 40, 241, 281))
    sky = {"x1": 118, "y1": 5, "x2": 118, "y2": 5, "width": drawn, "height": 120}
    assert where.region_at(sky) == ("", None)
    assert where.region_at(None) == ("", None)
