"""`mmaffect serve`: the JSON API through FastAPI's test client, and the page in a real browser (Debian's
chromium + chromedriver driven by selenium).

The models are real and tiny: six clips generated here (the astronaut face, tones, a transcript each)
are extracted, a late-fusion model is trained on them for recordings and a text-mlp for transcripts.
The queue and retention tests use an engine that waits for the test's signal, so a job is running for
exactly as long as the test needs it to.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient  # noqa: E402

import media_factory
from mmaffect.cli import main
from mmaffect.errors import ConfigError
from mmaffect.serve.app import create_app  # noqa: E402
from mmaffect.serve.engine import parse_transcript  # noqa: E402
from mmaffect.serve.settings import ServeSettings, check_bind  # noqa: E402

DIALOGUE = "Anna: I am so happy you came!\nBen: I feel sad and tired today.\n\nThat was a surprise."


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(analysis model folder, text model folder) trained on six generated clips, 2 epochs, 2 folds."""
    root = tmp_path_factory.mktemp("serve-models")
    (root / "media").mkdir()
    rows = []
    for i in range(6):
        label = ("hap", "sad")[i % 2]
        media_factory.face_video(root / "media" / f"c{i}.mp4", seconds=1.5, fps=5,
                                 audio=media_factory.tone(1.5, 300.0 + 80 * i))
        rows.append({"path": f"media/c{i}.mp4", "id": f"c{i}", "label": label, "speaker": f"s{i % 3}",
                     "text": ("I am glad about it", "I am sad about it")[i % 2] + f", number {i}"})
    pd.DataFrame(rows).to_csv(root / "clips.csv", index=False)
    assert main(["extract", str(root / "clips.csv"), "--output", str(root / "cache"), "--fps", "1", "--quiet"]) == 0
    common = ["--dataset", f"cache:{root / 'cache'}", "--epochs", "2", "--cv", "2", "--quiet"]
    assert main(["train", "--model", "late-fusion", "--output", str(root / "fusion"), *common]) == 0
    assert main(["train", "--model", "text-mlp", "--modalities", "t", "--output", str(root / "text"), *common]) == 0
    return root / "fusion", root / "text"


@pytest.fixture(scope="module")
def app(models, tmp_path_factory):
    storage = tmp_path_factory.mktemp("serve-storage")
    settings = ServeSettings(model=models[0], text_model=models[1], storage=storage, max_upload_mb=1.0,
                             max_seconds=20.0, max_text_chars=2000)
    return create_app(settings)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def wait(client, job_id: str, timeout: float = 120.0, headers=None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/api/jobs/{job_id}", headers=headers)
        assert r.status_code == 200, r.text
        job = r.json()
        assert 0.0 <= job["progress"] <= 1.0 and job["stage"]
        if job["status"] in ("done", "error"):
            return job
        time.sleep(0.2)
    pytest.fail(f"job {job_id} did not finish in {timeout} s")


def uploads(app) -> list:
    return sorted(app.state.settings.storage.glob("*"))


def test_parse_transcript_speakers_and_plain_lines():
    assert parse_transcript(DIALOGUE) == [("Anna", "I am so happy you came!"), ("Ben", "I feel sad and tired today."),
                                          (None, "That was a surprise.")]
    assert parse_transcript("Note: this is: fine\nWell. Then: what?") == [("Note", "this is: fine"),
                                                                          (None, "Well. Then: what?")]


def test_transcript_job(client):
    r = client.post("/api/jobs", json={"text": DIALOGUE})
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["url"] == f"/api/jobs/{created['id']}" and len(created["id"]) >= 16
    job = wait(client, created["id"])
    assert job["status"] == "done" and job["progress"] == 1.0 and job["error"] is None
    result = job["result"]
    assert result["axis"] == "turns" and result["classes"] == ["hap", "sad"]
    assert [s["speaker"] for s in result["segments"]] == ["Anna", "Ben", None]
    assert [s["text"] for s in result["segments"]][2] == "That was a surprise."
    for seg in result["segments"]:
        assert sum(seg["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert seg["label"] == max(seg["probabilities"], key=seg["probabilities"].get)
    download = client.get(f"/api/jobs/{created['id']}/result.json")
    assert download.status_code == 200 and download.json() == result
    assert 'filename="transcript.mmaffect.json"' in download.headers["content-disposition"]


def test_media_job(client, app, tmp_path):
    clip = media_factory.face_video(tmp_path / "clip.mp4", seconds=2.0, fps=5)
    with open(clip, "rb") as f:
        r = client.post("/api/jobs", files={"file": ("my talk.mp4", f, "video/mp4")})
    assert r.status_code == 202, r.text
    job = wait(client, r.json()["id"])
    assert job["status"] == "done", job["error"]
    result = job["result"]
    assert result["video"] == "my talk.mp4" and result["axis"] == "seconds" and 1.9 < result["duration"] < 2.2
    assert result["segments"] and result["contributions_from"] == "relevance"
    for seg in result["segments"]:
        assert set(seg["contributions"]) == {"t", "a", "v"}
        assert sum(seg["contributions"].values()) == pytest.approx(1, abs=1e-4)
        assert sum(seg["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert uploads(app) == []  # the stored copy is deleted once analysed


def test_a_recording_with_nothing_usable_ends_in_an_error(client, app, tmp_path):
    """A valid file the analysis can do nothing with (no face, no audio): the job fails with the reason,
    naming the person's file, not the server's stored copy."""
    clip = media_factory.video_only_mp4(tmp_path / "blank.mp4")
    r = client.post("/api/jobs", files={"file": ("blank.mp4", clip.read_bytes(), "video/mp4")})
    assert r.status_code == 202, r.text
    job = wait(client, r.json()["id"])
    assert job["status"] == "error" and job["result"] is None
    assert job["error"].startswith("blank.mp4: no segment could be analysed") and "upload-" not in job["error"]
    assert uploads(app) == []


def test_bad_uploads_get_a_4xx_and_the_server_keeps_serving(client, app, tmp_path):
    good = media_factory.face_video(tmp_path / "good.mp4", seconds=2.0, fps=5)
    long_audio = media_factory.write_wav(tmp_path / "long.wav", media_factory.tone(25.0, sr=8000, amp=0.1), sr=8000)
    cases = {
        "zero.mp4": (media_factory.zero_byte(tmp_path / "zero.mp4"), 400, "empty (0 bytes)"),
        "notes.mp4": (media_factory.text_as_mp4(tmp_path / "notes.mp4"), 415, "not a readable audio or video"),
        "cut.mp4": (media_factory.truncated_copy(good, tmp_path / "cut.mp4"), 415, "truncated"),
        "long.wav": (long_audio, 413, "25 s long; this server takes at most 20 s"),
        "../../etc/passwd.mp4": (good, 400, "looks like a path"),
        "..\\evil.mp4": (good, 400, "looks like a path"),
    }
    fast = media_factory.face_video(tmp_path / "fs.mp4", seconds=2.0, fps=5, faststart=True)
    cases["cut_faststart.mp4"] = (media_factory.truncated_copy(fast, tmp_path / "cfs.mp4", 0.9), 422, "truncated")
    for name, (path, status, message) in cases.items():
        r = client.post("/api/jobs", files={"file": (name, path.read_bytes(), "video/mp4")})
        assert r.status_code == status, (name, r.text)
        assert message in r.json()["detail"], (name, r.text)
    big = np.random.default_rng(0).bytes(1_200_000)  # over the 1 MB limit
    r = client.post("/api/jobs", files={"file": ("big.mp4", big, "video/mp4")})
    assert r.status_code == 413 and "limit of 1.0 MB" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit is counted on the bytes as they arrive
        boundary = b"--xx\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.mp4\"\r\n\r\n"
        yield boundary
        for _ in range(20):
            yield bytes(100_000)
        yield b"\r\n--xx--\r\n"

    r = client.post("/api/jobs", content=chunks(), headers={"content-type": "multipart/form-data; boundary=xx"})
    assert r.status_code == 413 and r.json()["detail"].startswith("the upload is larger than this server's limit")
    just_over = bytes(2**20 + 10_000)  # within the multipart allowance: caught while the file is stored
    r = client.post("/api/jobs", files={"file": ("over.mp4", just_over, "video/mp4")})
    assert r.status_code == 413 and r.json()["detail"] == "over.mp4: larger than this server's limit of 1 MB"
    r = client.post("/api/jobs", files={"upload": ("good.mp4", good.read_bytes(), "video/mp4")})
    assert r.status_code == 400 and "field 'file'" in r.json()["detail"]
    assert client.post("/api/jobs", data={"file": "x"}).status_code == 415  # a form without a file part
    assert client.post("/api/jobs", content=b"hello", headers={"content-type": "text/plain"}).status_code == 415
    assert client.post("/api/jobs", json={"text": "   "}).status_code == 400
    r = client.post("/api/jobs", json={"text": "x" * 2001})
    assert r.status_code == 413 and "at most 2000" in r.json()["detail"]
    assert client.get("/api/jobs/nonexistent").status_code == 404
    assert uploads(app) == []  # refused files are not kept
    r = client.post("/api/jobs", json={"text": "Still here: I am glad."})  # and the server still works
    assert r.status_code == 202 and wait(client, r.json()["id"])["status"] == "done"


def test_openapi_documents_the_job_api(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/jobs"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert "/api/jobs/{job_id}" in spec["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="timeline"' in page.text


class GatedEngine:
    """Answers transcripts only when the test sets ``gate`` (so jobs stay queued/running on demand)."""

    def __init__(self):
        self.gate = threading.Event()

    def transcript(self, text, progress):
        progress("waiting for the test", 0.5)
        assert self.gate.wait(30)
        return {"input": "text", "segments": [], "echo": text}

    def media(self, path, name, progress):
        raise AssertionError("not used")


def test_queue_is_bounded_and_results_expire(models, tmp_path):
    engine = GatedEngine()
    settings = ServeSettings(text_model=models[1], storage=tmp_path, workers=1, queue_size=1, retention_seconds=0.6)
    with TestClient(create_app(settings, engines=[engine])) as client:
        first = client.post("/api/jobs", json={"text": "one"}).json()["id"]
        deadline = time.monotonic() + 10
        while client.get(f"/api/jobs/{first}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = client.post("/api/jobs", json={"text": "two"}).json()["id"]
        assert client.get(f"/api/jobs/{second}").json()["queue_position"] == 1
        r = client.post("/api/jobs", json={"text": "three"})
        assert r.status_code == 503 and "busy" in r.json()["detail"] and r.headers["retry-after"]
        engine.gate.set()
        assert wait(client, second)["result"]["echo"] == "two"
        time.sleep(1.0)  # past the retention time: the jobs are forgotten
        r = client.get(f"/api/jobs/{first}")
        assert r.status_code == 404 and "deleted after 0.6 s" in r.json()["detail"]


def test_token(models, tmp_path):
    token = "s3cret-token-of-20-chars"
    settings = ServeSettings(text_model=models[1], storage=tmp_path, token=token)
    with TestClient(create_app(settings)) as client:
        assert client.get("/").status_code == 200  # the page itself holds no data
        r = client.post("/api/jobs", json={"text": "hello"})
        assert r.status_code == 401 and "token" in r.json()["detail"]
        wrong = {"Authorization": "Bearer wrong"}
        assert client.post("/api/jobs", json={"text": "hi"}, headers=wrong).status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        r = client.post("/api/jobs", json={"text": "I am glad."}, headers=auth)
        assert r.status_code == 202
        assert wait(client, r.json()["id"], headers=auth)["status"] == "done"
        r = client.post("/api/jobs", files={"file": ("a.mp4", b"x", "video/mp4")}, headers=auth)
        assert r.status_code == 400 and "transcripts only" in r.json()["detail"]


def test_binding_beyond_loopback_needs_a_token(models, capsys):
    check_bind("127.0.0.1", None)
    check_bind("localhost", None)
    check_bind("0.0.0.0", "a-token-long-enough")
    with pytest.raises(ConfigError, match="--host 0.0.0.0 is reachable from other machines; set --token"):
        check_bind("0.0.0.0", None)
    assert main(["serve", "--host", "0.0.0.0", "--text-model", str(models[1])]) == 2
    assert "set --token" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="at least 16"):
        ServeSettings(text_model=models[1], token="short")
    with pytest.raises(ConfigError, match="needs --model"):
        ServeSettings()


# -- the page in a real browser

def _chromium():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[serve]')")
    return chromium, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_page_in_a_real_browser(app, tmp_path):
    chromium, driver_path = _chromium()
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    port = _free_port()
    # lifespan off: the module's app (and its loaded models) outlives this server
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    browser = None
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        browser = webdriver.Chrome(service=Service(driver_path), options=options)
        clip = media_factory.face_video(tmp_path / "browser clip.mp4", seconds=2.0, fps=5)
        browser.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "limits").text)
        browser.find_element(By.ID, "file").send_keys(str(clip))
        browser.find_element(By.ID, "submit").click()
        WebDriverWait(browser, 10).until(lambda b: "job=" in b.current_url)
        browser.refresh()  # the job survives a reload: the page finds it again from the address
        WebDriverWait(browser, 120).until(ec.visibility_of_element_located((By.ID, "result")))
        assert browser.find_element(By.ID, "error").text == ""
        job_id = browser.current_url.split("job=")[1]
        result = TestClient(app).get(f"/api/jobs/{job_id}").json()["result"]
        n_segments = len(result["segments"])
        drawn = [r for r in browser.find_elements(By.CSS_SELECTOR, "#timeline rect")]
        expected = sum(1 for s in result["segments"] for p in s["probabilities"].values() if p > 0)
        assert n_segments >= 1 and len(drawn) == expected
        assert all(float(r.get_attribute("height")) > 0 for r in drawn)
        bars = browser.find_elements(By.CSS_SELECTOR, "#contributions rect")
        assert {b.get_attribute("data-key") for b in bars} <= {"t", "a", "v"} and bars
        assert sum(float(b.get_attribute("height")) for b in bars) == pytest.approx(80 * n_segments, rel=1e-3)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#segments tbody tr")) == n_segments
    finally:
        if browser is not None:
            browser.quit()
        server.should_exit = True
        thread.join(10)
