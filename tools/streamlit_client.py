"""A small client for Streamlit's browser protocol (Streamlit 1.67), for load tests.

A browser tab is expensive to run 30 times on a 2-core machine; this speaks the same protocol
as the tab instead, so the server does the work 30 students would give it and the client costs
almost nothing. What it does, as the frontend does it (read from streamlit/web/server/starlette
and streamlit/runtime; 1.67 serves only with Starlette, there is no Tornado server any more):

* ``GET /_stcore/health`` sets the ``_streamlit_xsrf`` cookie when XSRF protection is on. The
  cookie goes back with every request, and its value is sent as the ``X-Xsrftoken`` header of
  the upload PUT and as the second websocket subprotocol entry (``["streamlit", token]``).
* ``/_stcore/stream`` carries protobufs: BackMsg up, ForwardMsg down. A run is asked for with
  ``BackMsg.rerun_script`` (a ClientState: page, query string, widget states) and ends with a
  ``script_finished`` message (``FINISHED_EARLY_FOR_RERUN`` when the script called ``st.rerun``:
  its next run follows by itself).
* Elements arrive as deltas at a ``metadata.delta_path``; a later delta at the same path
  replaces the earlier one (``st.empty``, progress bars), so the page is the last element at
  each path. An element of at least ``global.minCachedMessageSize`` is sent once and afterwards
  only as a ``ref_hash``, *if* the client listed its hash in ``ClientState.cached_message_hashes``
  (the browser does; this client does too, so the server does the same work).
* An upload: ``file_urls_request`` -> ``file_urls_response`` (an id and a PUT/DELETE URL per
  file), a multipart PUT per file, then a rerun whose uploader state lists every file the widget
  holds, with its id and URLs.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Common_pb2 import FileURLs, UploadedFileInfo
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.RootContainer_pb2 import SIDEBAR  # a delta_path's first entry
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.sync.client import ClientConnection, connect

XSRF_COOKIE = "_streamlit_xsrf"


class ProtocolError(RuntimeError):
    """The server said something this client cannot follow (e.g. an unknown cached message)."""


@dataclass
class RunResult:
    """What one script run left on the page."""

    seconds: float
    """From sending the rerun to its ``script_finished``."""
    texts: list[str] = field(default_factory=list)
    """Markdown (captions included), headings and alerts of the main area, in page order."""
    sidebar: list[str] = field(default_factory=list)
    """The same, in the sidebar."""
    exceptions: list[str] = field(default_factory=list)
    """Exception elements (and a script compilation error) as ``Type: message``."""
    errors: list[str] = field(default_factory=list)
    """The bodies of ``st.error`` alerts (also in ``texts``)."""
    images: list[str] = field(default_factory=list)
    """Media URLs of the pictures shown, for fetching them as a browser would."""
    tables: list[list[dict]] = field(default_factory=list)
    """Rows of each ``st.dataframe`` (needs pyarrow, which Streamlit itself requires)."""
    upload_seconds: float = 0.0
    """For an upload: asking for its URL and the PUT, before the rerun."""
    cached_refs: int = 0
    """Elements the server sent as references to messages this client had cached."""

    @property
    def text(self) -> str:
        """Everything readable on the page, one line per element or table row."""
        rows = [" | ".join(str(v) for v in row.values()) for t in self.tables for row in t]
        return "\n".join([*self.texts, *rows])


class Session:
    """One browser tab: ``Session(url).open()``, then ``upload(...)`` or ``rerun(...)``."""

    def __init__(self, url: str, page: str = "", query: str = "", timeout: float = 300) -> None:
        self.url, self.page_name, self.query, self.timeout = url.rstrip("/"), page, query, timeout
        self.xsrf: str | None = None
        self.session_id = ""
        self.page_hash = ""
        self.uploader_id = ""
        self.files: list[UploadedFileInfo] = []  # what the uploader holds, as the browser has it
        self.last: RunResult | None = None
        self._ws: ClientConnection | None = None
        self._cache: dict[str, tuple[ForwardMsg, int]] = {}  # hash -> (message, run it was seen)
        self._runs = 0
        self._max_age = 2  # global.maxCachedMessageAge, updated from new_session
        self.cached_refs = 0  # references resolved from the cache, over the session

    # --- HTTP -----------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> bytes:
        url = path if path.startswith("http") else self.url + "/" + path.lstrip("/")
        headers = dict(headers or {})
        if self.xsrf:
            headers["Cookie"] = f"{XSRF_COOKIE}={self.xsrf}"
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
        with opener.open(request, timeout=self.timeout) as reply:
            if method == "GET" and self.xsrf is None:
                for cookie in reply.headers.get_all("Set-Cookie") or []:
                    name, _, value = cookie.split(";", 1)[0].partition("=")
                    if name.strip() == XSRF_COOKIE:
                        self.xsrf = value.strip()
            return reply.read()

    def fetch(self, url: str) -> bytes:
        """GET a media URL (a picture of the page), as the browser does after a run."""
        return self._request("GET", url)

    # --- websocket ------------------------------------------------------------------------
    def open(self) -> RunResult:
        """Get the XSRF cookie, connect, and run the page once (as opening the tab does)."""
        self._request("GET", "/_stcore/health")
        host = self.url.split("//", 1)[1]
        protocols = ["streamlit", self.xsrf] if self.xsrf else ["streamlit"]
        self._ws = connect(
            f"ws://{host}/_stcore/stream", subprotocols=protocols, origin=self.url,
            additional_headers={"Cookie": f"{XSRF_COOKIE}={self.xsrf}"} if self.xsrf else None,
            compression=None, proxy=None, max_size=None, open_timeout=self.timeout,
            ping_interval=None,  # a browser never pings; the server's pings are answered
            legacy=True)  # a plain connection, closed by close() (websockets >= 17.1 asks)
        return self.rerun()

    def close(self) -> None:
        """Close the websocket, as closing the tab does (the server keeps the session a while)."""
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    def __enter__(self) -> Session:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, msg: BackMsg) -> None:
        if self._ws is None:
            raise ProtocolError("the session is not open")
        self._ws.send(msg.SerializeToString())

    def _receive(self, deadline: float) -> ForwardMsg:
        """The next ForwardMsg, with cached references resolved."""
        raw = self._ws.recv(timeout=max(0.01, deadline - time.monotonic()))  # TimeoutError
        msg = ForwardMsg()
        msg.ParseFromString(raw)
        if msg.WhichOneof("type") == "ref_hash":
            if msg.ref_hash not in self._cache:
                raise ProtocolError(f"reference to a message never cached: {msg.ref_hash}")
            cached = ForwardMsg()
            cached.CopyFrom(self._cache[msg.ref_hash][0])
            cached.metadata.CopyFrom(msg.metadata)  # the reference says where it goes
            self._cache[msg.ref_hash] = (self._cache[msg.ref_hash][0], self._runs)
            self.cached_refs += 1
            return cached
        if msg.metadata.cacheable and msg.hash:
            self._cache[msg.hash] = (msg, self._runs)
        return msg

    def rerun(self, widgets: list[WidgetState] | None = None) -> RunResult:
        """Ask for a run with these widget states (those not given keep their values) and
        read its messages until it has finished."""
        self._runs += 1
        self._cache = {h: (m, seen) for h, (m, seen) in self._cache.items()
                       if self._runs - seen <= self._max_age}  # as the browser's cache ages
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string, state.page_name = self.query, self.page_name
        state.page_script_hash = self.page_hash
        state.widget_states.widgets.extend(widgets or [])
        state.cached_message_hashes.extend(self._cache)
        start = time.monotonic()
        self._send(msg)
        result = self._collect(start, start + self.timeout)
        self.last = result
        return result

    def _collect(self, start: float, deadline: float) -> RunResult:
        page: dict[tuple[int, ...], Element] = {}
        result, refs, started = RunResult(0.0), self.cached_refs, False
        while True:
            msg = self._receive(deadline)
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                started = True  # what came before belongs to an earlier run
                page.clear()  # a new run (also the one after st.rerun) redraws the page
                self.page_hash = msg.new_session.page_script_hash
                init = msg.new_session.initialize
                self.session_id = init.session_id or self.session_id
                self._max_age = msg.new_session.config.max_cached_message_age or self._max_age
            elif kind == "delta":
                path = tuple(msg.metadata.delta_path)
                for old in [p for p in page if p[:len(path)] == path]:
                    del page[old]  # what was at this path (and inside it) is replaced
                if msg.delta.WhichOneof("type") == "new_element":
                    page[path] = msg.delta.new_element
            elif kind == "session_event" and msg.session_event.HasField(
                    "script_compilation_exception"):
                exc = msg.session_event.script_compilation_exception
                result.exceptions.append(f"{exc.type}: {exc.message}")
            elif kind == "script_finished" and started:
                if msg.script_finished == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    continue  # st.rerun(): the next run follows without a request
                if msg.script_finished == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
                    self._drain_compile_error(result, deadline)
                break
        result.seconds = time.monotonic() - start
        result.cached_refs = self.cached_refs - refs
        self._read_page(page, result)
        return result

    def _drain_compile_error(self, result: RunResult, deadline: float) -> None:
        """The compilation exception comes right after its script_finished."""
        try:
            msg = self._receive(min(deadline, time.monotonic() + 5))
        except TimeoutError:
            return
        if msg.WhichOneof("type") == "session_event":
            exc = msg.session_event.script_compilation_exception
            result.exceptions.append(f"{exc.type}: {exc.message}")

    def _read_page(self, page: dict[tuple[int, ...], Element], result: RunResult) -> None:
        for path in sorted(page):
            element = page[path]
            kind = element.WhichOneof("type")
            texts = result.sidebar if path[0] == SIDEBAR else result.texts
            if kind in ("markdown", "heading"):
                texts.append(getattr(element, kind).body)
            elif kind == "alert":
                texts.append(element.alert.body)
                if element.alert.format == element.alert.ERROR:
                    result.errors.append(element.alert.body)
            elif kind == "exception":
                result.exceptions.append(f"{element.exception.type}: "
                                         f"{element.exception.message}")
            elif kind == "imgs":
                result.images += [img.url for img in element.imgs.imgs]
            elif kind == "dataframe":
                result.tables.append(_rows(element.dataframe.arrow_data.data))
            elif kind == "file_uploader":
                self.uploader_id = element.file_uploader.id

    # --- the file uploader ----------------------------------------------------------------
    def _uploader_state(self) -> WidgetState:
        state = WidgetState(id=self.uploader_id)
        state.file_uploader_state_value.uploaded_file_info.extend(self.files)
        return state

    def upload(self, name: str, data: bytes, mime: str = "image/png",
               replace: bool = False) -> RunResult:
        """Add a file to the page's uploader (``replace``: remove the files it holds first, as
        clicking their x does, which is a run of its own) and return the run that follows."""
        if not self.uploader_id:
            raise ProtocolError("no file uploader on the page")
        if replace and self.files:
            self.remove_all()
        start = time.monotonic()
        request = BackMsg()
        request.file_urls_request.request_id = uuid.uuid4().hex
        request.file_urls_request.session_id = self.session_id
        request.file_urls_request.file_names.append(name)
        self._send(request)
        deadline = start + self.timeout
        while True:  # other messages (a late page_profile) may come first
            msg = self._receive(deadline)
            if (msg.WhichOneof("type") == "file_urls_response"
                    and msg.file_urls_response.response_id == request.file_urls_request.request_id):
                break
        response = msg.file_urls_response
        if response.error_msg or not response.file_urls:
            raise ProtocolError(f"no upload URL for {name}: {response.error_msg}")
        urls: FileURLs = response.file_urls[0]
        boundary = uuid.uuid4().hex
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="{_form_name(name)}"\r\nContent-Type: {mime}\r\n\r\n'
                ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        if self.xsrf:
            headers["X-Xsrftoken"] = self.xsrf
        self._request("PUT", urls.upload_url, body, headers)
        uploaded = time.monotonic() - start
        self.files.append(UploadedFileInfo(name=name, size=len(data), file_id=urls.file_id,
                                           file_urls=urls))
        result = self.rerun([self._uploader_state()])
        result.upload_seconds = uploaded
        return result

    def remove_all(self) -> RunResult:
        """Remove every file from the uploader: a DELETE each, then the rerun the widget asks
        for."""
        for info in self.files:
            headers = {"X-Xsrftoken": self.xsrf} if self.xsrf else {}
            self._request("DELETE", info.file_urls.delete_url, headers=headers)
        self.files = []
        return self.rerun([self._uploader_state()])


def _form_name(name: str) -> str:
    """A file name as the browser writes it in multipart form data (UTF-8; quotes and line
    breaks percent-escaped)."""
    return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _rows(data: bytes) -> list[dict]:
    """A dataframe element's Arrow IPC stream as rows; empty when it cannot be read."""
    try:
        import pyarrow as pa

        return pa.ipc.open_stream(data).read_all().to_pylist()
    except Exception:  # only for reading the page; the timing does not depend on it
        return []
