"""``acknet graph`` in a real headless browser: Debian's Chromium opens the written page from a file.

The browser is driven through the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (file
descriptors 3 and 4, NUL-separated JSON): no debugging port, no socket, nothing on any network. The
page's own Content-Security-Policy forbids every fetch, and the test also records each request the
page makes: the one file and nothing else.

Checked on every example: the script drew without an error, the matrix has one cell per verdict
(counted independently from ``analysis.reachability``), a known allowed cell is painted the
allowed colour and a denied one the denied colour (computed style, and pixels of the screenshot),
hovering a cell shows its deciding reason, re-ordering keeps every cell, the topology has a chip per
running pod and edges for the allowed flows. The screenshot stays in the test's tmp dir.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import select
import shutil
import struct
import subprocess
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import Emu

from acknet.analysis.endpoints import EndpointIndex
from acknet.analysis.reachability import Reachability, Verdict
from acknet.cli.graph import run_graph
from acknet.controllers.plan import plan as make_plan
from acknet.controllers.state import Plan
from acknet.model.build import build_resources
from acknet.store.files import read_sources

REPO = Path(__file__).resolve().parents[2]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ALLOWED_RGB = (47, 158, 91)  # the page's --allowed, #2f9e5b
DENIED_RGB = (214, 69, 69)  # --denied, #d64545
WIDTH, HEIGHT = 1600, 1200


class Browser:
    """One headless Chromium and its DevTools pipe; ``call`` sends a command and waits for its answer,
    keeping the events that arrive meanwhile in ``events``."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_browser_r, self._out = os.pipe()
        self._in, from_browser_w = os.pipe()

        def plumb() -> None:  # in the child: the pipe ends become fds 3 (commands) and 4 (answers)
            commands, answers = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(commands, 3)
            os.dup2(answers, 4)

        args = [
            executable,
            "--headless",
            "--no-sandbox",  # tests run as root; the sandbox refuses root
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # belt and braces: no name resolves
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            args,
            pass_fds=(3, 4),
            preexec_fn=plumb,  # noqa: PLW1509 - single-threaded test, only dup2 in the child
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._id:
                    if "error" in answer:
                        raise AssertionError(f"{method}: {answer['error']}")
                    result: dict[str, Any] = answer["result"]
                    return result
                self.events.append(answer)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the browser did not answer {method} in {timeout} s")
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    stderr = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                    raise AssertionError(f"the browser closed its pipe during {method}:\n{stderr[-2000:]}")
                self._buffer += chunk

    def close(self) -> None:
        with contextlib.suppress(AssertionError, TimeoutError, OSError):
            self.call("Browser.close", timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._out)
        os.close(self._in)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, self.session)

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")


def _executable() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    executable = _executable()
    if executable is None:
        pytest.skip("no Chromium to test the page in: apt-get install --no-install-recommends chromium")
    b = Browser(executable, tmp_path_factory.mktemp("chromium-profile"))
    try:
        version = b.call("Browser.getVersion")
        print(f"browser: {version['product']}")
        yield b
    finally:
        b.close()


def _open(browser: Browser, path: Path) -> Page:
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    page = Page(browser, session)
    page.call("Network.enable")
    page.call("Page.enable")
    page.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    browser.events.clear()
    page.call("Page.navigate", {"url": path.as_uri()})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = page.js(
            "document.body ? [document.body.dataset.ready || '', document.body.dataset.error || ''] : null"
        )
        if state and (state[0] or state[1]):
            break
        time.sleep(0.1)
    return page


def _plan(example: str) -> Plan:
    return make_plan(build_resources(read_sources([str(REPO / "examples" / example)])))


def _verdicts(planned: Plan) -> list[Verdict]:
    index = EndpointIndex.of(planned)
    return Reachability(planned).check(index.everything(), [*index.everything(), *index.services.values()])


def _cell(v: Verdict) -> str:
    return f'td.cell[data-from="{v.source}"][data-to="{v.destination}"][data-port="{v.port}/{v.protocol}"]'


@pytest.mark.parametrize("example", ["shop", "quickstart"])
def test_graph_page_in_a_real_browser(example: str, browser: Browser, tmp_path: Path) -> None:
    html = tmp_path / f"{example}.html"
    assert run_graph([str(REPO / "examples" / example)], None, None, None, None, None, str(html)) == 0
    planned = _plan(example)
    verdicts = _verdicts(planned)

    page = _open(browser, html)
    assert page.js("document.body.dataset.error || null") is None
    assert page.js("document.body.dataset.ready") == "true"
    requested = {
        e["params"]["request"]["url"]
        for e in browser.events
        if e.get("method") == "Network.requestWillBeSent"
    }
    assert requested == {html.as_uri()}, f"the page fetched more than itself: {requested}"

    # The matrix: one cell per verdict, each state as often as the analysis says.
    assert page.js("document.querySelectorAll('#matrix td.cell').length") == len(verdicts)
    for state in ("allowed", "partial", "denied"):
        expected = sum(1 for v in verdicts if v.state == state)
        assert page.js(f"document.querySelectorAll('#matrix td.cell[data-state={state}]').length") == expected

    allowed = next(v for v in verdicts if v.state == "allowed" and not v.destination.startswith("svc/"))
    denied = next(v for v in verdicts if v.state == "denied")
    if example == "shop":  # the cells the shop's README talks about
        allowed = next(
            v for v in verdicts if v.source.startswith("shop/web-") and v.destination == "ecs/db-1"
        )
        denied = next(v for v in verdicts if (v.source, v.destination) == ("ecs/bastion", "ecs/db-1"))
        assert allowed.state == "allowed" and denied.state == "denied"
    for verdict, rgb in ((allowed, ALLOWED_RGB), (denied, DENIED_RGB)):
        colour = page.js(f"getComputedStyle(document.querySelector('{_cell(verdict)}')).backgroundColor")
        assert colour == "rgb({}, {}, {})".format(*rgb), (verdict.source, verdict.destination, colour)

    # Hovering a cell shows its verdict and the reasons behind it.
    rect = page.js(
        f"(() => {{ const c = document.querySelector('{_cell(denied)}'); c.scrollIntoView({{block: 'center',"
        " inline: 'center'}); const r = c.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
    )
    page.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": rect[0], "y": rect[1]})
    tip = page.js(
        "(() => { const t = document.getElementById('tip'); return [t.style.display, t.innerText]; })()"
    )
    assert tip[0] == "block"
    assert f"{denied.source} → {denied.destination} {denied.port}/{denied.protocol}" in tip[1]
    assert "DENIED" in tip[1] and denied.reasons[-1] in tip[1]
    page.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": 1, "y": 1})

    # The topology: a chip per running pod, in its node's box; edges for the allowed flows.
    running = [p for p in planned.pods if p.node is not None and p.ip is not None]
    assert page.js("document.querySelectorAll('#topology .chip.pod').length") == len(running)
    pod = running[0]
    assert page.js(
        f'document.querySelector(\'.instance[data-instance="ecs/{pod.node}"] .chip.pod[data-name="{pod.key}"]\')'
        " !== null"
    )
    edges = page.js("document.querySelectorAll('#flows g.flow').length")
    assert edges > 0 and page.js("document.getElementById('flows').dataset.edges") == str(edges)
    # Arrows from pods into what every pod reaches are there, hidden until asked for.
    visible = "[...document.querySelectorAll('#flows g.flow')].filter((g) => getComputedStyle(g).display !== 'none').length"
    hidden = page.js(visible)
    page.js("document.getElementById('show-open').click()")
    assert page.js(visible) == edges >= hidden
    if example == "shop":
        assert hidden < edges  # CoreDNS and the ingress controller alone would draw a dozen
    page.js("document.getElementById('show-open').click()")
    if example == "shop":
        assert page.js(
            'document.querySelector(\'#flows g.flow[data-from="shop/web"][data-to="shop/api"]\') !== null'
        )
        assert page.js("document.querySelector('.vswitch[data-vswitch=\"data-h\"] .chip.slb') !== null")
        # Hovering the database's SLB draws a line to its backend, the database instance.
        page.js(
            "document.querySelector('.chip.slb[data-name=\"slb/db-slb\"]').dispatchEvent(new MouseEvent('mouseenter'))"
        )
        assert page.js("document.querySelectorAll('#flows g.slb-links line').length") == 1
        assert page.js(
            "[...document.querySelectorAll('#topology .chip.backend')].map((c) => c.dataset.name)"
        ) == ["ecs/db-1"]
        page.js(
            "document.querySelector('.chip.slb[data-name=\"slb/db-slb\"]').dispatchEvent(new MouseEvent('mouseleave'))"
        )
        assert page.js("document.querySelectorAll('#flows g.slb-links').length") == 0
        # Hovering the edge names its port and the policy that let it through.
        page.js(
            '(() => { const h = document.querySelector(\'#flows g.flow[data-from="shop/web"][data-to="shop/api"]'
            " path.hit'); h.dispatchEvent(new MouseEvent('mouseenter'));"
            " h.dispatchEvent(new MouseEvent('mousemove', {clientX: 20, clientY: 20, bubbles: true})); })()"
        )
        tip = page.js("document.getElementById('tip').innerText")
        assert "shop/web → shop/api" in tip and "9090/TCP" in tip and "shop/allow-api-from-web" in tip
        assert page.js("document.querySelectorAll('#topology .chip.pod.hl').length") == 5  # 3 web, 2 api
        page.js(
            '(() => { const h = document.querySelector(\'#flows g.flow[data-from="shop/web"][data-to="shop/api"]'
            " path.hit'); h.dispatchEvent(new MouseEvent('mouseleave')); })()"
        )
        assert page.js("document.querySelectorAll('#topology .chip.hl').length") == 0

    # The whole page as a picture, kept in the tmp dir; then the matrix alone, to look at its pixels.
    page.js("window.scrollTo(0, 0)")
    size = page.call("Page.getLayoutMetrics")["cssContentSize"]
    screenshot = tmp_path / f"graph-{example}.png"
    whole = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = page.call(
        "Page.captureScreenshot", {"format": "png", "clip": whole, "captureBeyondViewport": True}
    )
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    width, height, _ = _decode_png(screenshot.read_bytes(), pixels=False)
    assert width >= WIDTH - 40 and height >= 600
    print(f"screenshot: {screenshot} ({width}x{height})")
    box = page.js(
        "(() => { const r = document.getElementById('matrix').getBoundingClientRect();"
        " return {x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height, scale: 1}; })()"
    )
    matrix_shot = page.call(
        "Page.captureScreenshot", {"format": "png", "clip": box, "captureBeyondViewport": True}
    )
    _, _, pixels = _decode_png(base64.b64decode(matrix_shot["data"]))
    colours = Counter(pixels)
    assert colours[ALLOWED_RGB] > 0 and colours[DENIED_RGB] > 0, "the heat-map is not in the picture"

    # Re-ordering (most reachable first) and filtering redraw the matrix without losing a cell.
    page.js(
        "(() => { const s = document.getElementById('order'); s.value = 'reach'; s.dispatchEvent(new Event('change')); })()"
    )
    assert page.js("document.querySelectorAll('#matrix td.cell').length") == len(verdicts)
    open_counts = page.js(
        "[...document.querySelectorAll('#matrix tbody tr[data-row]')]"
        ".map((tr) => tr.querySelectorAll('td.cell:not([data-state=denied])').length)"
    )
    assert open_counts == sorted(open_counts, reverse=True)
    page.js(
        "(() => { const f = document.getElementById('filter'); f.value = 'ecs/';"
        " f.dispatchEvent(new Event('input')); })()"
    )
    ecs = [v for v in verdicts if v.source.startswith("ecs/") and v.destination.startswith("ecs/")]
    assert page.js("document.querySelectorAll('#matrix td.cell').length") == len(ecs)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds network namespaces")
def test_graph_of_a_running_emulation(emu: Emu, browser: Browser, tmp_path: Path) -> None:
    """``--name``: the page of a running emulation is the page of its files."""
    example = REPO / "examples" / "quickstart"
    emu.up(example)
    html = tmp_path / "live.html"
    emu.acknet("graph", "-o", str(html))
    files = tmp_path / "files.html"
    assert run_graph([str(example)], None, None, None, None, None, str(files)) == 0

    def data(path: Path) -> dict[str, Any]:
        match = re.search(r"const DATA = (.*?);\n", path.read_text())
        assert match is not None
        found: dict[str, Any] = json.loads(match.group(1))
        return found

    live, planned = data(html), data(files)
    assert live["title"] == f"acknet: {emu.name}"
    assert {k: v for k, v in live.items() if k != "title"} == {
        k: v for k, v in planned.items() if k != "title"
    }
    page = _open(browser, html)
    assert page.js("document.body.dataset.ready") == "true"
    assert page.js("document.querySelectorAll('#matrix td.cell').length") == live["summary"]["verdicts"]


def _decode_png(data: bytes, pixels: bool = True) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and RGB pixels of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
    if not pixels:
        return width, height, []
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = previous[x]
            c = previous[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + a) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + b) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(line)
        previous = line
    return (
        width,
        height,
        [(line[x], line[x + 1], line[x + 2]) for line in rows for x in range(0, stride, channels)],
    )
