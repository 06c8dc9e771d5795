"""The Classify page under many sessions (issue 14, item 8): answers are kept by content and
shared by sessions, a file added to an upload does not make the earlier ones classified again,
and what one session sees of a shared answer is its own (its file name, its copy)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import draw_galaxy
from tests.test_app import app, assets, env, navigation_only, png_bytes  # noqa: F401


@pytest.fixture
def counted(monkeypatch):
    """Every image the model is asked to classify, by name, across all sessions."""
    from dashboard import serving

    asked: list[str] = []
    real = serving.classify_sources

    def counting(loaded, items, **kwargs):
        asked.extend(name for name, _ in items)
        return real(loaded, items, **kwargs)

    monkeypatch.setattr(serving, "classify_sources", counting)
    serving.answers.clear()
    serving._batcher.clear()
    yield asked
    serving.answers.clear()
    serving._batcher.clear()


def headline(at) -> str:
    return [m.value for m in at.main.markdown if m.value.startswith("### :")][0]


def test_adding_a_file_classifies_only_the_new_one(env, counted):  # noqa: F811
    spiral, round_one = png_bytes(draw_galaxy("spiral", 96, seed=1)), \
        png_bytes(draw_galaxy("elliptical", 96, seed=2))
    at = app()
    at.file_uploader[0].upload("first.png", spiral, "image/png").run()
    assert not at.exception, [e.value for e in at.exception]
    assert counted == ["first.png"]
    at.file_uploader[0].set_value([("first.png", spiral, "image/png"),
                                   ("second.png", round_one, "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert counted == ["first.png", "second.png"], "the first file was not classified again"
    preds = at.session_state["classify_preds"]
    assert [p.source for p in preds] == ["first.png", "second.png"]
    assert preds[0].p_spiral != preds[1].p_spiral


def test_sessions_share_answers_under_their_own_names(env, counted):  # noqa: F811
    data = png_bytes(draw_galaxy("spiral", 96, seed=5))
    first = app()
    first.file_uploader[0].upload("galaxy.png", data, "image/png").run()
    second = app()
    second.file_uploader[0].upload("my copy.png", data, "image/png").run()
    assert counted == ["galaxy.png"], "the second session got the known answer"
    a, b = (s.session_state["classify_preds"][0] for s in (first, second))
    assert b.source == "my copy.png" and a.source == "galaxy.png"
    assert (a.p_spiral, a.ood_score, a.label) == (b.p_spiral, b.ood_score, b.label)
    assert headline(first) == headline(second)
    assert a.model_input is not b.model_input and np.array_equal(a.model_input, b.model_input)
    third = app()  # the same file under survey matching "on" is another question
    third.segmented_control[0].set_value("on").run()
    third.file_uploader[0].upload("galaxy.png", data, "image/png").run()
    assert counted == ["galaxy.png", "galaxy.png"]


def test_the_same_galaxy_sent_at_once_is_made_once():
    """Two sessions claiming one galaxy at the same moment: one makes it, the other waits for
    that answer; a failed making reaches the waiter and nothing is kept."""
    import threading

    from dashboard.serving import Answers
    from galaxy_core.predict.classify import Prediction

    store = Answers(limit=2)
    key = ("model@1", "auto", "abc")
    assert store.claim(key) is None, "the first one makes it"
    waiting = store.claim(key)
    assert waiting is not None and not isinstance(waiting, Prediction)
    threading.Timer(0.1, store.settle, args=(key, Prediction("a.png", "spiral", 0.9, 0.1))).start()
    got = waiting.result(timeout=5)
    assert got.label == "spiral" and isinstance(store.claim(key), Prediction)
    other = ("model@1", "auto", "def")
    assert store.claim(other) is None
    waiter = store.claim(other)
    store.settle(other, None, RuntimeError("out of memory"))
    with pytest.raises(RuntimeError):
        waiter.result(timeout=5)
    assert store.claim(other) is None, "a failure is not kept: the next one tries again"
    for n in range(3):
        store.put(("model@1", "auto", str(n)), Prediction(f"{n}.png", "elliptical", 0.1, 0.9))
    assert len(store) == 2, "bounded"
