"""A lesson in a real browser: `streamlit run app.py` on a loopback port, a teacher and three
students in separate Chromium contexts (separate cookies and sessions, like separate computers).
The teacher makes a class; the students join it from the Classroom page and answer; their
answers appear on the teacher's live results without anyone reloading. Screenshots of the
teacher's results and a student's reveal go to docs/ (classroom_teacher.png,
classroom_student.png). Run alone with ``pytest -m browser``.

Uses the shipped model and data/gz1 when both exist (so the screenshots show real galaxies), else
the tiny synthetic model and data of test_app.py.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.test_app import assets  # noqa: F401  (assets is a fixture)
from tests.test_browser import (CHROMIUM, DOCS, QUIET, SLOW, browser_context_args,  # noqa: F401
                                browser_type_launch_args, screenshot, streamlit_app,
                                wait_for_app)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(assets, tmp_path_factory):  # noqa: F811
    from dashboard.models import is_model_dir
    from galaxy_core.locations import SHIPPED_MODEL_DIR, prepared_dir

    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium chromium-driver")
    tmp = tmp_path_factory.mktemp("classroom_browser")
    env = {**os.environ, "GALAXY_RUNS_DIR": str(tmp / "runs"), "PYTHONUNBUFFERED": "1",
           "GALAXY_CLASSROOM_DB": str(tmp / "classroom.sqlite3")}
    real = is_model_dir(SHIPPED_MODEL_DIR) and (prepared_dir() / "summary.json").is_file()
    if real:
        env.pop("GALAXY_MODEL_DIR", None)
    else:
        env["GALAXY_MODEL_DIR"] = str(assets["model"])
        env["GALAXY_PREPARED"] = str(assets["prepared"])
    log = tmp / "streamlit.log"
    with streamlit_app(env, log, QUIET) as (url, _):
        yield {"url": url, "real": real, "log": log}


def metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.get_by_text("Traceback").count() == 0


def join_and_answer(context, url: str, code: str, nickname: str, answer: str):
    page = context.new_page()
    page.goto(f"{url}/classroom?code={code}")
    wait_for_app(page)
    page.get_by_label("Nickname", exact=True).fill(nickname)
    page.get_by_role("button", name="Join the class").click()
    page.locator('[data-testid="stMain"]').get_by_text("Spiral or elliptical?").wait_for(
        timeout=SLOW)
    page.get_by_role("button", name=answer, exact=True).click()
    page.get_by_text("The volunteers", exact=False).first.wait_for(timeout=SLOW)
    page.locator('img[src*="media"]').nth(1).wait_for(timeout=SLOW)  # the Grad-CAM
    return page


def test_students_answers_appear_live_on_the_teachers_results(server, browser):
    url = server["url"]
    teacher_context = browser.new_context(viewport={"width": 1440, "height": 1000})
    teacher = teacher_context.new_page()
    teacher.goto(f"{url}/teacher")
    wait_for_app(teacher)
    teacher.get_by_label("Class name", exact=True).fill("Year 9 astronomy")
    teacher.get_by_label("Galaxies per student", exact=True).fill("6")
    teacher.get_by_role("button", name="Create the class").click()
    teacher.get_by_text("Join code", exact=True).wait_for(timeout=SLOW)
    wait_for_app(teacher)
    link = teacher.locator('[data-testid="stCode"]').first.inner_text()
    code = re.search(r"code=([A-Z2-9]{6})", link).group(1)
    assert metric(teacher, "Answers") == "0"
    no_exception(teacher)

    students = []
    for nickname, answer in (("Ada", "Spiral"), ("Bea", "Elliptical"), ("Cy", "Spiral")):
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        students.append(join_and_answer(context, url, code, nickname, answer))
    for student in students:
        no_exception(student)

    # No reload, no click: the live fragment brings the answers in.
    teacher.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stMetric\"]')].some("
        "m => m.innerText.includes('Answers') && m.innerText.trim().endsWith('3'))",
        timeout=30_000)
    assert metric(teacher, "Students") == "3"
    teacher.get_by_text("Galaxy 1", exact=False).first.wait_for(timeout=30_000)  # disputed
    wait_for_app(teacher)
    no_exception(teacher)
    # The manual's pictures only from the shipped model and real galaxies, never the tiny one.
    shots = DOCS if server["real"] else server["log"].parent
    screenshot(teacher, "classroom_teacher.png", shots)

    ada = students[0]
    wait_for_app(ada)
    screenshot(ada, "classroom_student.png", shots)
