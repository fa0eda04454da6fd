"""Browser check: JupyterLab in a real (headless) Chromium runs notebook 02's widget explorer, a slider is
dragged with the mouse, and the widget's figure must change (issue #21, "Opening it").

Run it from the checkout's top folder, after ``make venv`` (about a minute on 2 CPU cores)::

    apt-get install -y chromium          # Debian's package, once; or pass --chromium PATH
    .venv/bin/python benchmarks/browser_check.py [--out figures/browser_check_02_widget.png]

What it does, step by step:

1. copies ``notebooks/02_roi_pool_vs_align.ipynb`` into a temporary folder, so that JupyterLab's autosave
   cannot rewrite the committed notebook, and points ``MRCNN_LITE_FIGURES_DIR`` there too, so the run leaves
   ``figures/`` alone (apart from the screenshot);
2. starts JupyterLab the way ``make lab`` does (the venv's ``python -m jupyterlab``, bound to 127.0.0.1,
   Jupyter's token kept: a random one, passed to the browser in the URL) on a free port, with its workspace
   and settings folders in the temporary folder, and the app object exposed to the page
   (``expose_app_in_browser``) so that the script can tell when the notebook has finished running;
3. starts headless Chromium and drives it over the Chrome DevTools Protocol (a websocket, through
   ``websocket-client``, which jupyter_server already depends on: no new dependency, no browser download);
4. opens the notebook, checks that it runs on the project's kernel ("Python 3 (mrcnn_lite)"), runs all
   cells (JupyterLab's own "Run All Cells" command) and waits for the widget explorer's figure;
5. drags the ``x0`` slider's handle to the right with real mouse events (press, move, release), waits for
   the kernel to redraw the figure, and fails unless both the slider's readout and the figure's image changed;
6. saves a screenshot of the browser window, scrolled to the widget, to ``--out``.

Exit status: 0 when the widget responded; 1 when it did not (or the notebook failed: the temporary folder,
with the logs and ``failure.png``, is then kept); 2 when JupyterLab or Chromium could not be started. The
last line printed is a one-line verdict with the run time. ``--drag-px 0`` (a "drag" that does not move the
handle) shows the failure path: it must exit 1.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import websocket

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "02_roi_pool_vs_align.ipynb"
SLIDER = "x0"  # the widget explorer's left box edge, in pixels (0 to 128)
DRAG_PX = 20  # how far the handle is dragged to the right, in screen pixels
VIEWPORT = (1400, 1050)


class CheckFailed(Exception):
    """The widget did not respond (or the notebook did not run): exit status 1."""


class SetupFailed(Exception):
    """JupyterLab or Chromium could not be started: exit status 2."""


class DevTools:
    """A minimal Chrome DevTools Protocol client: one page target, synchronous calls, events ignored."""

    def __init__(self, ws_url: str) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        """Send one command and return its result (the events that arrive meanwhile are dropped)."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise CheckFailed(f"{method}: {message['error']}")
                return message["result"]

    def js(self, expression: str):
        """Evaluate JavaScript in the page (awaiting a promise) and return its value as JSON."""
        result = self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True, timeout=60000
        )
        if "exceptionDetails" in result:
            raise CheckFailed(f"JavaScript error: {result['exceptionDetails'].get('exception', result)}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float):
        """Poll ``expression`` until it is truthy; return its value, or fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.5)
        raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}")

    def mouse(self, kind: str, x: float, y: float) -> None:
        """One left-button mouse event at (x, y) in CSS pixels: kind is Pressed, Moved or Released."""
        pressed = 0 if kind == "Released" else 1
        self.call("Input.dispatchMouseEvent", type=f"mouse{kind}", x=x, y=y, button="left", buttons=pressed)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen, name: str) -> None:
    """Wait until ``url`` answers (any HTTP status), or fail if ``proc`` exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SetupFailed(f"{name} exited with status {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise SetupFailed(f"{name} did not answer at {url.split('?')[0]} within {timeout:.0f} s")


def start_lab(work: Path, port: int, token: str) -> subprocess.Popen:
    """JupyterLab as ``make lab`` starts it (127.0.0.1, token kept), serving ``work``, on ``port``."""
    env = dict(
        os.environ,
        PYTHONHASHSEED="0",
        MPLCONFIGDIR=str(ROOT / ".venv" / "mplconfig"),
        MRCNN_LITE_FIGURES_DIR=str(work / "figures"),
        JUPYTER_CONFIG_DIR=str(work / "jupyter-config"),  # no user config can change the server's options
        JUPYTER_TOKEN=token,  # from the environment rather than the command line, which `ps` shows to all
    )
    command = [
        sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={work}",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--no-browser",
        "--LabApp.expose_app_in_browser=True",
        f"--LabApp.workspaces_dir={work / 'workspaces'}", f"--LabApp.user_settings_dir={work / 'settings'}",
    ]  # fmt: skip
    if hasattr(os, "getuid") and os.getuid() == 0:
        command.append("--allow-root")
    news = work / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text('{"fetchNews": "false"}')  # no "get Jupyter news?" toast over the screenshot
    log = open(work / "jupyterlab.log", "w")  # noqa: SIM115 (lives as long as the server)
    return subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)


def start_chromium(chromium: str, work: Path) -> tuple[subprocess.Popen, str]:
    """Headless Chromium with a fresh profile; returns the process and its first page's websocket URL."""
    profile = work / "chromium-profile"
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--no-default-browser-check", "--disable-dev-shm-usage",
        "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
        f"--user-data-dir={profile}", f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}", "about:blank",
    ]  # fmt: skip
    log = open(work / "chromium.log", "w")  # noqa: SIM115 (lives as long as the browser)
    try:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    except OSError as err:
        raise SetupFailed(f"cannot run {chromium}: {err}") from None
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while not (port_file.is_file() and port_file.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SetupFailed(f"Chromium did not start (see {work / 'chromium.log'})")
        time.sleep(0.2)
    port = int(port_file.read_text().split()[0])
    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
    pages = [t for t in targets if t.get("type") == "page"]
    if not pages:
        raise SetupFailed("Chromium has no page to drive")
    return proc, pages[0]["webSocketDebuggerUrl"]


# The notebook panel the URL opened (in the main area), and facts about it, read through the exposed app.
PANEL = (
    "(window.jupyterapp && [...window.jupyterapp.shell.widgets('main')]"
    ".find(w => w.context && w.context.path.endsWith('.ipynb')))"
)
NOTEBOOK_STATE = f"""(() => {{
  const panel = {PANEL};
  if (!panel || !panel.content || !panel.sessionContext || !panel.sessionContext.session) return null;
  const kernel = panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  const errors = cells.flatMap(c => c.model.outputs.toJSON().filter(o => o.output_type === 'error')
                                      .map(o => o.ename + ': ' + o.evalue));
  return {{kernel: kernel ? kernel.name : null, display: panel.sessionContext.kernelDisplayName,
          status: kernel ? kernel.status : null, code_cells: cells.length,
          executed: cells.filter(c => c.model.executionCount !== null).length, errors}};
}})()"""
# The explorer: its slider's handle and readout, its figure (the first image in its output).
WIDGET_STATE = f"""(() => {{
  const box = document.querySelector('.widget-interact');
  if (!box) return null;
  const slider = [...box.querySelectorAll('.widget-slider')]
      .find(s => s.querySelector('.widget-label')?.textContent.trim() === '{SLIDER}');
  const img = box.querySelector('.widget-output img, .jp-OutputArea-output img');
  if (!slider || !img || !img.complete || !img.src) return null;
  const r = slider.querySelector('.noUi-handle').getBoundingClientRect();
  const readout = slider.querySelector('.widget-readout');
  return {{handle: [r.x + r.width / 2, r.y + r.height / 2],
          readout: (readout.value ?? readout.textContent).trim(),
          img: img.src, size: [img.naturalWidth, img.naturalHeight]}};
}})()"""
SCROLL_TO_WIDGET = "document.querySelector('.widget-interact').scrollIntoView({block: 'start'}); true"


def open_and_run(cdp: DevTools, lab_url: str) -> dict:
    """Step 4: open the notebook, check its kernel, clear its outputs, Run All; returns its state."""
    screen = {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False}
    cdp.call("Emulation.setDeviceMetricsOverride", **screen)
    cdp.call("Emulation.setFocusEmulationEnabled", enabled=True)  # a headless page has no focus otherwise
    cdp.call("Page.navigate", url=lab_url)
    cdp.wait_for(f"!!({PANEL} && {PANEL}.sessionContext)", "JupyterLab to open the notebook", 120)
    cdp.js(f"{PANEL}.sessionContext.ready.then(() => true)")
    state = cdp.wait_for(f"(s => s && s.status === 'idle' && s)({NOTEBOOK_STATE})", "the kernel", 120)
    if state["kernel"] != "python3" or "mrcnn_lite" not in state["display"]:
        raise CheckFailed(f"the notebook runs on {state['kernel']!r} ({state['display']}), not mrcnn_lite's")
    cdp.js(f"window.jupyterapp.shell.activateById({PANEL}.id); window.jupyterapp.shell.collapseLeft(); true")
    # The committed notebook carries outputs: clear them (and the execution counts), so that "every code cell
    # has a count" below means this kernel ran it. Run All stops at the first cell that raises.
    cdp.js("window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs').then(() => true)")
    cdp.wait_for(f"({NOTEBOOK_STATE}).executed === 0", "the outputs to clear", 30)
    cdp.js("window.jupyterapp.commands.execute('notebook:run-all-cells'); true")
    done = "s.status === 'idle' && (s.errors.length || s.executed === s.code_cells)"
    state = cdp.wait_for(f"(s => s && {done} && s)({NOTEBOOK_STATE})", "the notebook's cells to run", 600)
    if state["errors"]:
        raise CheckFailed(f"the notebook stopped on an error: {state['errors'][0]}")
    return state


def drag_slider(cdp: DevTools, drag_px: float) -> tuple[dict, dict, float]:
    """Step 5: drag the slider's handle ``drag_px`` to the right; returns the widget's state before and
    after, and the seconds from the mouse's release to the new figure (the kernel reruns ``explore``)."""
    cdp.js(SCROLL_TO_WIDGET)
    time.sleep(1.0)  # let the windowed notebook lay the cells out where they now are
    before = cdp.wait_for(WIDGET_STATE, "the widget explorer's figure", 60)
    (x, y) = before["handle"]
    cdp.mouse("Moved", x, y)
    cdp.mouse("Pressed", x, y)
    for step in range(1, 11):
        cdp.mouse("Moved", x + drag_px * step / 10, y)
        time.sleep(0.03)
    cdp.mouse("Released", x + drag_px, y)
    released = time.monotonic()
    changed = f"(s => s && s.img !== {json.dumps(before['img'])} && s)({WIDGET_STATE})"
    try:
        after = cdp.wait_for(changed, "the figure to change", 60)
    except CheckFailed as err:
        now = (cdp.js(WIDGET_STATE) or {}).get("readout")
        raise CheckFailed(f"{err}; {SLIDER} reads {now!r} (was {before['readout']!r})") from None
    if after["readout"] == before["readout"]:
        raise CheckFailed(f"the figure changed but the {SLIDER} slider still reads {before['readout']}")
    return before, after, time.monotonic() - released


def run_check(cdp: DevTools, lab_url: str, out: Path, drag_px: float = DRAG_PX) -> dict:
    """Steps 4 to 6 of the module docstring; returns what was measured, or raises CheckFailed."""
    started = time.monotonic()
    state = open_and_run(cdp, lab_url)
    ran = time.monotonic()
    before, after, redraw_s = drag_slider(cdp, drag_px)
    # Clicking the slider made its cell the active one, and JupyterLab scrolled to the cell's top: bring the
    # widget back to the top of the window for the screenshot.
    cdp.js(SCROLL_TO_WIDGET)
    time.sleep(1.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"]))
    figure = [hashlib.sha256(w["img"].encode()).hexdigest()[:12] for w in (before, after)]
    return {
        "kernel": state["display"], "cells_run": state["executed"], "open_and_run_s": round(ran - started, 1),
        "slider": SLIDER, "readout": [before["readout"], after["readout"]], "figure_sha256_12": figure,
        "figure_px": after["size"], "release_to_new_figure_s": round(redraw_s, 1),
    }  # fmt: skip


def stop(proc: subprocess.Popen | None) -> None:
    """Stop a process this script started (SIGTERM, then SIGKILL after 10 s)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the check, print the verdict; the exit status is described above."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "figures" / "browser_check_02_widget.png")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, the copy)")
    parser.add_argument(
        "--drag-px", type=float, default=DRAG_PX, help="how far to drag (0 tests the failure path: exit 1)"
    )
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    if not args.chromium:
        print("browser check: no Chromium found (apt-get install -y chromium, or --chromium PATH)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="mrcnn-lite-browser-check-"))
    shutil.copy2(NOTEBOOK, work / NOTEBOOK.name)
    lab = browser = cdp = None
    status, verdict = 1, ""
    try:
        port, token = free_port(), secrets.token_hex(24)
        lab = start_lab(work, port, token)
        wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", 120, lab, "JupyterLab")
        browser, ws_url = start_chromium(args.chromium, work)
        cdp = DevTools(ws_url)
        url = f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK.name}?token={token}"
        result = run_check(cdp, url, args.out, args.drag_px)
        print(json.dumps(result, indent=1))
        status, verdict = 0, f"the widget responded; screenshot {args.out}"
    except SetupFailed as err:
        status, verdict = 2, f"setup failed: {err}"
    except (CheckFailed, websocket.WebSocketException, OSError) as err:
        status, verdict = 1, f"FAILED: {err}"
        with contextlib.suppress(Exception):  # what the browser showed when it failed, for the log's reader
            (work / "failure.png").write_bytes(base64.b64decode(cdp.call("Page.captureScreenshot")["data"]))
    finally:
        if cdp is not None:
            cdp.ws.close()
        stop(browser)
        stop(lab)
        if args.keep or status:
            print(f"logs and the notebook copy: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"browser check: {verdict} ({time.monotonic() - t0:.0f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
