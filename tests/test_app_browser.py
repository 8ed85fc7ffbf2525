"""End to end in a real headless browser: ``universeg-jax app`` started as a command on a free local port, driven in
Debian's Chromium with Playwright, on the nuclei image that ships with stardist and a small random-weight model.

Upload a support set and two queries, get an overlay, paint a correction, add it to the support set, see the
count grow and the next query segmented with it, download masks and check them, and see bad input as a message.
Set ``UNIVERSEG_JAX_SCREENSHOTS=docs/images`` to keep the screenshots (``app_*.png``) for the docs.
"""

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.test_app import brain_files, make_nuclei, make_weights

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium in a closed network, as root: no sandbox, no background connections (they are refused here, many at
# a time), no first-run or component work.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
SLOW = 90_000  # ms: the app's first prediction compiles the model


def _browser_or_skip():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must install Debian's chromium ({CHROMIUM} is missing; see .ci/run)")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    return sync_api


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """``universeg-jax app --port 0`` in a subprocess; its printed address."""
    weights = make_weights(tmp_path_factory.mktemp("w"))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "universeg_jax.cli", "app", "--weights", str(weights), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=Path(__file__).parent.parent,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    output = []
    try:
        while True:
            try:
                line = lines.get(timeout=180)
            except queue.Empty:
                pytest.fail("the app printed no address in 180 s:\n" + "".join(output))
            output.append(line)
            if "open http://" in line:
                yield line.split("open ", 1)[1].split()[0]
                break
            if process.poll() is not None:
                pytest.fail("the app stopped:\n" + "".join(output))
    finally:
        process.send_signal(signal.SIGINT)  # as Ctrl+C
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    while not lines.empty():
        output.append(lines.get())
    assert process.returncode == 0, "".join(output)  # Ctrl+C stops the app cleanly


def overlay_pixels(page) -> int:
    """How many pixels of the overlay canvas have a colour (prediction or painting)."""
    return page.evaluate("""() => {
        const canvas = document.getElementById('overlay-canvas');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i]) n++;
        return n;
    }""")


def download(page, button: str) -> Path:
    with page.expect_download(timeout=SLOW) as info:
        page.click(button)
    assert info.value.failure() is None
    return Path(info.value.path())


def test_segment_correct_and_grow_the_support_in_a_browser(app_url, tmp_path):
    sync_api = _browser_or_skip()
    expect = sync_api.expect
    expect.set_options(timeout=SLOW)
    nuclei = make_nuclei(tmp_path / "nuclei")
    shots = Path(os.environ.get("UNIVERSEG_JAX_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 700}, accept_downloads=True)
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(app_url)
            expect(page.locator("#view-info")).to_contain_text("Add a support set")

            # Support set and queries.
            page.set_input_files("#support-images", nuclei["images"])
            page.set_input_files("#support-labels", nuclei["labels"])
            page.click("#upload-support")
            expect(page.locator("#support-count")).to_have_attribute("data-count", "2")
            expect(page.locator("#support-list li")).to_have_count(2)
            page.set_input_files("#query-files", nuclei["queries"])
            page.click("#upload-queries")
            expect(page.locator("#query-list li")).to_have_count(2)
            info = page.locator("#view-info")
            expect(info).to_contain_text("tile2.tif (256×256), segmented with 2 support examples")
            expect(page.locator("#probability")).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
            predicted = overlay_pixels(page)
            assert 0 < predicted < 256 * 256
            expect(page.locator("#legend .entry")).to_have_count(1)
            page.screenshot(path=shots / "app_overlay.png", full_page=True)

            # A higher threshold gives less foreground.
            idle = page.locator("body")
            page.locator("#threshold").fill("0.95")
            expect(page.locator("#threshold-value")).to_have_text("0.95")
            expect(idle).to_have_attribute("data-busy", "0")
            assert overlay_pixels(page) <= predicted
            page.locator("#threshold").fill("0.5")
            expect(idle).to_have_attribute("data-busy", "0")

            # Paint a correction: a horizontal stroke across the middle of the query.
            box = page.locator("#overlay-canvas").bounding_box()
            y = box["y"] + box["height"] * 0.5
            page.mouse.move(box["x"] + box["width"] * 0.3, y)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=12)
            page.mouse.up()
            expect(page.locator("body")).to_have_attribute("data-saved", "1")
            painted = page.evaluate("() => app.edits.filter((v) => v !== 0xffff).length")
            assert painted > 500
            # ... and erase a band lower down.
            page.check("#tool-eraser")
            y = box["y"] + box["height"] * 0.75
            page.mouse.move(box["x"] + box["width"] * 0.2, y)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=12)
            page.mouse.up()
            expect(page.locator("body")).to_have_attribute("data-saved", "2")
            page.check("#tool-brush")
            page.screenshot(path=shots / "app_correction.png", full_page=True)

            # Add it to the support set: the count grows and the next query is segmented with it.
            page.click("#add-to-support")
            expect(page.locator("#support-count")).to_have_attribute("data-count", "3")
            expect(page.locator("#support-list li.correction")).to_have_count(1)
            expect(page.locator("#query-list li.selected .name")).to_have_text("tile3.tif")
            expect(info).to_contain_text("tile3.tif (256×256), segmented with 3 support examples")
            expect(page.locator("#query-list li", has_text="tile2.tif").locator(".in-support")).to_have_count(1)
            page.screenshot(path=shots / "app_loop.png", full_page=True)

            # Download the mask of the next query: the query's size and format, the support's label values, and
            # what the page shows.
            mask = tifffile.imread(download(page, "#download-mask"))
            assert mask.shape == (256, 256) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
            shown = np.array(page.evaluate("() => Array.from(app.pred)"), np.uint16).reshape(256, 256)
            np.testing.assert_array_equal(mask, shown)

            # The corrected query's mask holds the stroke.
            page.click("#query-list li:has-text('tile2.tif') .name")
            expect(info).to_contain_text("tile2.tif (256×256), segmented with 3 support examples")
            corrected = tifffile.imread(download(page, "#download-mask"))
            assert corrected.shape == (256, 256) and (corrected[126:131, 90:166] == 255).all()
            assert (corrected[190:195, 65:140] == 0).all()

            # Bad input is a message; nothing is lost.
            page.set_input_files("#support-labels", nuclei["labels"][:1])
            page.click("#upload-support")
            expect(page.locator("#messages .error")).to_contain_text("no image")
            expect(page.locator("#support-count")).to_have_attribute("data-count", "3")
            expect(page.locator("#query-list li")).to_have_count(2)

            # A volume query gets a slice slider (plumbing only: this support set is of nuclei).
            volume, _ = brain_files(tmp_path / "brain", slices=slice(70, 82))
            page.set_input_files("#query-files", [volume])
            page.click("#upload-queries")
            page.click("#query-list li:has-text('atlas.nii.gz') .name")
            expect(page.locator("#slice-control")).to_be_visible()
            expect(info).to_contain_text("atlas.nii.gz slice 6 (116×150)")
            page.locator("#slice").fill("2")
            expect(info).to_contain_text("atlas.nii.gz slice 2 (116×150), segmented with 3 support examples")
            expect(page.locator("#slice-value")).to_have_text("2 / 11 (axial)")
            assert errors == []
        finally:
            browser.close()
