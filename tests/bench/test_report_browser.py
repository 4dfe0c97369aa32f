"""The HTML report as a browser renders it: headless Chromium loads every embedded figure and table."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rlsurgery.bench import report
from tests.bench.synthetic import two_variant_study

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing(reason: str) -> None:
    """Skip, unless CI requires the browser (``.ci/run`` sets RLSURGERY_REQUIRE_BROWSER=1)."""
    if os.environ.get("RLSURGERY_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and RLSURGERY_REQUIRE_BROWSER=1")
    pytest.skip(reason)


def chromium_driver(user_data_dir: Path):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed")
    if not CHROMIUM.is_file() or not (CHROMEDRIVER.is_file() or shutil.which("chromedriver")):
        _missing("chromium or chromedriver is not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("browser_report")
    paths = report.write_report(two_variant_study(), out_dir, reps=200, curve_reps=200)
    driver = chromium_driver(tmp_path_factory.mktemp("chromium_profile"))
    try:
        driver.set_page_load_timeout(30)
        driver.get(paths["report"].resolve().as_uri())
        yield driver
    finally:
        driver.quit()


def test_every_image_loads(rendered):
    images = rendered.execute_script(
        "return Array.from(document.images).map(img => [img.complete, img.naturalWidth, img.alt]);"
    )
    assert len(images) == 5
    for complete, natural_width, alt in images:
        assert complete and natural_width > 0, alt


def test_tables_show_the_variants(rendered):
    texts = rendered.execute_script(
        "const text = kind => Array.from(document.querySelectorAll('table.' + kind)).map(t => t.innerText);"
        "return {aggregate: text('aggregate'), perEnv: text('per-env')};"
    )
    for kind in ("aggregate", "perEnv"):
        assert len(texts[kind]) == 1, kind
        assert "base" in texts[kind][0] and "better" in texts[kind][0], kind
    assert "EnvA" in texts["perEnv"][0] and "EnvB" in texts["perEnv"][0]
    assert rendered.title == "synthetic: study report"
