"""Who is at the screen: the computer running the dashboard, a teacher, or any visitor.

The dashboard has no accounts, and in class it listens on the school network (``make run``:
every interface), so every page asks here, in one place, what this visitor may do:

- **the local computer** (the browser's connection comes from this machine: a loopback
  address, or one of this machine's own network addresses) is the operator: it sees every
  class and the server's paths, makes classes and starts, stops and resumes training runs;
- **a teacher elsewhere** holds the secret of a class (opened with its teacher link in this
  browser tab): that class's results, closing and deletion, and, like the local computer,
  making classes (a few an hour, :mod:`galaxy_core.classroom.limits`) and training runs;
- **everyone else** (the students) joins classes and reads; the buttons that would start
  anything heavy or destroy anything are not drawn for them.

Why the client's address: it is the TCP peer of the browser's WebSocket, which a student on
another computer cannot choose (the server behind it, uvicorn, trusts forwarding headers only
from a proxy on this very machine), while anything a browser sends (a header, a cookie, a
query parameter) a student can forge. A reverse proxy on this machine in front of the dashboard
would make every visitor local: put a password on such a proxy instead.

Why no cookie: Streamlit reads cookies but cannot set one without a browser component (custom
JavaScript in the page, which the tests here cannot run). So a teacher's secret comes in once
through the teacher link's query parameter, is taken out of the address at once and kept in
this tab's ``st.session_state`` (the server's memory of the tab): nothing in the address bar
or the history opens the class again, and a reload on another computer asks for the bookmarked
teacher link again. The local computer needs no secret at all.

``GALAXY_LOCAL_ADDRESSES`` (for tests): a comma-separated list of addresses; when it is set,
only those of this machine's addresses count as the local computer (``127.0.0.1`` and ``::1``,
which Streamlit reports as no address at all, always do). It can only narrow the rule above,
never make another computer local; unset (the default), the rule is as above.
tests/test_classroom_two_computers.py sets it to ``127.0.0.1`` so that a browser whose
connection really comes from ``127.0.0.2`` (through a forwarder in the test) stands for a
student's laptop.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Literal

import streamlit as st

from galaxy_core.classroom.limits import VisitorQuota

TRAINING_ENV = "GALAXY_ALLOW_TRAINING"
LOCAL_ENV = "GALAXY_LOCAL_ADDRESSES"  # for tests: only these of the machine's own addresses
TEACHER_KEYS = "teacher_keys"  # session key: the teacher keys this tab was given
TrainingMode = Literal["off", "teachers", "everyone"]


def client_ip() -> str | None:
    """The browser connection's address as Streamlit saw it (None: loopback, or no browser
    at all, as under AppTest and in a bare script run)."""
    try:
        address = st.context.ip_address
    except Exception:  # no script run context
        return None
    # A served page gives a string or None. AppTest has no connection and answers a mock
    # object: that is no browser at all, the same as a bare script run.
    return address if isinstance(address, str) else None


def _own_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``ip`` belongs to one of this machine's network interfaces: binding a socket to
    it succeeds only then (nothing is sent)."""
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(ip), 0))
    except OSError:
        return False
    return True


def is_local_address(address: str | None) -> bool:
    """Whether a connection from ``address`` comes from the computer running the dashboard.

    None is Streamlit's word for a loopback connection. An address that cannot be read is not
    local: an unknown visitor gets the visitor's rights, never the operator's."""
    if address is None:
        return True
    try:
        ip = ipaddress.ip_address(str(address).split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast:
        return False
    if not (ip.is_loopback or _own_address(ip)):
        return False
    only = os.environ.get(LOCAL_ENV)
    return only is None or ip in _addresses(only)


def _addresses(text: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses of a ``GALAXY_LOCAL_ADDRESSES`` value (what does not read as one is left
    out, which only narrows the local computer further)."""
    found = set()
    for part in text.split(","):
        try:
            found.add(ipaddress.ip_address(part.strip()))
        except ValueError:
            continue
    return found


def is_local() -> bool:
    """Whether this page is open on the computer running the dashboard: the one question every
    page asks before showing a server path or drawing an operator's button."""
    return is_local_address(client_ip())


def teacher_keys() -> list[str]:
    """The teacher keys this browser tab was given (a teacher link, or a class made here)."""
    return st.session_state.setdefault(TEACHER_KEYS, [])


def remember_teacher_key(key: str) -> None:
    keys = teacher_keys()
    if key and key not in keys:
        keys.append(key)


def is_teacher(valid: set[str] | None = None) -> bool:
    """The local computer, or a tab holding a teacher key (``valid``: the keys that still open
    a class, when the caller has checked them against the classroom file)."""
    if is_local():
        return True
    keys = teacher_keys()
    return any(k in valid for k in keys) if valid is not None else bool(keys)


def training_mode() -> TrainingMode:
    """Who may start, stop and resume training runs, from ``GALAXY_ALLOW_TRAINING``:
    ``0``/``false``/``no``/``off``: nobody (the page only shows runs); unset, ``1`` or
    ``local``: the computer running the dashboard and teachers (the safe default for a
    classroom); ``all``: every visitor (a workshop where everyone trains)."""
    value = os.environ.get(TRAINING_ENV, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return "off"
    if value in ("all", "everyone"):
        return "everyone"
    return "teachers"


def may_train() -> bool:
    """Whether this visitor may start, stop or resume training runs."""
    mode = training_mode()
    return mode == "everyone" or (mode == "teachers" and is_teacher())


def visitor() -> str:
    """What a visitor's quota is counted by: the connection's address."""
    return client_ip() or "local"


@st.cache_resource(show_spinner=False)
def class_quota() -> VisitorQuota:
    """The server's one count of classes made per visitor on other computers."""
    return VisitorQuota()


def shown_path(path: Path | str, elsewhere: str = "on the server") -> str:
    """A server path for the local computer (relative to the repository when inside it), and
    ``elsewhere`` for a visitor on another computer, who has no use for the server's folder
    layout (and should not learn user names or folders from it)."""
    if not is_local():
        return elsewhere
    from dashboard import paths

    return paths.show(path)
