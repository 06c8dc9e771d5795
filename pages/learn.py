"""Learn: galaxies, Galaxy Zoo and the network in plain words, for students working on their own:
Hubble's tuning fork with real galaxies from the data, how the volunteers sorted them and why
they disagree, what a neural network does with a picture, what "93% spiral" means (from the
model's own test results), what a Grad-CAM map can and cannot show, and a galaxy the network
got confidently wrong."""

from pathlib import Path

import streamlit as st

from dashboard import classroom as cls
from dashboard import models
from dashboard.explain import cam_overlay, catalogue_input
from dashboard.ui import one_line, require_app, upscale
from galaxy_core.classroom.sets import test_galaxies, with_images
from galaxy_core.errors import GalaxyError
from galaxy_core.locations import default_data_root

require_app()
st.title("Learn: how do we sort galaxies?")
st.caption("Galaxies, the people of Galaxy Zoo and a neural network, in plain words. Read it "
           "from top to bottom; it takes about ten minutes.")

choice = models.current()
report = models.report(choice, "test") if choice else None
data = cls.prepared()


@st.cache_data(show_spinner=False, max_entries=4)
def examples(model_path: str, report_version: float | None, prepared_root: str,
             prepared_version: float) -> dict[str, list[tuple[str, str]]]:
    """Clear examples from the model's test galaxies (volunteers and network agree, the
    network very sure): ellipticals from round to flat, spirals, edge-on disks. Each is
    (image name, objid)."""
    table = with_images(data, test_galaxies(data, Path(model_path)))
    agreed = table[table["model_label"] == table["label"]]
    ellipticals = agreed[agreed["leaf"] == "EL"].nsmallest(60, "p_spiral")
    measured = [(*cls.galaxy_shape(cls.picture_file(data, r.image)), r.image, r.objid)
                for r in ellipticals.itertuples()]
    alone = [m for m in measured if m[1] >= 0.95] or measured  # no neighbours or trails
    shapes = sorted(alone, reverse=True)  # roundest first
    picked = [shapes[0], shapes[len(shapes) // 2], shapes[-1]] if len(shapes) >= 3 else shapes

    def best(leaf: str, n: int) -> list[tuple[str, str]]:
        rows = agreed[agreed["leaf"] == leaf].nlargest(n, "p_spiral")
        return [(r.image, r.objid) for r in rows.itertuples()]

    cw, acw = best("CW", 2), best("ACW", 2)
    spirals = [g for pair in zip(cw, acw) for g in pair][:3]
    return {"ellipticals": [(image, objid) for _, _, image, objid in picked],
            "spirals": spirals, "edge": best("EDGE", 2), "cw": cw[:1], "acw": acw[:1]}


found: dict[str, list[tuple[str, str]]] = {}
why_no_examples = ""
if choice is None or report is None:
    why_no_examples = "The examples need a model with a test report."
elif data is None:
    why_no_examples = ("The real galaxy pictures are not on this server yet, so the examples "
                       "are missing. Ask your teacher.")
else:
    try:
        found = examples(str(choice.path), models.report_version(choice.path, "test"),
                         str(data.root), (data.root / "summary.json").stat().st_mtime)
    except (GalaxyError, OSError, ValueError) as exc:
        why_no_examples = f"The examples could not be read: {one_line(exc)}"


def pictures(kind: str) -> list[bytes]:
    out = []
    for image, objid in found.get(kind, []):
        try:
            out.append(cls.picture_file(data, image, objid))
        except GalaxyError:
            continue
    return out


# --- 1 --------------------------------------------------------------------------------------
st.header("1. Galaxies come in shapes")
st.markdown(
    "A galaxy is a huge family of stars, gas and dust, held together by gravity. Our Milky Way "
    "is one; it has a hundred billion stars or more. In the 1920s the astronomer **Edwin "
    "Hubble** sorted galaxies by their shape and drew his scheme like a **tuning fork**:\n"
    "- **Ellipticals** sit on the handle. They are smooth balls or rugby balls of mostly old, "
    "yellow-red stars, with no arms. E0 is perfectly round, E7 very flat.\n"
    "- **Spirals** sit on the prongs. They are flat, spinning disks with a bright middle (the "
    "*bulge*) and arms where new, blue stars are born.\n"
    "- On the lower prong the spirals have a **bar**: a straight band of stars through the "
    "middle, with the arms starting at its ends. Our Milky Way is probably one of them.")
if found:
    st.plotly_chart(cls.tuning_fork_figure(pictures("ellipticals"), pictures("spirals")),
                    config={"staticPlot": True}, key="fork")
    st.caption("Every picture is a real galaxy from this project's data (Sloan Digital Sky "
               "Survey). The ellipticals run from the roundest to the flattest we found. The "
               "barred prong is empty on purpose: Galaxy Zoo 1 never asked people about "
               "bars, so we do not know which of our galaxies have one.")
else:
    st.info(why_no_examples)

edge, cw, acw = pictures("edge"), pictures("cw"), pictures("acw")
if edge and cw and acw:
    a, b, c = st.columns(3)
    a.image(edge[0], caption="A spiral seen exactly from the side: an edge-on disk. It looks "
                             "like a thin line, but it is a spiral.")
    b.image(cw[0], caption="A spiral whose arms wind clockwise (as we see it).")
    c.image(acw[0], caption="One whose arms wind anticlockwise. Which way they seem to wind "
                            "only depends on which side of the galaxy we see.")

# --- 2 --------------------------------------------------------------------------------------
st.header("2. How volunteers sorted almost a million galaxies")
st.markdown(
    "A telescope survey photographs far too many galaxies for astronomers to look at one by "
    "one. In 2007 the **Galaxy Zoo** project put them on a website and asked anyone to help. "
    "More than 100,000 volunteers answered, and each galaxy was shown to many different "
    "people. Everybody answered the same short questions:")
tree = default_data_root() / "gz1_sdss" / "GZ1_Hierarchy.jpg"
left, right = st.columns([3, 2], gap="large")
with left:
    st.markdown(
        "1. Is it a galaxy at all? If not (a star, a glitch): **don't know**.\n"
        "2. Is it **elliptical**, a **spiral**, or two galaxies crashing into each other (a "
        "**merger**)?\n"
        "3. For a spiral: do the arms wind **clockwise** or **anticlockwise**, or is it a disk "
        "seen **edge-on**?\n\n"
        "The answer most people agreed on became the galaxy's label. In this project we keep "
        "only spirals (clockwise, anticlockwise or edge-on) and ellipticals; the galaxies "
        "marked \"don't know\" or \"merger\" are left out.")
with right:
    if tree.is_file():
        st.image(str(tree), caption="The Galaxy Zoo 1 questions as a tree.")
st.subheader("Why people disagree")
st.markdown(
    "The volunteers' label is what **most** people said, not a guaranteed truth. People "
    "disagree, and here is why:\n"
    "- **Far away means small and faint.** The arms of a distant spiral fade into the sky, so "
    "it looks like a smooth elliptical blob. (Galaxy Zoo's scientists corrected the votes "
    "for this, but not perfectly.)\n"
    "- **Seen from the side**, a spiral is a thin line and its arms are hidden.\n"
    "- **Colour fools us.** Most spirals are blue and most ellipticals yellow-red, but not "
    "all, and people lean on colour without noticing.\n"
    "- **Neighbours and stars** in the picture can look like arms or bulges.\n"
    "- **People get tired**, and a few click quickly without looking.\n\n"
    "So when you disagree with the volunteers, you may simply be one of the people who saw "
    "it the other way.")

# --- 3 --------------------------------------------------------------------------------------
st.header("3. What a neural network does with a picture")
meta = models.read_meta(choice) if choice else {}
size = meta.get("input_size", 96)
n_train = (meta.get("training") or {}).get("n_train")
st.markdown(
    "To a computer a picture is just a grid of numbers: how much red, green and blue light "
    "each pixel has. A **neural network** passes those numbers through many **layers**, one "
    "after the other. Each layer looks for patterns in what the layer before it found:\n"
    "- the **first layers** find simple things: edges, bright spots, patches of colour;\n"
    "- **middle layers** combine them into curves, rings and smooth blobs;\n"
    "- **deeper layers** combine those into things like *spiral arms*, *a bright smooth "
    "middle* or *a thin disk*;\n"
    "- at the end, it gives two scores: one for **spiral** and one for **elliptical**.\n\n"
    "Nobody wrote those patterns in. The network was **trained**: it was shown "
    + (f"{n_train:,} " if isinstance(n_train, int) else "thousands of ")
    + "galaxies with the volunteers' labels, and after each guess its numbers were nudged a "
      "little towards the right answer. So it learned from the volunteers: where they were "
      "wrong, it learned some of their mistakes too.")
failures = [f for f in (report or {}).get("confident_failures", [])
            if isinstance(f, dict) and f.get("image")]
loaded = None
if data is not None and choice is not None and (found or failures):
    loaded = models.load(choice)
if loaded is not None and found.get("spirals"):
    image, objid = found["spirals"][0]
    try:
        path = data.image_path(image)
        seen = catalogue_input(loaded, models.model_key(loaded), str(path))
        a, b, _ = st.columns([1, 1, 1])
        a.image(cls.picture_file(data, image, objid), caption="The picture from the survey")
        b.image(upscale(seen, 423), caption=f"What the network gets: the middle of the "
                                            f"picture, shrunk to {size} × {size} pixels")
    except GalaxyError as exc:
        st.caption(one_line(exc))

# --- 4 --------------------------------------------------------------------------------------
st.header("4. What does \"93% spiral\" mean?")
st.markdown(
    "The network does not just say *spiral*: it says *93% spiral*. That number is only useful "
    "if it is **honest**. Honest means: take all the galaxies it called 93% spiral; about 93 "
    "out of every 100 of them really are spirals (according to the volunteers). Scientists "
    "call this being **calibrated**. A raw network is often too sure of itself, so ours was "
    "tuned afterwards on galaxies it had never seen.")
rows = cls.reliability_rows(report) if report else []
if rows:
    st.plotly_chart(cls.reliability_figure(rows), key="reliability")
    sure = rows[-1]
    st.markdown(
        f"Each dot is a group of test galaxies, the ones the network never learned from. "
        f"For example, when it was **{sure['from']:.0%}–{sure['to']:.0%} sure** of its answer "
        f"({sure['galaxies']} galaxies), it was right **{sure['right']:.0%}** of the time. "
        "Dots near the dashed line mean honest numbers. Groups with few galaxies wobble, "
        "because a handful of galaxies is a small test.")
else:
    st.info("The network's test results are not available, so the chart is missing.")

# --- 5 --------------------------------------------------------------------------------------
st.header("5. The heat map (Grad-CAM): what it shows and what it doesn't")
grid = cls.map_grid_words(loaded) if loaded is not None else None
st.markdown(
    "After you answer in the Classroom you see a **Grad-CAM map** over the galaxy. It is "
    "worked out backwards from the network's answer: **red and yellow** mark the parts of the "
    "picture that pushed it most towards that answer, **blue** the parts that did not.\n\n"
    "What it **cannot** do:\n"
    "- It is **coarse**. "
    + (f"The map is made from a grid of only {grid}, then smoothed to look nice. "
       if grid else "The map is made from a small grid of squares, then smoothed. ")
    + "It can say *the left side of the galaxy*, not *this arm*.\n"
      "- It shows **where** the network looked, not **what** it saw there or **why**. A red "
      "arm does not prove it understands arms.\n"
      "- Blue does not mean *ignored*: it means *did not push towards this answer*.")

# --- 6 --------------------------------------------------------------------------------------
st.header("6. When the network is sure, and wrong")
shown_failure = False
for failure in failures[:10]:
    if data is None or loaded is None:
        break
    try:
        picture = cls.picture_file(data, str(failure["image"]), str(failure.get("objid", "")))
        seen = catalogue_input(loaded, models.model_key(loaded),
                               str(data.image_path(str(failure["image"]))))
        cam = cam_overlay(loaded, models.model_key(loaded), seen,
                          loaded.classes.index(failure["predicted"]))
    except (GalaxyError, KeyError, ValueError):
        continue
    sure = float(failure.get("confidence", 0))
    middle = seen[seen.shape[0] // 3: 2 * seen.shape[0] // 3,
                  seen.shape[1] // 3: 2 * seen.shape[1] // 3].reshape(-1, 3).astype(float)
    blue = middle[:, 2].mean() > middle[:, 0].mean()
    a, b, c = st.columns(3)
    a.image(picture, caption=f"SDSS galaxy {failure.get('objid', '')}")
    b.image(upscale(seen, 423), caption="What the network gets: the middle, shrunk")
    c.image(upscale(cam, 423), caption=f"Where it looked for “{failure['predicted']}”")
    st.markdown(
        f"The network said **{failure['predicted']}, {sure:.0%} sure**. The volunteers said "
        f"**{failure['true']}**. Out of {report.get('n', 'all the')} test galaxies this is "
        "one of its most confident mistakes.\n\n"
        "Why? Nobody can say for sure: the network does not explain itself, and the map only "
        "shows where it looked. But we can make good guesses:\n"
        + (f"- Its middle is **{'bluish' if blue else 'yellow-red'}**, "
           + ("the colour of young stars, which most spirals have. "
              if blue else "the colour of old stars, which most ellipticals have. ")
           + (f"That points towards {failure['predicted']}, as the network said.\n"
              if (blue == (failure['predicted'] == 'spiral'))
              else f"That points towards {failure['true']}, so colour was not the trap.\n"))
        + "- Look for a **neighbour, a star, a ring or a patch** inside the red part of the map: "
          "anything there may have looked like a disk or an arm to it.\n"
          f"- At the network's {size}-pixel view it is small and blurry, so the detail that "
          "decided it for people may simply be lost.\n"
          "- And the volunteers could be the ones who are wrong: their label is a majority "
          "vote, not the truth.\n\n"
          "Galaxies like this are why scientists check the network's most confident answers "
          "too, and why your own eyes still matter.")
    shown_failure = True
    break
if not shown_failure:
    st.info("The network's mistakes are shown here when its test results and the galaxy "
            "pictures are on this server.")

st.divider()
st.page_link(cls.STUDENT_PAGE, label="Ready? Go to the Classroom and try it yourself",
             icon=":material/groups:")
