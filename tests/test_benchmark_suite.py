"""``mmaffect benchmark SUITE.yaml``: a tiny real suite end to end (results.csv, report.md, report.html),
resuming (finished cells skipped, an interrupted cell re-runs only its missing seed), bad suite files,
and the HTML report rendered in headless chromium with no broken image."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from mmaffect.benchmark.suite import load_suite
from mmaffect.cli import main
from mmaffect.errors import ConfigError

WORDS = {"anger": ["furious", "hate this", "awful", "so mad"], "calm": ["fine", "okay", "a table", "nothing much"],
         "joy": ["great", "happy", "wonderful", "love it"]}


def _suite(folder: Path, seeds: int = 2) -> Path:
    """A text-emotion manifest (3 classes) and mosi-bclstm; two models, an ablation on mosi."""
    rows = [{"id": f"{split}-{label}-{i}", "text": f"{ws[i % 4]} {ws[(i + 1) % 4]} number {i}", "label": label,
             "split": split}
            for split, n in (("train", 8), ("valid", 3), ("test", 4)) for label, ws in WORDS.items() for i in range(n)]
    with open(folder / "toy.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "text", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    suite = folder / "suite.yaml"
    suite.write_text(f"""name: tiny
description: a test suite
datasets:
  - {{name: "manifest:{folder / 'toy.csv'}", label: "toy emotions"}}
  - mosi-bclstm
models: [ef-mlp, lf-dnn]
seeds: {seeds}
train: {{epochs: 2}}
ablation: {{model: lf-dnn, subsets: [t, ta], datasets: [mosi-bclstm]}}
""")
    return suite


@pytest.fixture(scope="module")
def finished(data_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("suite")
    suite = _suite(folder)
    assert main(["--threads", "1", "benchmark", str(suite), "--output", str(folder / "out")]) == 0
    return suite, folder / "out"


def test_suite_writes_csv_markdown_and_html(finished):
    _, out = finished
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 2 * 2 * 2 + 2 * 2  # (2 datasets x 2 models + 2 ablation subsets) x 2 seeds
    assert set(table["model"]) == {"ef-mlp", "lf-dnn"}
    assert table[table["dataset"] == "mosi-bclstm"]["acc2_has0"].between(40, 100).all()
    markdown = (out / "report.md").read_text()
    assert "## toy emotions — test split: the manifest's split column" in markdown
    assert "*published, same data and split:* bc-LSTM (T+A+V) (contextual) |  | 80.3 |" in markdown
    assert "| lf-dnn | ta |" in markdown
    assert "| *floor:* test majority class (non-negative) |  | 62.1 | 47.6 |" in markdown  # README floor row
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 2 * 4 + 1  # spread, time, F1, confusions; ablation bars
    assert "src=\"http" not in page and "<script" not in page  # self-contained


def test_finished_cells_are_skipped_and_an_interrupted_cell_resumes(finished, monkeypatch, caplog):
    suite, out = finished
    import mmaffect.training.runs as runs

    trained = []
    real_run_one = runs.run_one
    monkeypatch.setattr(runs, "run_one", lambda config, data, plan, *a, **k: trained.append(
        (config.model, config.dataset, plan.seed)) or real_run_one(config, data, plan, *a, **k))
    cell = out / "cells" / "mosi-bclstm__lf-dnn"
    (cell / "results.json").unlink()
    shutil.rmtree(cell / "seed1")
    before = (out / "results.csv").read_text()
    with caplog.at_level("INFO", logger="mmaffect.benchmark.suite"):
        assert main(["--threads", "1", "benchmark", str(suite), "--output", str(out)]) == 0
    assert trained == [("lf-dnn", "mosi-bclstm", 1)]  # only the missing run
    assert sum("finished earlier, skipped" in r.getMessage() for r in caplog.records) == 5
    after = pd.read_csv(out / "results.csv")
    assert len(after) == len(pd.read_csv(pd.io.common.StringIO(before)))
    assert json.loads((cell / "results.json").read_text())["seeds"] == [0, 1]


@pytest.mark.parametrize("text, message", [
    ("models: [tfn]\n", "'datasets' must be a non-empty list"),
    ("datasets: [mosi-bclstm]\nmodels: tfn\n", "'models' must be a non-empty list"),
    ("datasets: [mosi-bclstm]\nmodels: [tfn]\nepochs: 3\n", "unknown key(s) epochs"),
    ("datasets: [{label: x}]\nmodels: [tfn]\n", "each dataset is a name or a mapping with 'name'"),
    ("datasets: [mosi-bclstm]\nmodels: [tfn]\nablation: {model: tfn}\n", "'ablation' must be a mapping"),
    ("[1, 2\n", "cannot read the suite"),
])
def test_bad_suite_files_are_one_line_errors(tmp_path, text, message, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=str(path)):
        load_suite(path)
    assert main(["benchmark", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_train_speed_still_needs_dataset_and_model(tmp_path, capsys):
    assert main(["benchmark", "train-speed", "--output", str(tmp_path / "t.json")]) == 2
    assert "benchmark train-speed needs --dataset and --model" in capsys.readouterr().err


def _broken_images(page: Path) -> tuple[int, int]:
    """(images, broken images) of a page rendered by headless chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[serve]')")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    try:
        browser.get(page.resolve().as_uri())
        return tuple(browser.execute_script(
            "const imgs = Array.from(document.images);"
            "return [imgs.length, imgs.filter(i => !i.complete || i.naturalWidth === 0).length];"))
    finally:
        browser.quit()


def test_html_report_renders_in_chromium_without_broken_images(finished, tmp_path):
    _, out = finished
    images, broken = _broken_images(out / "report.html")
    assert images >= 9 and broken == 0
    # the check can fail: the same page with one corrupted image is caught
    page = (out / "report.html").read_text().replace("base64,iVBOR", "base64,XXXX", 1)
    (tmp_path / "broken.html").write_text(page)
    assert _broken_images(tmp_path / "broken.html") == (images, 1)
