"""report.html in a real headless Chromium (Debian's chromium + chromedriver, driven by selenium).

It must load without console errors, its charts must hold the run's candles and markers (read
back from the plotly graph divs in the page), and what it draws must not be blank.
`tests/setup_browser.sh` installs the browser; without it this module is skipped, saying why.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip(
        f"{CHROMIUM} and {CHROMEDRIVER} are needed (Debian packages chromium, chromium-driver; "
        "run tests/setup_browser.sh as root)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install -e .[dev])"
)

from scalper import backtest as bt  # noqa: E402
from scalper.config import Config, default_document  # noqa: E402
from scalper.html_report import MARKER_TRACES, chart_id, write_report  # noqa: E402
from scalper.run_dir import write_backtest  # noqa: E402

WINDOW = 600  # candles per symbol on the page under test

# every console error and uncaught exception, kept by the page itself from its first script on
_CAPTURE_ERRORS = """
window.__errors = [];
window.addEventListener('error', e => window.__errors.push('error: ' + e.message));
window.addEventListener('unhandledrejection', e => window.__errors.push('rejection: ' + e.reason));
const _err = console.error.bind(console);
console.error = (...a) => { window.__errors.push('console.error: ' + a.join(' ')); _err(...a); };
"""

_TRACES = """
const gd = document.getElementById(arguments[0]);
if (!gd || !gd._fullData) return null;
return gd._fullData.map(t => ({
  name: t.name, type: t.type,
  n: t.type === 'candlestick' ? t.open.length : (t.x ? t.x.length : 0),
  points: t.x ? Array.from(t.x).filter(v => v !== null && v !== undefined).length : 0,
}));
"""


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> Path:
    doc = default_document()
    doc["symbols"] = ["AAA", "BBB"]
    doc["feed"]["synthetic"]["minutes"] = 1440
    cfg = msgspec.convert(doc, Config)
    data = {s: bt.prepare(s, b, cfg) for s, b in bt.load_bars(cfg, synthetic=True).items()}
    engine = bt.Backtest(cfg)
    result = engine.run(data)
    out = tmp_path_factory.mktemp("browser") / "run"
    write_backtest(out, engine, result, data)
    write_report(out, max_candles=WINDOW)
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium-manager look for downloads
    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _CAPTURE_ERRORS})
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def loaded(browser, report_page):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get((report_page / "report.html").as_uri())
    WebDriverWait(browser, 60).until(
        lambda d: d.execute_script(
            "return [...document.querySelectorAll('.plotly-graph-div')].every(g => g._fullLayout"
            " && g.querySelector('.main-svg'));"
        )
    )
    return browser


def test_the_report_loads_without_console_errors(loaded):
    errors = loaded.execute_script("return window.__errors;")
    severe = [e for e in loaded.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [] and severe == [], (errors, severe)
    assert loaded.execute_script("return typeof Plotly") == "object"  # the inlined plotly.js ran


def test_each_chart_holds_the_runs_candles_and_markers(loaded, report_page):
    signals = pd.read_parquet(report_page / "signals.parquet")
    trades = pd.read_parquet(report_page / "trades.parquet")
    bars = pd.read_parquet(report_page / "bars_with_indicators.parquet")
    for sym in ("AAA", "BBB"):
        traces = loaded.execute_script(_TRACES, chart_id(sym))
        assert traces is not None, f"no plotly graph for {sym}"
        by = {t["name"]: t for t in traces}
        assert set(MARKER_TRACES) <= set(by)
        assert by["candles"]["type"] == "candlestick"
        assert by["candles"]["n"] == WINDOW
        first = int(bars[bars["symbol"] == sym]["timestamp"].astype("int64").iloc[-WINDOW])
        sig = signals[(signals["symbol"] == sym) & (signals["ts"] >= first)]
        tr = trades[trades["symbol"] == sym]
        assert by["signals accepted"]["n"] == int(sig["approved"].sum())
        assert by["signals refused"]["n"] == int((~sig["approved"]).sum())
        assert by["signals accepted"]["n"] + by["signals refused"]["n"] > 0
        assert by["entries"]["n"] == int((tr["entry_ts"] >= first).sum())
        assert by["exits"]["n"] == int((tr["exit_ts"] >= first).sum())
        held = int((tr["exit_ts"] >= first).sum())
        assert by["stops"]["points"] == by["targets"]["points"] == 2 * held


def test_the_rendered_chart_is_not_blank(loaded):
    from PIL import Image
    from selenium.webdriver.common.by import By

    loaded.execute_script("document.getElementById(arguments[0]).scrollIntoView();", chart_id("AAA"))
    png = loaded.find_element(By.ID, chart_id("AAA")).screenshot_as_png
    img = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
    assert img.shape[0] > 300 and img.shape[1] > 300
    assert img.std() > 10.0  # a blank (all white) chart has ~0 variance
    # candles draw in several distinct tones (up/down bodies, lines, markers, grid, text)
    assert len(np.unique(img.astype(np.uint8))) > 20


def test_the_page_needs_no_network(loaded):
    # every resource the page asked for came from the file itself (no http/https requests)
    urls = loaded.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    assert [u for u in urls if u.startswith(("http:", "https:"))] == []
