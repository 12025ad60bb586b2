"""The page in a real browser, as a person uses it: Playwright driving Debian's Chromium (`/usr/bin/chromium`;
`.ci/run` installs it). It uploads an X-ray, the DICOM sample, a broken file and one over the size limit, and reads
what the page shows (the tiny export's validation on the sample among it). With COVID_CXR_WRITE_SCREENSHOT=1 it
saves the page after the X-ray to docs/app.png, and COVID_CXR_APP_MODEL=<model> runs it on that model instead of a
tiny export (the README's sample run, for the screenshot)."""

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from components import configs
from tests.pipeline import app_fixtures

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = configs.REPO_ROOT / "docs" / "app.png"
RESULT = "#result h3"


@pytest.fixture(scope="module")
def server(tmp_path_factory, sample_dir):
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (.ci/run installs it: apt-get install chromium)")
    model, validations = os.environ.get("COVID_CXR_APP_MODEL"), []
    if not model:  # the tiny export, and its validation on the sample shown beside its development evidence
        root = tmp_path_factory.mktemp("app")
        model = app_fixtures.demo_export(root)
        done = app_fixtures.validate(model, shutil.copytree(sample_dir, root / "site"), root / "out", "--site=SITE_A")
        assert done.returncode == 0, done.stderr
        validations = [str(root / "out")]
    with app_fixtures.launched(model, "127.0.0.1", app_fixtures.free_port(), None, max_upload_mb=1,
                               validations=validations) as blocks:
        blocks.validations = validations
        yield blocks


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _upload(page, path):
    """Clear the single-image upload if it holds a file, then upload `path`."""
    clear = page.locator("#single-upload button[aria-label=Clear]")
    if clear.count():
        clear.click()
        page.wait_for_function("!document.querySelector('#result h3')")
    page.locator("#single-upload input[type=file]").set_input_files(str(path))


def test_a_person_uploads_an_xray_a_dicom_and_a_broken_file(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    hosts = []
    page.on("request", lambda request: hosts.append(urlsplit(request.url).netloc))
    page.goto(server.local_url)

    banner, trust = page.locator("#banner"), page.locator("#trust")
    assert "Research use only" in banner.inner_text() and "DEMO" in banner.inner_text()
    for heading in ("Intended use", "Known failure modes", "Data and weights", "Validation evidence"):
        assert heading in trust.inner_text()
    if server.validations:
        assert "External site SITE_A" in trust.inner_text() and "Riley et al." in trust.inner_text()

    _upload(page, app_fixtures.PNG_SAMPLE)
    page.wait_for_selector(RESULT, timeout=60_000)
    shown = page.locator("#result").inner_text()
    assert "Probability of death" in shown and "Fold models (3)" in shown and "threshold" in shown
    page.wait_for_selector("#overlay img")
    if os.environ.get("COVID_CXR_WRITE_SCREENSHOT") == "1":
        page.screenshot(path=str(SCREENSHOT), full_page=True)

    _upload(page, app_fixtures.DICOM_SAMPLE)
    page.wait_for_selector(RESULT, timeout=60_000)
    shown = page.locator("#result").inner_text()
    assert "Probability of death" in shown and "DICOM header" in shown and "view position" in shown

    broken = tmp_path / "broken.png"
    broken.write_text("not an X-ray")
    _upload(page, broken)
    page.wait_for_selector(RESULT, timeout=60_000)
    assert "Not scored: not_an_image" in page.locator("#result").inner_text()

    _upload(page, app_fixtures.PNG_SAMPLE)  # the page is still usable
    page.wait_for_selector(RESULT, timeout=60_000)
    assert "Probability of death" in page.locator("#result").inner_text()

    big = tmp_path / "big.png"
    big.write_bytes(app_fixtures.PNG_SAMPLE.read_bytes() + b"\0" * 2**21)
    _upload(page, big)
    page.get_by_text("exceed the maximum allowed size of 1.0 Mb").wait_for(timeout=30_000)

    assert set(hosts) == {urlsplit(server.local_url).netloc}  # offline: nothing but the page's own server
    page.close()


def test_several_files_give_a_table_and_a_csv(server, browser, tmp_path):
    page = browser.new_page()
    page.goto(server.local_url)
    page.get_by_role("tab", name="Several files").click()
    broken = tmp_path / "broken.png"
    broken.write_text("not an X-ray")
    page.locator("#batch-upload input[type=file]").set_input_files([str(app_fixtures.PNG_SAMPLE), str(broken)])
    page.locator("#batch-upload td[aria-label='broken.png']").wait_for()
    page.locator("#batch-score").click()
    page.get_by_text("1 scored, 1 not scored").wait_for(timeout=60_000)
    table = page.locator("#batch-table").inner_text()
    assert "00870a9c.jpg" in table and "not_an_image" in table
    assert page.locator("#batch-csv").get_by_text("scores.csv").count()
    page.close()
