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


SHIPPED = REPO / "models"
INTERNAL_NAMES = ("mm_mean", "mm_class_mean", "unseen_family", "unseen_target", "lasso(",
                  "base=mm", "prof_src_entropy_mean", "Regressor ")


def _user_profiles(base: Path) -> Path:
    """A user profiles directory with one Basque profile whose pairs did not look like NLI
    pairs (Swahili's numbers relabelled: no encoder runs)."""
    import json
    prof = json.loads((SHIPPED / "profiles" / "me5-small" / "sw.json").read_text("utf-8"))
    prof.update({"language": "eu", "iso639_3": "eus", "name": "Basque",
                 "pairs_check": {"looks_like_nli": False, "pairing": 0.5,
                                 "why": "premises and hypotheses are unrelated"}})
    out = base / "profiles" / "me5-small"
    out.mkdir(parents=True, exist_ok=True)
    (out / "eu.json").write_text(json.dumps(prof), encoding="utf-8")
    return base / "profiles"


def _main_text(page) -> str:
    """Everything the page shows, table cells included (the grids keep an accessible copy
    of their visible cells in the DOM)."""
    return page.locator('[data-testid="stMainBlockContainer"]').text_content() or ""


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_first_use_pages_in_a_real_browser(chromium: str, tmp_path: Path) -> None:
    """The pages issue #24 touched, on the shipped models with a user profiles directory
    (``xlt-app --profiles``): Home names the profiles and the probe; Predict reads the
    user's Basque profile, flags its pairs and shows no literal None; Recommend shows the
    basis and the interval level; Features computes permutation importance in seconds with
    a progress bar, explains the partial dependence of k, and names nothing internal."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install '.[test]'")
    profiles = _user_profiles(tmp_path)
    ARTIFACTS.mkdir(exist_ok=True)
    with running_app(SHIPPED, profiles=profiles) as url, sync_playwright() as pw:
        browser = launch_browser(pw, chromium)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, wait_until="domcontentloaded")
            wait_idle(page)
            home = _main_text(page)
            assert "probe on its frozen sentence embeddings" in home
            assert str(profiles) in home and "Regressor" not in home

            page.goto(f"{url}/Predict", wait_until="domcontentloaded")
            wait_idle(page)
            targets = page.locator('[data-testid="stMultiSelect"]').filter(
                has_text="Target languages")
            box = targets.locator("input")
            box.click()
            box.fill("Basque")
            page.get_by_role("option", name="Basque (eu)").click()
            page.keyboard.press("Escape")
            wait_idle(page)
            warning = page.locator('[data-testid="stAlert"]').filter(has_text="Basque").first
            assert "do not look like NLI pairs" in warning.inner_text()
            cells = page.locator('[data-testid="stDataFrame"]').first.locator(
                '[role="gridcell"]').all_text_contents()
            assert "Ayacucho Quechua (quy)" in cells and "None" not in cells
            capture(page, ARTIFACTS / "browser_predict_profile.png")

            page.goto(f"{url}/Recommend", wait_until="domcontentloaded")
            wait_idle(page)
            text = _main_text(page)
            assert "Basis:" in text and "90% intervals" in text and "Best:" in text

            page.goto(f"{url}/Features", wait_until="domcontentloaded")
            wait_idle(page)
            page.get_by_role("button", name="Compute in-sample permutation importance").click()
            page.get_by_text("In-sample MAE increase on a random sample").wait_for(
                timeout=60_000)
            wait_idle(page)
            text = _main_text(page)
            assert "Why k alone moves the prediction so little" in text
            assert "predicted gain per doubling of k (whole sets)" in text
            assert "design × pretraining-class mean" in text and "unseen target" in text
            for name in INTERNAL_NAMES:
                assert name not in text, name
            assert not page.locator('[data-testid="stException"]').count()
            capture(page, ARTIFACTS / "browser_features.png")
        finally:
            browser.close()
