"""Command-line edges: help texts for people, one-line errors for bad options, the thread setting,
and what the results table says (binary weighted F1, UA, the modalities a run had, what "±" is over)."""

from __future__ import annotations

import json
import os
import time
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

from mmaffect.cli import build_parser, format_results, main
from mmaffect.data.dataset import AffectDataset, Modality
from mmaffect.metrics import binary_metrics
from mmaffect.models.registry import model_info
from mmaffect.tasks import Task, empty_modalities

COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)


def _manifest(path, n=30, labels=("neg", "pos")):
    """A small text manifest with a split column: distinct words per class, so a model learns it."""
    words = {"neg": "awful terrible sad", "pos": "great lovely happy", "neu": "table chair window"}
    rows = ["id,text,label,split"]
    for i in range(n):
        label = labels[i % len(labels)]
        split = "train" if i < 0.6 * n else "valid" if i < 0.8 * n else "test"
        rows.append(f"u{i},{words[label]} number {i},{label},{split}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_is_written_for_people(command, capsys):
    """No Sphinx/reST markup (``code``, :mod:, :func:, ...) in `mmaffect --help` or any command's help."""
    with pytest.raises(SystemExit) as exit_:
        main(["--help"] if command is None else [command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: mmaffect")
    for markup in ("``", ":mod:", ":func:", ":class:", ":meth:", "::\n"):
        assert markup not in text, f"{markup!r} in the help of {command or 'mmaffect'}"
    if command is None:
        assert all(name in text for name in COMMANDS) and "examples:" in text


# ---------------------------------------------------------------------------------- bad options


@pytest.mark.parametrize("argv, message", [
    (["--threads", "-1", "datasets"], "--threads must be 1 or more, not -1"),
    (["datasets", "--threads", "0"], "--threads must be 1 or more, not 0"),
    (["train", "--cv", "abc"], "--cv takes a number of folds (2 or more) or 'column', not 'abc'"),
    (["train", "--cv", "1"], "--cv takes a number of folds (2 or more) or 'column', not '1'"),
    (["train", "--set", "train.lr=[1"], "--set train.lr=[1: the value is not valid YAML"),
    (["train", "--set", "train=3"], "train must be a mapping of options"),
    (["train", "--set", "train.loss_weights=3"], "train.loss_weights must be a mapping, got 3"),
    (["train", "--set", "train.grad_clip=[1]"], "train.grad_clip must be a number, got [1]"),
    (["train", "--set", "modalities=3"], "config.modalities must be a list, got 3"),
    (["train", "--set", "train..lr=1"], "the key 'train..lr' is not a dotted name"),
    (["benchmark", "train-speed", "--batch-sizes", "64,x"], "--batch-sizes takes positive integers"),
    (["benchmark", "train-speed", "--thread-counts", "0"], "--thread-counts takes positive integers"),
])
def test_bad_options_are_one_line_errors(argv, message, tmp_path, capsys):
    command, rest = argv[:1], argv[1:]
    if command == ["train"]:
        argv = ["train", "--dataset", "mosi-bclstm", "--model", "ef-mlp", "--output", str(tmp_path / "o"), *rest]
    elif command == ["benchmark"]:
        argv = ["benchmark", *rest, "--dataset", "mosi-bclstm", "--model", "ef-mlp",
                "--output", str(tmp_path / "o.json")]
    started = time.perf_counter()
    assert main(argv) == 2
    assert message in _one_line_error(capsys)
    assert time.perf_counter() - started < 5  # refused before any data are read or models trained
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.json").exists()


def test_bad_yaml_reads_the_same_from_set_and_from_a_config_file(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  lr: [1\n")
    base = ["train", "--dataset", "mosi-bclstm", "--model", "ef-mlp", "--output", str(tmp_path / "o")]
    assert main([*base, "--config", str(config)]) == 2
    assert "cannot read config" in _one_line_error(capsys)
    assert main([*base, "--set", "train.lr=[1"]) == 2
    assert "not valid YAML" in _one_line_error(capsys)


# -------------------------------------------------------------------------------------- threads


def test_threads_before_or_after_the_command_reach_every_command(monkeypatch):
    """`args.threads` is on the namespace of every command (extract and analyze pass it to their
    workers and ASR), whether --threads comes before or after the command name."""
    parser = build_parser()
    assert parser.parse_args(["--threads", "2", "analyze", "v.mp4"]).threads == 2
    assert parser.parse_args(["extract", "m.csv", "--output", "c", "--threads", "3"]).threads == 3
    assert parser.parse_args(["datasets"]).threads is None
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    try:
        assert main(["datasets", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)


def test_threads_reach_torch_loaded_after_the_setting():
    """The CLI does not import torch to set --threads (analyze starts Whisper before torch's import);
    torch loaded later in the process still uses that many threads."""
    import subprocess
    import sys

    code = ("import sys; from mmaffect.cli import _apply_threads; _apply_threads(1); "
            "assert 'torch' not in sys.modules; import torch; print(torch.get_num_threads())")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_openmp_waits_passively_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main(["datasets"]) == 0
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # a user's own choice is kept
    assert main(["datasets"]) == 0
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


# ------------------------------------------------------------------------------ results table


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_tasks_report_weighted_f1_and_ua(seed):
    rng = np.random.default_rng(seed)
    target = (rng.random(60) < 0.3).astype(int)  # imbalanced, as binary affect sets are
    prob = np.clip(0.35 * target + 0.65 * rng.random(60), 0, 1)
    pred = (prob >= 0.5).astype(int)
    m = binary_metrics(prob, target)
    assert m["f1_weighted"] == pytest.approx(100 * f1_score(target, pred, average="weighted", zero_division=0))
    assert m["wacc"] == pytest.approx(100 * balanced_accuracy_score(target, pred))
    assert m["f1_weighted"] != pytest.approx(m["f1"])  # not the positive-class F1 under another name


def test_ua_is_wacc_on_a_fold_lacking_a_class():
    """UA = mean recall over the classes present in the test fold: class 2 is absent but predicted."""
    task = Task(kinds=("classification",), class_names=("a", "b", "c"))
    target = np.array([0, 0, 0, 0, 1, 1])
    prob = np.eye(3)[[0, 0, 0, 2, 1, 0]]
    m = task.metrics({"prob": prob}, {"label": target})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that class 2 is predicted but absent
        assert m["wacc"] == pytest.approx(100 * balanced_accuracy_score(target, prob.argmax(1)))
    assert m["wacc"] == pytest.approx(62.5)  # (3/4 + 1/2) / 2: the absent class is left out
    assert m["recall_macro"] == pytest.approx(100 * recall_score(target, prob.argmax(1), average="macro",
                                                              zero_division=0))
    assert m["recall_macro"] == pytest.approx(100 * 1.25 / 3)  # the documented difference


def _results(metrics=("acc", "wacc", "recall_macro"), seeds=(0, 1), folds=None, **extra):
    n_runs = len(seeds) * (len(folds) if folds else 1)
    stats = {m: {"mean": 50.0, "std": 1.0, "per_run": [50.0] * n_runs} for m in metrics}
    return {"model": "text-mlp", "dataset": "manifest:x.csv", "split": "s", "modalities": ["t", "a", "v"],
            "seeds": list(seeds), "folds": folds, "test": stats, "valid": stats, "published": [],
            "n_params": 10, "seconds_per_epoch": 0.1, "train_seconds": 1.0, "epochs_run": [1] * n_runs,
            "best_epochs": [1] * n_runs, **extra}


def test_the_spread_is_described_over_folds_and_seeds():
    header = format_results(_results(folds=[0, 1, 2])).splitlines()[0]
    assert "± over 3 folds x 2 seeds [0, 1] (6 runs" in header and "run(s)" not in header
    header = format_results(_results(seeds=(0, 1, 2))).splitlines()[0]
    assert "± over 3 seeds [0, 1, 2]" in header and "folds" not in header
    assert "one run (seed 4): no spread" in format_results(_results(seeds=(4,))).splitlines()[0]


def test_ua_definition_is_printed_with_the_table():
    table = format_results(_results())
    assert "wacc = UA: mean recall over the classes present in each test fold" in table
    assert "recall_macro also counts" in table
    assert "UA" not in format_results(_results(metrics=("mae", "corr")))


def test_header_names_only_modalities_the_data_have():
    n = 8
    data = AffectDataset(name="d", ids=np.array([f"u{i}" for i in range(n)]), modalities={
        "t": Modality(torch.randn(n, 4)), "a": Modality(torch.randn(n, 3)),
        "v": Modality(torch.zeros(n, 5))})  # audio-only recordings: the reader fills video with zeros
    assert empty_modalities(data) == ["v"]
    header = format_results(_results(empty_modalities=["v"])).splitlines()[0]
    assert "modalities t,a (v: no data" in header and "t,a,v" not in header
    assert "modalities t,a,v;" in format_results(_results()).splitlines()[0]  # old results.json files


def test_binary_training_reports_weighted_f1(tmp_path, capsys):
    """End to end on a 30-row text manifest: the binary table and results.json carry f1_weighted and
    wacc, and the header lists the one modality the file has, over what the ± is taken."""
    manifest = _manifest(tmp_path / "m.csv")
    out = tmp_path / "run"
    assert main(["train", "--dataset", f"manifest:{manifest}", "--model", "text-mlp", "--seeds", "2",
                 "--epochs", "2", "--output", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert {"acc", "wacc", "f1", "f1_weighted", "f1_macro", "auc"} <= set(results["test"])
    header, table = printed.splitlines()[0], printed.splitlines()[1:]
    assert "modalities t;" in header and "± over 2 seeds [0, 1]" in header
    assert any(line.startswith("f1_weighted") for line in table)


def test_cross_validated_spread_is_over_folds_and_seeds(tmp_path, capsys):
    manifest = _manifest(tmp_path / "m.csv")
    out = tmp_path / "cv"
    assert main(["train", "--dataset", f"manifest:{manifest}", "--model", "text-mlp", "--cv", "3", "--group-by",
                 "none", "--seeds", "2", "--epochs", "1", "--output", str(out), "--quiet"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "± over 3 folds x 2 seeds [0, 1] (6 runs; sample std)" in header
    results = json.loads((out / "results.json").read_text())
    assert len(results["test"]["acc"]["per_run"]) == 6 and results["folds"] == [0, 1, 2]


def test_library_messages_reach_stderr_once(tmp_path, capsys):
    """Library code logs instead of printing; the CLI shows those lines on stderr, once each however often
    main runs in one process (one handler), and keeps stdout for results."""
    rows = ["text,label"] + [f"utterance number {i} {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}"
                             for i in range(24)]
    manifest = tmp_path / "rows.csv"
    manifest.write_text("\n".join(rows) + "\n")
    for run in ("a", "b"):
        assert main(["--threads", "1", "train", "--dataset", f"manifest:{manifest}", "--model", "linear",
                     "--cv", "3", "--group-by", "none", "--epochs", "2", "--quiet", "--output",
                     str(tmp_path / run)]) == 0
        out, err = capsys.readouterr()
        assert "validation search" not in out
        grid = len(model_info("linear").search["train.weight_decay"])
        assert err.count(f"validation search over {grid} candidates chose") == 3  # one per fold, not duplicated


def test_the_mediapipe_backend_without_mediapipe_says_what_to_install(tmp_path, monkeypatch, capsys):
    """The media extractors are base dependencies; only the optional mediapipe face backend is installed
    apart. Asking for it without mediapipe stops with one line naming the install command, before any
    work (not ModuleNotFoundError once per item from inside the workers)."""
    import importlib.util

    (tmp_path / "clip.mp4").write_bytes(b"not decoded: the check comes first")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path\nclip.mp4\n")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mediapipe" else real(name, *a))
    out = tmp_path / "out"
    assert main(["extract", str(manifest), "--output", str(out), "--face-backend", "mediapipe", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "mediapipe is not installed" in err and "mmaffect[mediapipe]" in err and "--no-deps" in err
    assert "Traceback" not in err and not (out / "meta.json").exists()
