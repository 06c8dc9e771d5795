"""The classroom pages' shared pieces: the one classroom database, the prepared data the class's
pictures come from, the session's student token, the join and teacher links, and the words shown
about a galaxy. The pages (``pages/teacher.py``, ``pages/classroom.py``, ``pages/learn.py``)
only draw; everything a class stores lives in ``galaxy_core.classroom``.

Who is who, with no accounts (``dashboard.access`` decides, for every page):

- a **student** is a nickname in one class, tied to a random token of this browser tab, kept
  only in the tab's session (never in the page address, which a classmate could copy and
  become that student). After a reload the student joins again with the same nickname, which
  the teacher lets back in (the Teacher page's "Let a student back in");
- a **teacher** is the computer running the dashboard, or whoever opened a class's teacher
  link (``/teacher?class=<teacher key>``) in this tab: the key is taken out of the address at
  once and kept in the session. It opens the class's results, export, closing and deletion.
  The Teacher page lists the classes opened in this browser tab, and every class on the
  computer running the dashboard.
"""

from __future__ import annotations

import base64
import io
import re
import secrets
import socket
import threading
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from dashboard import access
from galaxy_core.classroom.results import volunteers_words
from galaxy_core.classroom.store import ClassroomError, ClassroomStore, Galaxy
from galaxy_core.data.prepared import SUMMARY, PreparedData, open_prepared
from galaxy_core.errors import DataNotFoundError, GalaxyError
from galaxy_core.locations import classroom_db, prepared_dir

STUDENT_PAGE = "pages/classroom.py"
TEACHER_PAGE = "pages/teacher.py"
LEARN_PAGE = "pages/learn.py"
PAGE_PATHS = ("teacher", "classroom", "learn")
"""The URL paths of the three pages (``st.Page`` names them after their files)."""

CODE_PARAM = "code"
STUDENT_PARAM = "student"
TEACHER_PARAM = "class"
TOKEN_KEY = "classroom_token"  # this tab's student token
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
ELSEWHERE_STORE_ERROR = ("The classroom is not available on this server right now: the "
                         "computer running the dashboard shows why on its Teacher page.")

SET_WORDS = {
    "balanced": "Balanced: half spirals, half ellipticals",
    "hard": "Hard: the ones the network found hardest or got wrong",
    "mixed": "As the sky comes: about three ellipticals to one spiral",
}
ANSWER_BUTTONS = (("spiral", "Spiral", ":material/cyclone:"),
                  ("elliptical", "Elliptical", ":material/circle:"),
                  ("cant_tell", "Can't tell", ":material/help:"))


# --- storage -----------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _store(path: str) -> ClassroomStore:
    return ClassroomStore(path)


def store() -> ClassroomStore:
    """The classroom database of this dashboard (``GALAXY_CLASSROOM_DB``), opened once. Why it
    cannot be opened names the file only on the computer running the dashboard."""
    path = classroom_db()
    try:
        return _store(str(path))
    except ClassroomError as exc:
        if access.is_local():
            raise
        raise ClassroomError(ELSEWHERE_STORE_ERROR) from exc
    except Exception as exc:  # an unwritable folder, a file that is not SQLite
        if not access.is_local():
            raise ClassroomError(ELSEWHERE_STORE_ERROR) from exc
        raise ClassroomError(f"The classroom database {path} cannot be opened "
                             f"({type(exc).__name__}: {exc}).") from exc


@st.cache_resource(max_entries=4, show_spinner=False)
def _prepared(root: str, version: float) -> PreparedData:
    return open_prepared(root)


def prepared() -> PreparedData | None:
    """The prepared dataset the classroom's pictures come from (``GALAXY_PREPARED``), or None
    when it is not there."""
    root = prepared_dir()
    try:
        version = (root / SUMMARY).stat().st_mtime
        return _prepared(str(root), version)
    except (OSError, DataNotFoundError, ValueError, KeyError):
        return None


@st.cache_data(max_entries=512, show_spinner=False)
def _file_bytes(path: str, version: float) -> bytes:
    return Path(path).read_bytes()


def picture_file(data: PreparedData, name: str, objid: str = "") -> bytes:
    """A galaxy's original SDSS cutout, as the survey shows it (bytes, served unchanged);
    the name is resolved inside the prepared data's image folder only."""
    path = data.image_path(name)
    try:
        return _file_bytes(str(path), path.stat().st_mtime)
    except OSError as exc:
        raise DataNotFoundError(f"the picture of galaxy {objid or name} is missing from "
                                f"{access.shown_path(data.image_dir, 'the server')}") from exc


def galaxy_picture(data: PreparedData, galaxy: Galaxy) -> bytes:
    return picture_file(data, galaxy.image, galaxy.objid)


# --- who is at the screen ----------------------------------------------------------------------
def session_token() -> str:
    """This browser tab's student token: random, made once per session, never read from the
    page address (an old link's ``student=`` is ignored: it would make whoever opens a copied
    link that student)."""
    token = st.session_state.get(TOKEN_KEY)
    if not token or not _TOKEN.fullmatch(str(token)):
        token = secrets.token_urlsafe(16)
        st.session_state[TOKEN_KEY] = token
    return token


def is_local() -> bool:
    """Whether this page is open on the computer running the dashboard (see
    ``dashboard.access.is_local``, which decides it for every page)."""
    return access.is_local()


# --- links -------------------------------------------------------------------------------------
def app_address() -> str | None:
    """The dashboard's address as the browser reached it, without the page's own path."""
    try:
        url = st.context.url
    except Exception:
        url = None
    if not url:
        return None
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    for page in PAGE_PATHS:
        if path.endswith("/" + page):
            path = path[: -len(page) - 1]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def lan_address() -> str | None:
    """This computer's address on the local network (no packet is sent: a UDP socket is only
    pointed somewhere to learn which interface would be used)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            address = probe.getsockname()[0]
    except OSError:
        try:
            address = socket.gethostbyname(socket.gethostname())
        except OSError:
            return None
    return None if address.startswith("127.") else address


def student_address() -> tuple[str | None, str]:
    """The address students should open, and a sentence when it needs the teacher's care."""
    base = app_address()
    if base is None:
        return None, ""
    parts = urlsplit(base)
    if parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        return base, ""
    listening = str(st.get_option("server.address") or "")
    if listening in ("localhost", "127.0.0.1", "::1"):
        return base, ("This dashboard only answers on this computer: to let students in, "
                      "start it with `streamlit run app.py --server.address 0.0.0.0`.")
    lan = lan_address()
    if lan is None:
        return base, ("This computer has no network address, so students on other computers "
                      "cannot reach it.")
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{lan}{port}", parts.path, "", "")), ""


def join_link(code: str) -> str | None:
    base, _ = student_address()
    return None if base is None else f"{base}/classroom?{CODE_PARAM}={quote(code)}"


def join_qr(link: str, scale: int = 8) -> bytes:
    """The join link as a QR code (PNG): a class of phones joins by pointing the camera at the
    projector, with no link to type. Error correction M, so a projector's glare or a
    smudged screen still reads."""
    import io

    import segno

    buffer = io.BytesIO()
    segno.make(link, error="m", micro=False).save(buffer, kind="png", scale=scale, border=2)
    return buffer.getvalue()


def teacher_link(teacher_key: str) -> str | None:
    base = app_address()
    return None if base is None else f"{base}/teacher?{TEACHER_PARAM}={quote(teacher_key)}"


# --- words -------------------------------------------------------------------------------------
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain(text: str) -> str:
    """Text someone typed (a nickname, a class name), shown inside markdown as typed: no
    links, headings or emphasis of its own."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def galaxies_word(n: int) -> str:
    return f"{n} galax{'y' if n == 1 else 'ies'}"


def volunteers_said(galaxy: Galaxy) -> str:
    """The volunteers' answer in bold, as the Galaxy Zoo 1 leaf says it."""
    words = volunteers_words(galaxy)
    head, _, tail = words.partition(" (")
    return f"**{head}**" + (f" ({tail}" if tail else "")


def network_said(galaxy: Galaxy) -> str:
    p = galaxy.p_spiral if galaxy.model_label == "spiral" else 1 - galaxy.p_spiral
    return f"**{galaxy.model_label}**, {p:.0%} sure"


def cam_sentence(galaxy: Galaxy) -> str:
    return (f"The middle of the picture, as the network sees it. Red and yellow show where "
            f"the network looked: those parts pushed it towards “{galaxy.model_label}”; blue "
            f"parts did not. It is blurry because the network only knows roughly where.")


def map_grid_words(loaded) -> str | None:
    """How coarse the classroom's Grad-CAM maps are, e.g. "6 x 6 squares of 16 pixels"."""
    try:
        from galaxy_core.explain.gradcam import map_grid
    except ImportError:  # an older explain stage without the helper
        return None
    try:
        rows, cols = map_grid(loaded)
    except (GalaxyError, AttributeError, ZeroDivisionError):
        return None
    return (f"{rows} × {cols} squares, each {loaded.config.image_size / cols:g} × "
            f"{loaded.config.image_size / rows:g} pixels of the {loaded.config.image_size}-pixel "
            "picture the network sees")


# --- one class being created at a time -----------------------------------------------------------
@st.cache_resource
def creation_slot() -> threading.Lock:
    """Making a class runs the network on each of its galaxies (seconds of CPU): one at a time
    per server, so a prank on the Teacher page cannot slow a class that is answering."""
    return threading.Lock()


def one_sentence(exc: BaseException) -> str:
    """A refusal as one line (the store's messages already are)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, GalaxyError) and text and text[0].islower():
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


# --- the Learn page's pictures -------------------------------------------------------------------
def thumbnail_uri(picture: bytes, keep: float = 0.36, size: int = 160) -> str:
    """A data URI of the middle ``keep`` of a cutout (where the galaxy is), ``size`` px."""
    image = Image.open(io.BytesIO(picture)).convert("RGB")
    w, h = image.size
    box = (round(w * (1 - keep) / 2), round(h * (1 - keep) / 2),
           round(w * (1 + keep) / 2), round(h * (1 + keep) / 2))
    image = image.crop(box).resize((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def galaxy_shape(picture: bytes, keep: float = 0.4) -> tuple[float, float]:
    """How round the galaxy in the middle of a cutout looks and how alone it is there:
    (axis ratio, 1 round to ~0 a thin line; share of the bright pixels that belong to it).
    The galaxy is the bright patch joined to the middle (sky subtracted); the ratio comes
    from its light's second moments, so a neighbour or a satellite trail does not count."""
    from scipy import ndimage

    image = np.asarray(Image.open(io.BytesIO(picture)).convert("L"), dtype=np.float64)
    h, w = image.shape
    y0, x0 = round(h * (1 - keep) / 2), round(w * (1 - keep) / 2)
    core = np.clip(image[y0:h - y0, x0:w - x0] - np.median(image), 0, None)
    bright = core > 0.25 * core.max() if core.max() > 0 else np.zeros_like(core, bool)
    patches, _ = ndimage.label(bright)
    middle = patches[core.shape[0] // 2, core.shape[1] // 2]
    if middle == 0 or not bright.any():
        return 1.0, 0.0
    mine = patches == middle
    light = np.where(mine, core, 0.0)
    ys, xs = np.nonzero(mine)
    weights = light[ys, xs]
    if len(ys) < 3 or weights.sum() <= 0:
        return 1.0, 0.0
    cov = np.cov(np.vstack([xs, ys]), aweights=weights)
    small, large = np.sqrt(np.clip(np.linalg.eigvalsh(cov), 1e-9, None))
    return float(small / large), float(mine.sum() / bright.sum())


def tuning_fork_figure(ellipticals: list[bytes], spirals: list[bytes]) -> go.Figure:
    """Hubble's tuning fork drawn with real cutouts: ellipticals along the handle (round to
    flat), spirals on the upper prong, and an honest gap on the barred prong: Galaxy Zoo 1
    never asked about bars."""
    line = dict(color="#8b93b0", width=5)
    fig = go.Figure()
    for xs, ys in (([0.2, 5.0], [3.5, 3.5]), ([5.0, 6.0, 12.0], [3.5, 5.6, 5.6]),
                   ([5.0, 6.0, 12.0], [3.5, 1.4, 1.4])):
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=line, hoverinfo="skip",
                                 showlegend=False))
    images = []
    for x, picture in zip((0.9, 2.5, 4.1), ellipticals):
        images.append((x, 3.5, thumbnail_uri(picture)))
    for x, picture in zip((7.2, 9.0, 10.8), spirals):
        images.append((x, 5.6, thumbnail_uri(picture)))
    for x, y, uri in images:
        fig.add_layout_image(source=uri, x=x, y=y, xref="x", yref="y", sizex=1.45, sizey=1.45,
                             xanchor="center", yanchor="middle", layer="above")
    for x in (7.2, 9.0, 10.8):
        fig.add_shape(type="rect", x0=x - 0.7, x1=x + 0.7, y0=0.7, y1=2.1,
                      line=dict(color="#8b93b0", dash="dot"), fillcolor="#151c33")
        fig.add_annotation(x=x, y=1.4, text="?", showarrow=False, font=dict(size=28))
    notes = [
        (2.5, 4.7, "<b>Ellipticals</b> (E0 round … E7 flat)"),
        (9.0, 6.85, "<b>Spirals</b> (Sa tight arms … Sc loose arms)"),
        (9.0, 0.0, "<b>Barred spirals</b> (SBa … SBc): Galaxy Zoo 1 never asked about bars,"
                   "<br>so none of our galaxies is labelled barred"),
        (5.0, 2.55, "S0<br><span style='font-size:11px'>lenticular:<br>disk, no arms</span>"),
    ]
    for x, y, text in notes:
        fig.add_annotation(x=x, y=y, text=text, showarrow=False, font=dict(size=14))
    fig.update_xaxes(visible=False, range=[0, 12.2])
    fig.update_yaxes(visible=False, range=[-0.5, 7.2], scaleanchor="x")
    fig.update_layout(height=560, margin=dict(l=0, r=0, t=10, b=0), dragmode=False,
                      plot_bgcolor="rgba(0,0,0,0)", paper_bgcolor="rgba(0,0,0,0)")
    return fig


def reliability_rows(report: dict, min_count: int = 20) -> list[dict]:
    """The calibrated reliability bins of a test report with at least ``min_count`` galaxies:
    how sure the network said it was, and how often it was right."""
    bins = (report.get("calibrated") or {}).get("reliability") or {}
    edges = bins.get("edges") or []
    rows = []
    for i, (conf, acc, count) in enumerate(zip(bins.get("confidence") or [],
                                               bins.get("accuracy") or [],
                                               bins.get("count") or [])):
        if conf is None or acc is None or not count or count < min_count:
            continue
        rows.append({"from": edges[i], "to": edges[i + 1], "said": conf, "right": acc,
                     "galaxies": int(count)})
    return rows


def reliability_figure(rows: list[dict]) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0.5, 1], y=[0.5, 1], mode="lines", name="Right as often as it says",
                             line=dict(color="#8b93b0", dash="dash")))
    fig.add_trace(go.Scatter(
        x=[r["said"] for r in rows], y=[r["right"] for r in rows], mode="markers+lines",
        name="The network", marker=dict(size=[6 + np.sqrt(r["galaxies"]) for r in rows]),
        customdata=[r["galaxies"] for r in rows],
        hovertemplate="said %{x:.0%} sure<br>right %{y:.0%} of the time<br>"
                      "%{customdata} galaxies<extra></extra>"))
    fig.update_xaxes(title="How sure the network said it was", tickformat=".0%",
                     range=[0.48, 1.02])
    fig.update_yaxes(title="How often it was right", tickformat=".0%", range=[0.0, 1.02])
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=10, b=10),
                      legend=dict(x=0.02, y=0.98))
    return fig
