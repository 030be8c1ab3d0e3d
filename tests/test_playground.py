"""The playground in a real browser: Debian's Chromium driven by Playwright, against the real server.

The tests share one signed-in page and run in file order, like a person's session: each leaves
the page as the next expects it. Screenshots go to test-artifacts/ (kept by CI as artifacts).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Frame, Page, expect, sync_playwright

from tests.conftest import ROOT, Server

CHROMIUM = Path("/usr/bin/chromium")
EXECUTED = re.compile(r"\[\d+\]")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The machine running the suite may be busy: give the page time before calling it broken.
expect.set_options(timeout=15_000)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (make install adds it)"
)


class Session:
    """One browser tab on the playground, plus every URL it asked for."""

    def __init__(self, page: Page, server) -> None:
        self.page = page
        self.server = server
        self.requests: list[str] = []
        self.problems: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("console", self._console)
        page.on("dialog", lambda dialog: dialog.accept())

    def _console(self, message) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.problems.append(message.text)

    def cell(self, index: int = -1):
        return self.page.locator(".notebook:visible .cell").nth(index)

    def run(self, code: str, *, wait: bool = True):
        """Type ``code`` into the last cell and run it with Shift+Enter; returns that cell."""
        cells = self.page.locator(".notebook:visible .cell")
        cell = cells.nth(cells.count() - 1)
        editor = cell.locator(".cm-content")
        editor.click()
        self.page.keyboard.press("Control+a")
        self.page.keyboard.insert_text(code)
        self.page.keyboard.press("Shift+Enter")
        if wait:
            expect(cell.locator(".count")).to_have_text(EXECUTED, timeout=30_000)
        return cell

    def frame_of(self, cell) -> Frame:
        handle = cell.locator("iframe.output-frame").last.element_handle()
        frame = handle.content_frame()
        assert frame is not None
        return frame

    def create_context(self, language: str) -> str:
        before = set(self.context_ids())
        self.page.select_option("#new-language", language)
        self.page.click("#new-context button[type=submit]")
        expect(self.page.locator("#contexts .select")).to_have_count(len(before) + 1)
        (new,) = set(self.context_ids()) - before
        expect(self.page.locator("#current")).to_contain_text(new)
        return new

    def file_row(self, path: str):
        name = self.page.locator(".name", has_text=re.compile(f"^{re.escape(path)}$"))
        return self.page.locator("#files .file").filter(has=name)

    def context_ids(self) -> list[str]:
        return self.page.locator("#contexts .select").evaluate_all("els => els.map(e => e.title)")


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    # A server of its own: the page opens the contexts it finds, and these tests expect none.
    server = Server().start()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="cellbox-chromium-"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 860},
            accept_downloads=True,
        )
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            page.set_default_timeout(15_000)
            yield Session(page, server)
        finally:
            browser.close()
            server.stop()
            server.cleanup()


def test_sign_in_keeps_the_token_in_session_storage_only(session):
    page, server = session.page, session.server
    page.goto(server.url + "/")
    expect(page.locator("#token")).to_be_focused()
    page.keyboard.type("not-the-token")
    page.keyboard.press("Enter")
    expect(page.locator("#signin-error")).to_contain_text("not right")
    page.fill("#token", server.token)
    page.keyboard.press("Enter")
    # Signed in: a Python context was made and the cursor waits in its first cell.
    expect(page.locator(".notebook:visible .cell .cm-content")).to_be_focused()
    expect(page.locator("#current")).to_contain_text("python")
    assert page.evaluate("sessionStorage.getItem('cellbox-token')") == server.token
    assert page.evaluate("localStorage.length") == 0
    assert server.token not in page.url
    assert not any(server.token in url for url in session.requests)


def test_shift_enter_runs_and_moves_on_with_the_keyboard(session):
    page = session.page
    page.keyboard.type("answer = 6 * 7")
    page.keyboard.press("Shift+Enter")
    expect(session.cell(0).locator(".count")).to_have_text("[1]")
    # Shift+Enter made a second cell and put the cursor in it.
    expect(session.cell(1).locator(".cm-content")).to_be_focused()
    page.keyboard.type("answer")
    page.keyboard.press("Shift+Enter")
    expect(session.cell(1).locator(".output")).to_have_text("42")
    expect(session.cell(1).locator(".count")).to_have_text("[2]")
    # Python is highlighted: the keyword gets a styled token of its own.
    session.run("def f():\n    return 'x'")
    keyword = session.cell(2).locator(".cm-line span", has_text="def")
    assert keyword.evaluate("e => getComputedStyle(e).color") != keyword.locator("..").evaluate(
        "e => getComputedStyle(e).color"
    )
    # Escape then Tab leaves the editor for the cell's next control.
    session.cell(-1).locator(".cm-content").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('.cm-editor')") is None


def test_printed_lines_appear_while_the_cell_still_runs(session):
    cell = session.run(
        "import time\nprint('tick 0', flush=True)\ntime.sleep(3)\nprint('tick 1')", wait=False
    )
    expect(cell.locator(".output .stdout")).to_have_text("tick 0", timeout=5_000)
    assert "running" in cell.get_attribute("class")
    expect(cell.locator(".count")).to_have_text("[*]")
    expect(cell.locator(".output .stdout")).to_have_text("tick 0\ntick 1", timeout=10_000)
    expect(cell.locator(".count")).to_have_text(EXECUTED)


def test_pandas_table_and_matplotlib_plot_render(session):
    cell = session.run(
        "import pandas as pd, matplotlib.pyplot as plt\n"
        "plt.plot([1, 3, 2]); plt.title('rising')\n"
        "pd.DataFrame({'city': ['Oslo', 'Lima'], 'people': [709000, 10_000_000]})"
    )
    frame = session.frame_of(cell)
    table = frame.locator("table")
    expect(table).to_contain_text("Lima")
    expect(table.locator("th", has_text="people")).to_be_visible()
    assert frame.locator("td", has_text="10000000").count() == 1
    # The frame grew to the table's height.
    assert cell.locator("iframe.output-frame").bounding_box()["height"] > 60
    image = cell.locator(".output img")
    expect(image).to_be_visible()
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert image.evaluate("img => img.naturalWidth") > 100


def test_error_shows_its_traceback(session):
    cell = session.run("def broken():\n    return 1 / 0\n\nbroken()")
    error = cell.locator(".output .error")
    expect(error.locator("strong")).to_have_text("ZeroDivisionError: division by zero")
    expect(error.locator(".traceback")).to_contain_text("in broken")
    expect(error.locator(".traceback")).to_contain_text("Traceback (most recent call last)")


def test_interrupt_stops_an_endless_loop_and_keeps_state(session):
    cell = session.run("n = 0\nwhile True:\n    n += 1", wait=False)
    expect(cell.locator(".stop")).to_be_visible()
    session.page.click("#interrupt")
    expect(cell.locator(".output .error strong")).to_contain_text("KeyboardInterrupt")
    expect(cell.locator(".stop")).to_be_hidden()
    cell = session.run("answer, n > 0")
    expect(cell.locator(".output")).to_have_text("(42, True)")


def test_timeout_field_bounds_an_execution(session):
    page = session.page
    page.fill("#timeout", "1")
    cell = session.run("import time\ntime.sleep(5)")
    expect(cell.locator(".output .error strong")).to_contain_text("TimeoutError")
    page.fill("#timeout", "30")


def test_a_cell_can_be_edited_and_run_again(session):
    cell = session.run("'first'")
    expect(cell.locator(".output")).to_have_text("'first'")
    cell.locator(".cm-content").click()
    session.page.keyboard.press("Control+a")
    session.page.keyboard.insert_text("'second'")
    cell.locator("button.run").click()
    expect(cell.locator(".output")).to_have_text("'second'")


def test_html_output_cannot_read_the_page_storage_or_token(session):
    probe = (
        "<p id='probe'>not run</p><script>\n"
        "const seen = [];\n"
        "for (const [name, get] of [['local', () => localStorage.getItem('cellbox-token')],\n"
        "    ['session', () => sessionStorage.getItem('cellbox-token')],\n"
        "    ['parent', () => parent.sessionStorage.getItem('cellbox-token')],\n"
        "    ['parent-dom', () => parent.document.body.innerHTML]]) {\n"
        "  try { seen.push(name + '=' + get()); } catch (e) { seen.push(name + ':' + e.name); }\n"
        "}\n"
        "document.getElementById('probe').textContent = seen.join(' ');\n"
        "</script>"
    )
    cell = session.run(f"from IPython.display import HTML\nHTML({probe!r})")
    frame = session.frame_of(cell)
    probe_text = frame.locator("#probe")
    # The script ran, and every way to the page's storage and DOM was refused.
    expect(probe_text).to_have_text(
        "local:SecurityError session:SecurityError parent:SecurityError parent-dom:SecurityError"
    )
    assert cell.locator("iframe").get_attribute("sandbox") == "allow-scripts"
    assert session.server.token not in frame.content()


def test_markdown_json_and_svg_items_render(session):
    cell = session.run(
        "from IPython.display import Markdown, JSON, SVG, display\n"
        "display(Markdown('# Title\\n\\n*some* **bold** text'))\n"
        "display(JSON({'a': [1, 2]}))\n"
        'SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
        '<rect width="40" height="20" fill="teal"/></svg>\')'
    )
    expect(session.frame_of(cell).locator("h1")).to_have_text("Title")
    expect(cell.locator(".output pre.json")).to_contain_text('"a": [')
    svg = cell.locator(".output img[alt]").last
    assert svg.get_attribute("src").startswith("blob:")
    expect(svg).to_be_visible()


def test_plotly_figure_renders_from_its_json(session):
    figure = {
        "data": [{"type": "bar", "x": ["north", "south"], "y": [3, 5]}],
        "layout": {"title": {"text": "bars"}},
    }
    cell = session.run(
        "from IPython.display import display\n"
        f"display({{'application/vnd.plotly.v1+json': {figure!r}, 'text/plain': 'Figure'}}, raw=True)"
    )
    plot = session.frame_of(cell).locator(".plot")
    expect(plot.locator(".main-svg").first).to_be_visible()
    expect(plot.locator(".point")).to_have_count(2)
    expect(plot.locator(".gtitle")).to_have_text("bars")


def test_upload_a_csv_with_the_file_chooser_then_read_it(session, tmp_path):
    page = session.page
    prices = tmp_path / "prices.csv"
    prices.write_text("item,price\napple,3\npear,4\n")
    with page.expect_file_chooser() as chooser:
        page.click("#choose")
    chooser.value.set_files(prices)
    row = session.file_row("prices.csv")
    expect(row.locator(".meta")).to_have_text("26 B")
    cell = session.run("import pandas as pd\nint(pd.read_csv('prices.csv')['price'].sum())")
    expect(cell.locator(".output")).to_have_text("7")


def test_drop_files_onto_the_panel(session):
    page = session.page
    dropped = page.evaluate_handle(
        """() => {
            const transfer = new DataTransfer();
            transfer.items.add(new File(["x\\n1\\n"], "dropped.csv", {type: "text/csv"}));
            return transfer;
        }"""
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
    expect(session.file_row("dropped.csv")).to_be_visible()
    cell = session.run("open('dropped.csv').read()")
    expect(cell.locator(".output")).to_have_text("'x\\n1\\n'")


def test_download_and_delete_a_file_the_code_wrote(session):
    page = session.page
    session.run(
        "import os\nos.makedirs('out', exist_ok=True)\nopen('out/report.txt', 'w').write('made in a cell\\n')"
    )
    row = session.file_row("out/report.txt")
    with page.expect_download() as download:
        row.locator("button", has_text="Download").click()
    assert download.value.suggested_filename == "report.txt"
    assert Path(download.value.path()).read_text() == "made in a cell\n"
    row.locator("button", has_text="Delete").click()
    expect(row).to_have_count(0)
    cell = session.run("os.path.exists('out/report.txt')")
    expect(cell.locator(".output")).to_have_text("False")


def test_typescript_context_and_switching_back(session):
    page = session.page
    python_id = session.context_ids()[0]
    ts_id = session.create_context("typescript")
    expect(page.locator("#current")).to_contain_text("typescript")
    expect(page.locator(".notebook:visible .cell")).to_have_count(1)
    cell = session.run(
        "interface Point { x: number; y: number }\n"
        "const p: Point = { x: 40, y: 2 };\n"
        "console.log('sum is', p.x + p.y);\n"
        "console.error('to stderr');\n"
        "p"
    )
    expect(cell.locator(".output .stdout")).to_have_text("sum is 42")
    expect(cell.locator(".output .stderr")).to_have_text("to stderr")
    expect(cell.locator(".output .item")).to_have_text("{ x: 40, y: 2 }")
    assert cell.locator(".cm-line span", has_text="interface").count() == 1
    cell = session.run("throw new Error('ts failure')")
    expect(cell.locator(".output .error strong")).to_have_text("Error: ts failure")

    # Back to the Python context: its cells are still there, and so is its state.
    page.click(f"#contexts .select[title='{python_id}']")
    expect(page.locator("#current")).to_contain_text(python_id)
    expect(session.cell(0).locator(".count")).to_have_text("[1]")
    cell = session.run("answer + 1")
    expect(cell.locator(".output")).to_have_text("43")
    # And forth again: the TypeScript cells stayed too.
    page.click(f"#contexts .select[title='{ts_id}']")
    expect(session.cell(0).locator(".output .stdout")).to_have_text("sum is 42")


def test_restart_and_delete_a_context(session):
    page = session.page
    ts_id = session.context_ids()[1]
    page.click(f"#contexts button[aria-label='Restart context {ts_id}']")
    expect(page.locator("#status")).to_contain_text("Restarted")
    cell = session.run("typeof p")
    expect(cell.locator(".output")).to_have_text("'undefined'")
    page.click(f"#contexts button[aria-label='Delete context {ts_id}']")
    expect(page.locator("#contexts .select")).to_have_count(1)
    expect(page.locator("#current")).to_contain_text("python")
    with session.server.client() as client:
        assert client.get(f"/contexts/{ts_id}").status_code == 404


def test_cells_of_a_vanished_context_are_kept_and_can_run_again(session):
    page = session.page
    python_id = session.context_ids()[0]
    # The context goes away behind the page's back (as idle reaping or another client does).
    with session.server.client() as client:
        assert client.delete(f"/contexts/{python_id}").status_code == 204
    cell = session.run("answer", wait=False)
    expect(cell.locator(".output .error")).to_contain_text("not found")
    row = page.locator("#contexts .context.gone")
    expect(row.locator(".select")).to_contain_text("(gone)")
    expect(session.cell(0).locator(".cm-content")).to_have_text("answer = 6 * 7")
    row.locator("button", has_text="New").click()
    expect(page.locator("#contexts .context.gone")).to_have_count(0)
    session.cell(0).locator("button.run").click()
    expect(session.cell(0).locator(".count")).to_have_text("[1]")
    cell.locator("button.run").click()
    expect(cell.locator(".output")).to_have_text("42")


SHOWCASE = """import pandas as pd
sales = pd.read_csv("sales.csv")
for row in sales.itertuples():
    print(f"{row.month}: {row.sales}")
sales.plot(x="month", y="sales", kind="bar", legend=False, figsize=(5, 2.4), rot=0)
sales"""


def test_screenshots_of_the_main_view(session, tmp_path):
    page = session.page
    session.create_context("typescript")
    session.create_context("python")
    csv = tmp_path / "sales.csv"
    csv.write_text("month,sales\nJan,120\nFeb,135\nMar,160\nApr,152\n")
    with page.expect_file_chooser() as chooser:
        page.click("#choose")
    chooser.value.set_files(csv)
    expect(session.file_row("sales.csv")).to_be_visible()
    cell = session.run(SHOWCASE)
    expect(cell.locator(".output img")).to_be_visible()
    expect(session.frame_of(cell).locator("table")).to_contain_text("Apr")
    session.cell(-1).locator(".cm-content").click()
    page.keyboard.insert_text("sales.sales.mean()")
    page.locator("#notebooks").evaluate("main => main.scrollTo(0, 0)")
    page.screenshot(path=ARTIFACTS / "playground.png")
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        # Phone-sized: nothing sticks out sideways; the panel opens as a drawer.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        expect(page.locator("#panel")).to_be_hidden()
        page.click("#panel-toggle")
        expect(page.locator("#panel")).to_be_visible()
        expect(page.locator("#panel-toggle")).to_have_attribute("aria-expanded", "true")
        page.click("#panel-toggle")
        page.screenshot(path=ARTIFACTS / "playground-phone.png")
    finally:
        page.set_viewport_size({"width": 1280, "height": 860})


def test_no_request_left_the_server_and_no_csp_violation(session):
    origin = session.server.url + "/"
    outside = [
        url for url in session.requests if not url.startswith((origin, "data:", "blob:", "about:"))
    ]
    assert outside == []
    assert session.problems == []
