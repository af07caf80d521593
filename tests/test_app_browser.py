"""End-to-end: the real ``xlt-app`` in a real headless browser (Debian's Chromium + Playwright).

Starts ``xlt-app --headless --port <free port> --models-dir <fixture dir>`` as a
subprocess, opens the Predict page, makes a prediction through the UI (clears the
targets, types a language name, picks it), checks the number the page shows against
the predictor's own answer, and saves a screenshot to ``artifacts/`` for CI.

Skips only when Chromium is absent and CI is not 'true'; under ``CI=true`` a missing
browser (or Playwright) is a failure, so a green CI run always means the browser ran.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.screenshots import capture, find_chromium, launch_browser, running_app, wait_idle
from test_app import build_app_models

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts"
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = find_chromium()
    if exe is None:
        msg = ("Chromium not found (/usr/bin/chromium): install Debian's package with "
               "`apt-get install chromium chromium-driver` (.ci/run does)")
        if IN_CI:
            pytest.fail(f"CI=true: {msg}")
        pytest.skip(msg)
    return exe


@pytest.fixture(scope="module")
def browser_models(tmp_path_factory: pytest.TempPathFactory, published_dir: Path) -> Path:
    return build_app_models(tmp_path_factory.getbasetemp() / "xlt_app_models", published_dir)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_predict_in_a_real_browser(chromium: str, browser_models: Path) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # a declared test dependency: never skipped silently
        pytest.fail("playwright is not installed: pip install '.[test]'")
    from predictor.serving import load_predictor

    expected = load_predictor(browser_models / "predictor").predict_one(
        "me5-small", "probe", {"en": 2490}, "bzd")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser_predict.png"
    with running_app(browser_models) as url, sync_playwright() as pw:
        browser = launch_browser(pw, chromium)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/Predict", wait_until="domcontentloaded")
            wait_idle(page)
            assert page.get_by_role("heading", name="Predict").count() >= 1
            assert not page.locator('[data-testid="stException"]').count()

            targets = page.locator('[data-testid="stMultiSelect"]').filter(
                has_text="Target languages")
            targets.get_by_role("button", name="Clear all").click()
            wait_idle(page)
            assert "Choose one or more target languages" in page.locator(
                '[data-testid="stAlert"]').first.inner_text()

            box = targets.locator("input")
            box.click()
            box.fill("Bribri")
            page.get_by_role("option", name="Bribri (bzd)").click()
            page.keyboard.press("Escape")
            wait_idle(page)

            metrics = page.locator('[data-testid="stMetric"]')
            mean = metrics.filter(has_text="Mean predicted").locator(
                '[data-testid="stMetricValue"]').inner_text()
            measured = metrics.filter(has_text="Measured targets").locator(
                '[data-testid="stMetricValue"]').inner_text()
            capture(page, shot)
            assert float(mean) == pytest.approx(round(expected["prediction"], 1))
            assert measured.strip() == "1 of 1"
            assert page.locator(".vega-embed canvas, .vega-embed svg").count() >= 2
            assert not page.locator('[data-testid="stException"]').count()
        finally:
            browser.close()
    assert shot.is_file() and shot.stat().st_size > 10_000
