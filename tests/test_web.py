"""The demo page in a real browser: Debian's chromium driven by Playwright, its camera a
fake device playing a y4m video made here from a real face frame (a NUAA webcam frame from
EKYC_DATA_DIR, else the packaged portrait), the page served by the real gateway and server.

scripts/install_chromium.sh (run by `make test` and .ci/run) installs the browser.
"""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import DATA_DIR, manifest_rows, packaged_face_path
from ekyc.client import LivenessClient
from httpkit import start_http

CHROMIUM = os.environ.get("EKYC_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 30_000

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements/test.txt")


def letterbox(rgb: np.ndarray, width: int = 640, height: int = 480) -> np.ndarray:
    """``rgb`` scaled into a width x height camera frame (even sides, black borders)."""
    h, w = rgb.shape[:2]
    scale = min(width / w, height / h)
    size = (int(w * scale) // 2 * 2, int(h * scale) // 2 * 2)
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    frame = np.zeros((height, width, 3), np.uint8)
    top, left = (height - size[1]) // 2, (width - size[0]) // 2
    frame[top:top + size[1], left:left + size[0]] = small
    return frame


def write_y4m(rgb: np.ndarray, path: Path, frames: int = 4) -> Path:
    """A 4:2:0 y4m video of ``frames`` copies of ``rgb`` (Chromium's fake camera loops it)."""
    height, width = rgb.shape[:2]
    planes = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes()
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n" + planes)
    return path


@pytest.fixture(scope="module")
def good_frame(target) -> np.ndarray:
    """A 640x480 camera frame the quality gate passes: the first NUAA live webcam frame of
    the held-out split that passes, else the packaged portrait letterboxed."""
    with LivenessClient(target, timeout=60) as client:
        if DATA_DIR is not None:
            rows = sorted((r for r in manifest_rows("test") if r["source"] == "nuaa" and r["label"] == "live"),
                          key=lambda r: r["path"])
            for row in rows[:40]:
                data = (DATA_DIR / row["path"]).read_bytes()
                if client.check_quality(data).quality.passed:
                    return letterbox(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
            pytest.fail("no NUAA live frame of the test split passes the quality gate")
        frame = letterbox(np.asarray(Image.open(packaged_face_path()).convert("RGB")))
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, "JPEG", quality=92)
        assert client.check_quality(buffer.getvalue()).quality.passed
        return frame


@pytest.fixture(scope="module")
def http():
    """ekyc-server (in-process) serving gRPC and HTTP: the page and the API it calls."""
    endpoint = start_http()
    yield endpoint
    endpoint.stop()


@pytest.fixture(scope="module")
def target(http) -> str:
    return http.target


@pytest.fixture(scope="module")
def playwright():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install_chromium.sh (make test does)")
    with sync_api.sync_playwright() as instance:
        yield instance


class Session:
    """One browser with a fake camera playing ``video``, one phone-sized page, every request
    and console message it made recorded."""

    def __init__(self, playwright, video: Path, url: str):
        self.browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*FLAGS, f"--use-file-for-fake-video-capture={video}"])
        self.page = self.browser.new_page(viewport=PHONE, device_scale_factor=1, has_touch=True)
        self.requests: list[str] = []
        self.console: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: self.console.append(message.text))
        self.page.set_default_timeout(TIMEOUT_MS)
        self.response = self.page.goto(url)

    def close(self) -> None:
        self.browser.close()


def wait_guidance(page, state: str) -> None:
    page.locator(f'#guidance[data-state="{state}"]').wait_for()


@pytest.fixture(scope="module")
def good(playwright, http, good_frame, tmp_path_factory):
    video = write_y4m(good_frame, tmp_path_factory.mktemp("video") / "good.y4m")
    started = time.perf_counter()
    session = Session(playwright, video, http.base + "/")
    session.started = started
    yield session
    session.close()


def test_dark_video_asks_for_more_light(playwright, http, good_frame, tmp_path):
    dark = (good_frame.astype(np.float32) * 0.12).astype(np.uint8)
    session = Session(playwright, write_y4m(dark, tmp_path / "dark.y4m"), http.base + "/")
    try:
        page = session.page
        wait_guidance(page, "fix")
        guidance = page.locator("#guidance")
        assert "TOO_DARK" in guidance.get_attribute("data-reasons").split()
        assert guidance.inner_text() == "More light, please" or "More light, please" in page.locator(
            "#guidance-more").inner_text()
        assert page.locator("#capture").is_disabled()
    finally:
        session.close()


def test_good_video_clears_the_guidance_and_enables_capture(good):
    page = good.page
    wait_guidance(page, "ok")
    assert page.locator("#guidance").get_attribute("data-reasons") == ""
    assert page.locator("#guidance").inner_text().startswith("Looks good")
    assert page.locator("#guidance-more li").count() == 0
    assert page.locator("#capture").is_enabled()
    assert page.locator("#stage").is_visible()
    # The face box is drawn over the video, in the 'passed' colour (#2fd36b).
    shot = np.asarray(Image.open(io.BytesIO(page.locator("#overlay").screenshot())).convert("RGB")).astype(int)
    green = (np.abs(shot - np.array([47, 211, 107])).sum(axis=2) < 60).sum()
    assert green > 100, f"{green} box pixels"


def test_a_keyboard_capture_gives_the_grpc_decision_for_the_same_frame(good, target):
    page = good.page
    wait_guidance(page, "ok")
    page.locator("#profile").select_option("strict")
    page.locator("#capture").focus()
    with page.expect_request(re.compile(r"/v1/liveness:verify")) as captured:
        page.keyboard.press("Enter")
    request = captured.value
    assert "profile=strict" in request.url
    frame = request.post_data_buffer
    assert frame[:2] == b"\xff\xd8", "the capture is a JPEG"
    page.locator("#result:not([hidden])").wait_for()
    with LivenessClient(target, timeout=60) as client:
        expected = client.verify(frame, profile="strict")
    words = {1: "LIVE", 2: "SPOOF", 3: "UNCERTAIN"}
    decision = "QUALITY_FAILED" if expected.status == 2 else words[expected.decision]
    assert page.locator("#decision").get_attribute("data-decision") == decision
    if decision != "QUALITY_FAILED":
        assert page.locator("#score").inner_text().startswith(f"{expected.liveness_score:.3f}")
        assert page.locator("#threshold").inner_text() == f"{expected.threshold:.3f}"
        assert page.locator("#result-profile").inner_text() == "strict"
    assert page.locator("#model-version").inner_text() == expected.model_version
    assert page.locator("#scores tbody tr").count() == len(expected.quality.scores.DESCRIPTOR.fields)


def test_uploading_a_non_image_shows_the_error(good, tmp_path):
    page = good.page
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_bytes(b"these are not the pixels you are looking for")
    page.locator("#upload").set_input_files(str(not_an_image))
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert error.get_attribute("data-code") == "INVALID_ARGUMENT"
    assert "not a JPEG or PNG" in error.inner_text()
    assert page.locator("#result").is_hidden()


def test_uploading_a_photo_shows_a_result(good, face_path):
    page = good.page
    page.locator("#profile").select_option("")
    page.locator("#upload").set_input_files(str(face_path))
    page.locator('#result:not([hidden]) #decision[data-decision]').wait_for()
    assert page.locator("#error").is_hidden()
    assert page.locator("#decision").get_attribute("data-decision") in {"LIVE", "SPOOF", "UNCERTAIN", "QUALITY_FAILED"}


def test_the_page_requests_nothing_outside_its_origin_and_fits_a_phone(good, http):
    page = good.page
    assert good.requests, "no request was recorded"
    outside = [url for url in good.requests if not url.startswith(http.base + "/")]
    assert outside == []
    assert any("/static/app.js" in url for url in good.requests)
    assert good.response.headers["content-security-policy"].startswith("default-src 'none'")
    assert not [line for line in good.console if "Content Security Policy" in line]
    for selector in ("header", "main", "#camera-section", "#result", "#scores", "footer"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5, selector
    print(f"\nbrowser session (good video): {time.perf_counter() - good.started:.1f} s")
