"""Three students upload on the Classify page at the same moment, through Streamlit's own
protocol (tools/streamlit_client.py, the client of benchmarks/bench_class_load.py), against a
real ``streamlit run app.py`` with the tiny test model. Checks the client (upload, rerun, the
page it reads back) and that concurrent sessions never see each other's answers."""

from __future__ import annotations

import io
import os
import threading

import pytest

from tests.conftest import draw_galaxy
from tests.test_app import assets  # noqa: F401  (a fixture)
from tests.test_browser import QUIET, streamlit_app
from tools.streamlit_client import RunResult, Session

pytestmark = pytest.mark.slow

STUDENTS, UPLOADS = 3, 2


def png(kind: str, seed: int) -> bytes:
    buffer = io.BytesIO()
    draw_galaxy(kind, 96, seed=seed).save(buffer, "PNG")
    return buffer.getvalue()


def test_concurrent_sessions_each_get_answers_for_their_own_files(assets, tmp_path):  # noqa: F811
    files = {s: [(f"student{s}_galaxy{k}.png", png(("spiral", "elliptical")[(s + k) % 2],
                                                    seed=10 * s + k)) for k in range(UPLOADS)]
             for s in range(STUDENTS)}
    env = {**os.environ, "GALAXY_MODEL_DIR": str(assets["model"]),
           "GALAXY_PREPARED": str(assets["prepared"]), "GALAXY_RUNS_DIR": str(tmp_path / "runs"),
           "PYTHONUNBUFFERED": "1"}
    results: dict[int, list[RunResult]] = {}
    failures: list[str] = []
    together = threading.Barrier(STUDENTS)

    def student(s: int) -> None:
        session = Session(url, timeout=240)
        try:
            session.open()
            together.wait(timeout=240)  # all open: the uploads start at the same moment
            results[s] = [session.upload(name, data) for name, data in files[s]]
        except Exception as exc:  # noqa: BLE001  (reported by the main thread)
            failures.append(f"student {s}: {type(exc).__name__}: {exc}")
        finally:
            session.close()

    with streamlit_app(env, tmp_path / "streamlit.log", QUIET) as (url, _):
        threads = [threading.Thread(target=student, args=(s,), daemon=True)
                   for s in range(STUDENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        assert not any(t.is_alive() for t in threads), "a session did not finish in 600 s"
    assert not failures, failures

    for s, runs in results.items():
        own = [name for name, _ in files[s]]
        others = [name for t in files if t != s for name, _ in files[t]]
        assert len(runs) == UPLOADS
        for k, run in enumerate(runs):
            where = f"student {s}, upload {k + 1}:\n{run.text}"
            assert any(t.startswith("### :") for t in run.texts), where  # a verdict
            # the uploader keeps adding files: the page answers for all of them so far
            assert all(name in run.text for name in own[:k + 1]), where
            assert not any(name in run.text for name in others), where
            assert not run.exceptions and not run.errors, where
            assert run.seconds > 0 and run.upload_seconds > 0
            assert len(run.images) >= 2, where  # the model input and the Grad-CAM
        assert len(runs[-1].tables) == 1 and len(runs[-1].tables[0]) == UPLOADS  # batch table
