"""Output locations of every command that writes: an unusable one is refused before any work starts,
with exit status 2 and one ``error:`` line naming it; a disk that fills up mid-way is reported the same
way, never as a traceback.

Cases, for each output option of each command:

- ``wrong-kind``: an existing file where a folder is expected, or a folder where a file is expected;
- ``parent-is-file``: the location's parent is a file;
- ``no-permission``: a folder without write permission. We run as root, which ignores ``chmod``, so
  the folder is made read-only *and* ``os.access`` is patched in-process to answer "no" for it (what
  it answers for a normal user); the check must consult it;
- ``disk-full``: a 128 KiB tmpfs filled to the last byte (``mount``, as root). Where mounting is not
  permitted, a full disk is simulated by patching ``os.replace`` to fail with ENOSPC under that folder
  (which covers writes through ``mmaffect.io.atomic_write`` only, not LMDB's own writes).

The first three cases run with inputs that do not exist, and with the commands' working entry points
patched to fail the test: the output check must come first. The disk-full case runs the real command
on tiny inputs (a 30-row text manifest, a one-second tone) until its first write fails.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import subprocess
import time
from pathlib import Path

import pytest

from mmaffect.cli import main

CASES = ["wrong-kind", "parent-is-file", "no-permission", "disk-full"]


@dataclasses.dataclass(frozen=True)
class Output:
    """One output option: the command line that writes to ``out``, and whether ``out`` is a folder."""

    name: str
    folder: bool
    suffix: str
    argv: callable  # (out, inputs) -> list[str]


def _manifest_run(command):
    return lambda out, i: [command, "--dataset", f"manifest:{i.manifest}", "--model", "text-mlp", "--epochs", "1",
                           *(["--subsets", "t"] if command == "ablate" else []), "--output", out, "--quiet"]


OUTPUTS = [
    Output("train --output", True, "", _manifest_run("train")),
    Output("ablate --output", True, "", _manifest_run("ablate")),
    Output("evaluate --json", False, ".json", lambda out, i: [
        "evaluate", "--checkpoint", i.checkpoint, "--dataset", f"manifest:{i.manifest}", "--json", out]),
    Output("evaluate --predictions", False, ".csv", lambda out, i: [
        "evaluate", "--checkpoint", i.checkpoint, "--dataset", f"manifest:{i.manifest}", "--predictions", out]),
    Output("benchmark --output", False, ".json", lambda out, i: [
        "benchmark", "train-speed", "--dataset", f"manifest:{i.manifest}", "--model", "text-mlp",
        "--batch-sizes", "8", "--thread-counts", "1", "--epochs", "1", "--output", out]),
    Output("predict --output", False, ".csv", lambda out, i: [
        "predict", "--checkpoint", i.checkpoint, "--dataset", f"manifest:{i.manifest}", "--output", out]),
    Output("analyze --json", False, ".json", lambda out, i: [
        "analyze", i.video, "--checkpoint", i.checkpoint, "--json", out]),
    Output("analyze --plot", False, ".png", lambda out, i: [
        "analyze", i.video, "--checkpoint", i.checkpoint, "--plot", out]),
    Output("extract --output", True, "", lambda out, i: [
        "extract", i.media_manifest, "--output", out, "--asr", "never", "--quiet"]),
    Output("train-analysis-model --output", True, "", lambda out, i: [
        "train-analysis-model", "--output", out, "--seeds", "1", "--quiet"]),
]


@dataclasses.dataclass(frozen=True)
class Inputs:
    manifest: str
    checkpoint: str
    video: str
    media_manifest: str


def _missing_inputs(root: Path) -> Inputs:
    gone = root / "gone"
    return Inputs(str(gone / "m.csv"), str(gone / "model.safetensors"), str(gone / "v.mp4"), str(gone / "media.csv"))


@pytest.fixture(scope="module")
def real_inputs(tmp_path_factory) -> Inputs:
    """A 30-row text manifest, a model trained on it for one epoch, a one-second tone in a media manifest."""
    import media_factory

    root = tmp_path_factory.mktemp("inputs")
    words = {"neg": "awful terrible sad", "pos": "great lovely happy"}
    lines = ["id,text,label,split"]
    for i in range(30):
        label = ("neg", "pos")[i % 2]
        lines.append(f"u{i},{words[label]} number {i},{label},{'train' if i < 18 else 'valid' if i < 24 else 'test'}")
    manifest = root / "m.csv"
    manifest.write_text("\n".join(lines) + "\n")
    assert main(["train", "--dataset", f"manifest:{manifest}", "--model", "text-mlp", "--epochs", "1",
                 "--output", str(root / "run"), "--quiet"]) == 0
    media_factory.write_wav(root / "tone.wav", media_factory.tone(1.0))
    (root / "media.csv").write_text("id,path,text\ntone,tone.wav,a tone\n")
    return Inputs(str(manifest), str(root / "run" / "seed0" / "model.safetensors"), str(root / "tone.wav"),
                  str(root / "media.csv"))


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory):
    """A folder on a full file system: ("tmpfs", DIR) when mounting works, else ("simulated", DIR)."""
    folder = tmp_path_factory.mktemp("full")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    if not mounted:
        yield "simulated", folder
        return
    try:
        fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 512):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        yield "tmpfs", folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def _guard_work(monkeypatch):
    """Every command's real work fails the test: the output check has to come before it."""
    import mmaffect.analysis
    import mmaffect.benchmark.train_speed
    import mmaffect.data.registry
    import mmaffect.extraction.pipeline
    import mmaffect.predictor
    import mmaffect.training.runs

    def started(*args, **kwargs):
        pytest.fail("the command started its work before checking its output location")

    for module, name in [(mmaffect.training.runs, "run_experiment"), (mmaffect.training.runs, "load_experiment_data"),
                         (mmaffect.data.registry, "load_dataset"), (mmaffect.predictor, "evaluate"),
                         (mmaffect.predictor, "load"), (mmaffect.extraction.pipeline, "extract"),
                         (mmaffect.analysis, "Analyzer"), (mmaffect.benchmark.train_speed, "train_speed")]:
        monkeypatch.setattr(module, name, started)


def _deny_writes_in(folder: Path, monkeypatch) -> None:
    """As root, chmod alone stops nothing: os.access answers as it would for a normal user."""
    folder.chmod(0o555)
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and Path(path).resolve().is_relative_to(folder.resolve()):
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def _simulate_full_disk(folder: Path, monkeypatch) -> None:
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).resolve().is_relative_to(folder.resolve()):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def _fake_analysis(monkeypatch):
    """analyze's disk-full case: the analysis itself (a trained fusion model, Whisper) is replaced by a
    fixed result; what is tested is writing it (JSON, PNG timeline)."""
    import mmaffect.analysis

    result = {"video": "tone.wav", "classes": ["neg", "pos"], "modalities": ["t", "a"], "segments": [
        {"start": 0.0, "end": 1.0, "label": "pos", "probabilities": {"neg": 0.3, "pos": 0.7},
         "contributions": {"t": 0.6, "a": 0.4}}]}

    class FakeAnalyzer:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, video, heard=None):
            return result

    monkeypatch.setattr(mmaffect.analysis, "Analyzer", FakeAnalyzer)
    monkeypatch.setattr(mmaffect.analysis, "format_table", lambda r: "segments: 1")


def _small_analysis_model(monkeypatch, manifest: str):
    """train-analysis-model's disk-full case: its first experiment reads the 30-row manifest instead of
    IEMOCAP, so the command reaches its first write in seconds."""
    import mmaffect.training.runs as runs

    real = runs.load_experiment_data
    monkeypatch.setattr(runs, "load_experiment_data", lambda config: real(
        dataclasses.replace(config, dataset=f"manifest:{manifest}", dataset_args={})))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("output", OUTPUTS, ids=[o.name.replace(" --", "-") for o in OUTPUTS])
def test_output_location(output, case, tmp_path, monkeypatch, capsys, request):
    name = "out" + output.suffix
    if case == "wrong-kind":
        out = tmp_path / name
        if output.folder:
            out.write_text("a file where the output folder should be\n")
        else:
            out.mkdir()
    elif case == "parent-is-file":
        (tmp_path / "plain").write_text("x\n")
        out = tmp_path / "plain" / name
    elif case == "no-permission":
        (tmp_path / "locked").mkdir()
        _deny_writes_in(tmp_path / "locked", monkeypatch)
        out = tmp_path / "locked" / name
    else:
        mode, full = request.getfixturevalue("full_disk")
        inputs = request.getfixturevalue("real_inputs")
        if mode == "simulated":
            _simulate_full_disk(full, monkeypatch)
        out = full / f"{output.name.split()[0]}-{output.name.split()[1][2:]}{output.suffix}"
    before = sorted(p.name for p in out.parent.iterdir()) if out.parent.is_dir() else None
    if case == "disk-full":
        if output.name.startswith("analyze"):
            _fake_analysis(monkeypatch)
        if output.name.startswith("train-analysis-model"):
            _small_analysis_model(monkeypatch, inputs.manifest)
    else:
        inputs = _missing_inputs(tmp_path)
        _guard_work(monkeypatch)
    started = time.perf_counter()
    code = main(output.argv(str(out), inputs))
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(out) in lines[0], f"the error does not name {out}: {lines[0]}"
    if case == "disk-full":
        assert "space" in lines[0].lower(), lines[0]
        assert not [p for p in out.parent.rglob(".*.tmp")], "a temporary file was left behind"
    else:
        assert "gone" not in lines[0]  # the missing inputs were never looked at
        assert elapsed < 5, f"{elapsed:.1f} s: the check did not come first"
        after = sorted(p.name for p in out.parent.iterdir()) if out.parent.is_dir() else None
        assert after == before, "the refused command still created files"
