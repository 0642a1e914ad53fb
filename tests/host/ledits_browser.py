"""The browser side of test_browser.py: chromium lookup, console filtering and one Page wrapper
(test-only module, reached through conftest's sys.path entry under this unique name)."""
import os
import pathlib
import shutil
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
VIEWPORT = {"width": 1600, "height": 1000}

EXTENSION = "ledits_pp.previews"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# console lines the front end prints on an offline CPU host (host_testing.md §9); ours never match these
NOISE = ("favicon", "user.css", "comfy.templates.json", "api.comfy.org", "huggingface.co", "Content Security Policy",
         "Failed to load resource", "graph accessed before initialization", "reading 'id'")


def find_chromium():
    for candidate in (os.environ.get("LEDITS_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and pathlib.Path(candidate).exists():
            return candidate
    return None


def mentions_pack(text):
    low = text.lower()
    return "ledits" in low or EXTENSION in low


class Browser:
    """One page on the server's front end, with console capture and artifact helpers."""

    def __init__(self, page, server, artifacts):
        self.page, self.server, self.artifacts = page, server, artifacts
        self.console = []
        page.on("console", lambda m: self.console.append((m.type, m.text, (m.location or {}).get("url", ""))))
        page.on("pageerror", lambda e: self.console.append(("pageerror", str(e), getattr(e, "stack", "") or "")))

    def js(self, expression, arg=None):
        return self.page.evaluate(expression, arg)

    def shot(self, name, clip=None):
        path = self.artifacts / f"{name}.png"
        self.page.screenshot(path=str(path), clip=clip)
        return path

    def pack_errors(self, since=0):
        """Console errors/warnings raised by this pack's extension or mentioning it."""
        return [(kind, text, where) for kind, text, where in self.console[since:]
                if kind in ("error", "pageerror", "warning") and (mentions_pack(text) or mentions_pack(where))
                and not any(n in text for n in NOISE)]

    def load_ui_workflow(self, workflow, name):
        self.js("async ([wf, name]) => { await app.loadGraphData(wf, true, true, name); }", [workflow, name])
        self.page.wait_for_timeout(300)

    def queue_from_front_end(self, timeout=60):
        """Press Run (app.queuePrompt, the button's code path); the new prompt's id on the server."""
        before = set(self.server.get_json("/history"))
        self.js("async () => { await app.queuePrompt(0, 1); }")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = set(self.server.get_json("/history?max_items=5")) - before
            if new:
                return new.pop()
            queue = self.server.get_json("/queue")
            running = queue["queue_running"] + queue["queue_pending"]
            if running:
                return running[0][1]
            time.sleep(0.3)
        raise AssertionError("the front end did not queue the prompt")

    def load_api_prompt(self, api, name):
        self.js("async ([api, name]) => { await app.loadApiJson(api, name); }", [api, name])
        self.page.wait_for_timeout(300)

    def frame_node(self, node_type, left=460, top=150):
        """Zoom 1, the node's top-left at (left, top) of the canvas; returns its screen box."""
        return self.js("""([type, left, top]) => {
            const n = app.graph.nodes.find(n => n.type === type);
            const ds = app.canvas.ds;
            ds.scale = 1; ds.offset[0] = -n.pos[0] + left; ds.offset[1] = -n.pos[1] + top;
            app.canvas.setDirty(true, true);
            const r = app.canvas.canvas.getBoundingClientRect();
            const title = (window.LiteGraph || {}).NODE_TITLE_HEIGHT || 30;
            return {x: r.left + left, y: r.top + top - title, width: n.size[0], height: n.size[1] + title,
                    canvasLeft: r.left, canvasTop: r.top, title};
        }""", [node_type, left, top])


def open_browser(server):
    """A page on the server's front end (a module-scoped fixture in the browser test files); skips
    with one loud line when chromium or playwright is missing."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("BROWSER TESTS SKIPPED: no chromium found (apt-get install chromium; or set LEDITS_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("BROWSER TESTS SKIPPED: the playwright Python package is missing from this host's venv "
                    "(pip install playwright; never run `playwright install`, the system chromium is used)")
    version = server.get_json("/system_stats")["system"].get("comfyui_version", "unknown")
    artifacts = REPO / "test-artifacts" / f"browser-{version}"
    artifacts.mkdir(parents=True, exist_ok=True)
    for setting, value in (("Comfy.TutorialCompleted", True), ("Comfy.Minimap.Visible", False)):
        server.request(f"/settings/{setting}", value)
    started = time.monotonic()
    with sync_playwright() as playwright:
        chrome = playwright.chromium.launch(executable_path=chromium, args=FLAGS, headless=True)
        try:
            context = chrome.new_context(viewport=VIEWPORT, device_scale_factor=1)
            local = server.url
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(local)
                          else route.abort())
            page = context.new_page()
            b = Browser(page, server, artifacts)
            page.goto(server.url)
            page.wait_for_function("window.app && window.app.graph && window.app.canvas", timeout=60000)
            page.keyboard.press("Escape")
            page.wait_for_function("app.extensions && app.extensions.length > 0", timeout=30000)
            b.version = version
            b.ready_s = time.monotonic() - started
            yield b
        finally:
            (artifacts / "console.log").write_text("\n".join(f"{k}: {t} [{w}]" for k, t, w in b.console))
            chrome.close()
