"""The browser example in a real browser: Debian's Chromium driven by Playwright, the page served from 127.0.0.1.

Skipped only where Chromium or the page's npm packages are missing; `.ci/run` installs both, so CI always runs it.
"""

from __future__ import annotations

import functools
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, run_cli
from PIL import Image

WEB = REPO_ROOT / "examples" / "web"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file() or not (WEB / "node_modules" / "onnxruntime-web").is_dir(),
    reason="needs Debian's chromium and `npm ci --ignore-scripts` in examples/web (.ci/run does both)",
)


class PageAndExports(SimpleHTTPRequestHandler):
    """The page's folder at /, export folders and pictures under their own prefixes: what a user's static server offers."""

    folders: dict[str, Path] = {}

    def translate_path(self, path: str) -> str:
        for prefix, folder in self.folders.items():
            if path.startswith(f"/{prefix}/"):
                return str(folder / path.removeprefix(f"/{prefix}/").split("?")[0])
        return super().translate_path(path)

    def log_message(self, *args: object) -> None:
        """Quiet: the test reads the page, not the server's log."""


@pytest.fixture(scope="module")
def server(exported, rgb_exported, picture_files) -> Iterator[str]:
    folders = {"exports": exported.parent, "rgb": rgb_exported.parent, "pictures": picture_files[0].parent}
    handler = type("Handler", (PageAndExports,), {"folders": folders})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(WEB)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def page(server) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server}/index.html?model=/exports/mnist_cnn_uint8_input.onnx")
        page.evaluate("window.edgecnn.ready")
        yield page
        browser.close()
        assert not errors, errors


def test_the_page_agrees_with_predict_on_500_test_digits(page, exported, real_arrays, tmp_path):
    digits = real_arrays["x_test"][:500]
    for index, digit in enumerate(digits):
        Image.fromarray(digit).save(tmp_path / f"{index:03d}.png")
    run = run_cli("predict", str(tmp_path), "--model", str(exported.parent / "mnist_cnn_uint8_input.onnx"), "--json")
    expected = [item["index"] for item in json.loads(run.stdout)]
    results = page.evaluate(
        "async (batch) => { const out = []; for (const pixels of batch) out.push(await window.edgecnn.classify(Uint8Array.from(pixels))); return out; }",
        digits.reshape(500, -1).tolist(),
    )
    labels = [result["index"] for result in results]
    assert np.mean(np.array(labels) == np.array(expected)) >= 0.998
    assert all(len(result["probabilities"]) == 10 and abs(sum(result["probabilities"]) - 1) < 1e-3 for result in results)


def test_a_digit_drawn_with_the_mouse_is_classified_and_shown(page, tmp_path):
    page.click("#clear")
    box = page.locator("#pad").bounding_box()
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + 40)
    page.mouse.down()
    for step in range(1, 21):  # a vertical stroke: a "1"
        page.mouse.move(x + step * 0.5, box["y"] + 40 + step * 10)
    page.mouse.up()
    page.wait_for_function("document.getElementById('result').textContent !== ''")
    shown = page.text_content("#result")
    again = page.evaluate("window.edgecnn.classifyCanvas()")
    assert shown == "1" and again["label"] == "1"
    assert len(page.locator("#bars .bar").all()) == 10
    page.screenshot(path=str(tmp_path / "page.png"))
    assert (tmp_path / "page.png").stat().st_size > 10_000


def test_the_page_classifies_pictures_for_a_32x32_rgb_model_like_predict(page, server, rgb_exported, picture_files, tmp_path):
    """The same page, another model: no drawing pad (3 channels), pictures chosen as files, the model's own pixel count."""
    from edgecnn.core.manifest import load_manifest

    model = load_manifest(rgb_exported).artifact("onnx-fp32-uint8-input").path
    output = tmp_path / "expected.jsonl"
    run = run_cli("predict", *map(str, picture_files), "--model", str(rgb_exported.parent / model), "--output", str(output))
    assert run.returncode == 0, run.stderr
    expected = np.array([json.loads(line)["probabilities"] for line in output.read_text().splitlines()])
    rgb_page = page.context.browser.new_page()  # the digit page's browser, a second page
    rgb_page.goto(f"{server}/index.html?model=/rgb/{model}")
    description = rgb_page.evaluate("window.edgecnn.ready")
    assert (description["height"], description["width"], description["channels"]) == (32, 32, 3)
    assert rgb_page.locator("#drawing").is_hidden()
    results = rgb_page.evaluate(
        "async (urls) => { const out = []; for (const url of urls) out.push(await window.edgecnn.classifyImage(url)); return out; }",
        [f"/pictures/{path.name}" for path in picture_files],
    )
    with pytest.raises(Exception, match="expects a Uint8Array of 3072 pixels"):
        rgb_page.evaluate("window.edgecnn.classify(new Uint8Array(784))")
    rgb_page.set_input_files("#file", str(picture_files[1]))
    rgb_page.wait_for_function("document.getElementById('result').textContent !== ''")
    shown = rgb_page.text_content("#result")
    rgb_page.close()
    got = np.array([result["probabilities"] for result in results])
    assert [result["index"] for result in results] == expected.argmax(axis=1).tolist()
    assert np.abs(got - expected).max() <= 0.01
    assert shown == description["class_names"][int(expected[1].argmax())]


def test_the_page_shows_a_phone_photo_upright_once_like_predict(page, exported, picture_files, real_arrays, tmp_path):
    """The browser applies the EXIF orientation when it decodes the picture; the page must not turn it again."""
    from test_pictures import predictions, sideways_digit

    model = exported.parent / "mnist_cnn_uint8_input.onnx"
    rotated, _, sideways = sideways_digit(model, real_arrays, tmp_path)
    served = picture_files[0].parent
    shutil.copy(rotated, served / "exif-rotated.jpg")
    shutil.copy(sideways, served / "exif-sideways.png")
    expected, ignored = predictions(model, [rotated, sideways], tmp_path)
    result, stored = (page.evaluate("(url) => window.edgecnn.classifyImage(url)", url) for url in ("/pictures/exif-rotated.jpg", "/pictures/exif-sideways.png"))
    assert result["index"] == expected["index"] != ignored["index"] == stored["index"]
    assert np.abs(np.array(result["probabilities"]) - np.array(expected["probabilities"])).max() <= 0.01
