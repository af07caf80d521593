"""How fast the app feels in a real browser: first render and Predict/Recommend interactions.

    python -m app.bench_browser --models-dir models [--repeats 7]

Starts ``xlt-app --headless`` on a free port, opens it in headless Chromium (Debian's
package, driven by Playwright) and times, from the browser's side:

* **first render**: navigation to the Predict page until its script has run and every
  chart is drawn (a fresh browser context each time, so nothing is cached client-side;
  the server's caches are warm after the first, as they would be for a second user);
* **Predict: add a source language**: one more language in the sources box until the
  page has re-run and redrawn;
* **Recommend: change k**: the "languages per set" input stepped up and down.

Why a script and not a timed test: wall-clock limits flake on a loaded 2-core machine.
The figures are medians over ``--repeats`` runs in one process; compare them with each
other, not across machines. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from app.screenshots import find_chromium, launch_browser, running_app

_DONE = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app && app.getAttribute('data-test-script-state') !== 'running'
        && document.querySelector('[data-testid="stMainBlockContainer"] h1')
        && !document.querySelector('[data-testid="stSpinner"]')
        && [...document.querySelectorAll('.vega-embed')].every(e => e.querySelector('canvas, svg'));
}"""


# What the script writes and a widget change alone does not: headings, alerts, captions
# (Predict's subheader names the sources and its caption the time the run took; Recommend's
# "Best" box names the winning set).
_OUTPUT = """() => [...document.querySelectorAll('[data-testid="stMainBlockContainer"] '
    + ':is([data-testid="stHeading"], [data-testid="stAlert"], [data-testid="stCaptionContainer"])')]
    .map(e => e.innerText).join('\\n')"""
_ARM = """(output) => {
    const app = document.querySelector('[data-testid="stApp"]');
    window.__xltRerun = false;
    window.__xltOutput = output();
    if (window.__xltObs) window.__xltObs.disconnect();
    window.__xltObs = new MutationObserver(() => {
        if (app.getAttribute('data-test-script-state') === 'running') window.__xltRerun = true;
    });
    window.__xltObs.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""
_STARTED = f"""() => window.__xltRerun === true || ({_OUTPUT})() !== window.__xltOutput"""


def _arm(page: Any) -> None:
    """Record, before the action that triggers a rerun, what shows that the rerun happened.

    Two signs, either enough: the app's flip to 'running' (a MutationObserver sees every
    flip, however short), or a change in the script's output. Polling for the 'running'
    state alone missed reruns shorter than the poll -- and a fast rerun can be drawn in the
    same frame as its start, so the attribute never flips -- and then waited out a 3 s
    timeout, so a fast rerun read as ~3,000 ms.
    """
    page.evaluate(f"() => ({_ARM})({_OUTPUT})")


def _wait_rerun(page: Any, t0: float, timeout_ms: int = 60_000) -> float:
    """Milliseconds from ``t0`` until the re-run the last action triggered has finished.

    Streamlit flips the app to 'running' shortly after a widget changes; waiting for that
    flip (recorded by :func:`_arm`) first keeps a fast poll from reading the *previous*
    idle state as "done".
    """
    try:
        page.wait_for_function(_STARTED, timeout=3_000, polling=10)
    except Exception:  # noqa: BLE001 - no flip seen (not armed, or no rerun): the old check
        pass
    page.wait_for_function(_DONE, timeout=timeout_ms, polling=10)
    return 1000 * (time.perf_counter() - t0)


def first_render(browser: Any, url: str, slug: str = "Predict") -> float:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        t0 = time.perf_counter()
        page.goto(f"{url}/{slug}", wait_until="domcontentloaded")
        page.wait_for_function(_DONE, timeout=90_000, polling=10)
        return 1000 * (time.perf_counter() - t0)
    finally:
        context.close()


def _multiselect(page: Any, label: str) -> Any:
    return page.locator('[data-testid="stMultiSelect"]').filter(has_text=label).first


def predict_add_source(page: Any, language: str) -> float:
    """Add ``language`` (a name as the box lists it) to Predict's sources; ms until redrawn."""
    box = _multiselect(page, "Source (training) languages").locator("input")
    box.click()
    box.fill(language)
    option = page.get_by_role("option").filter(has_text=language).first
    _arm(page)
    t0 = time.perf_counter()
    option.click()
    ms = _wait_rerun(page, t0)
    page.keyboard.press("Escape")
    return ms


def predict_remove_source(page: Any, language: str) -> None:
    box = _multiselect(page, "Source (training) languages")
    _arm(page)
    box.locator(f'button[aria-label^="Remove {language}"]').first.click()
    _wait_rerun(page, time.perf_counter())


def recommend_step_k(page: Any, up: bool) -> float:
    field = page.locator('[data-testid="stNumberInput"]').first
    button = field.locator("button").nth(1 if up else 0)
    _arm(page)
    t0 = time.perf_counter()
    button.click()
    return _wait_rerun(page, t0)


# languages added one at a time on Predict, each a set not answered before (cache misses);
# the first two measures alternate German/French, a returning user's toggling (cache hits)
NEW_SOURCES = ["Spanish", "Russian", "Chinese", "Arabic", "Hindi", "Turkish", "Vietnamese",
               "Greek", "Bulgarian", "Thai"]
MAX_NEW_K_STEPS = 4


def run(models_dir: Path, repeats: int, chromium: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    out: dict[str, list[float]] = {"first_render_ms": [], "predict_add_source_ms": [],
                                   "recommend_change_k_ms": [], "predict_new_source_ms": [],
                                   "recommend_new_k_ms": []}
    with running_app(models_dir) as url, sync_playwright() as pw:
        browser = launch_browser(pw, chromium)
        try:
            first_render(browser, url)  # warm the server's caches: a returning user's view
            for _ in range(repeats):
                out["first_render_ms"].append(first_render(browser, url))
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/Predict", wait_until="domcontentloaded")
            page.wait_for_function(_DONE, timeout=90_000, polling=50)
            for i in range(repeats):
                language = ["German", "French"][i % 2]
                out["predict_add_source_ms"].append(predict_add_source(page, language))
                predict_remove_source(page, language)
            # a source set the app has not answered before (nothing in its caches)
            for language in NEW_SOURCES[:repeats]:
                out["predict_new_source_ms"].append(predict_add_source(page, language))
                predict_remove_source(page, language)
            page.goto(f"{url}/Recommend", wait_until="domcontentloaded")
            page.wait_for_function(_DONE, timeout=90_000, polling=50)
            for i in range(repeats):
                out["recommend_change_k_ms"].append(recommend_step_k(page, up=i % 2 == 0))
            # k values not asked before: step up from the default
            for _ in range(min(repeats, MAX_NEW_K_STEPS)):
                out["recommend_new_k_ms"].append(recommend_step_k(page, up=True))
        finally:
            browser.close()
    summary: dict[str, Any] = {k: round(statistics.median(v), 1) for k, v in out.items() if v}
    summary["runs"] = {k: [round(x, 1) for x in v] for k, v in out.items()}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.bench_browser",
                                     description="Time the app's first render and Predict / "
                                                 "Recommend interactions in headless Chromium.")
    parser.add_argument("--models-dir", type=Path, default=Path("models"),
                        help="models directory the app serves (default models)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measure (default 7)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    chromium = find_chromium()
    if chromium is None:
        print("app.bench_browser: error: Chromium not found: apt-get install chromium",
              file=sys.stderr)
        return 2
    if not args.models_dir.is_dir():
        print(f"app.bench_browser: error: models directory {args.models_dir} not found",
              file=sys.stderr)
        return 2
    summary = run(args.models_dir.resolve(), args.repeats, chromium)
    for key in ("first_render_ms", "predict_add_source_ms", "recommend_change_k_ms",
                "predict_new_source_ms", "recommend_new_k_ms"):
        if key in summary:
            print(f"{key:<24} median {summary[key]:8.1f} ms   runs {summary['runs'][key]}")
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
