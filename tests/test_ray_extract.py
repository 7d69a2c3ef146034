"""``mmaffect extract --ray``: items as Ray tasks on a local Ray with 2 workers write the same cache, the
same failure report and resume like the in-process run (one local Ray for the module)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

pytest.importorskip("ray")

try:
    import media_factory as mf
    from test_extraction import assert_same_cache, read_report
except ModuleNotFoundError:  # tests/ imported as a package
    from tests import media_factory as mf
    from tests.test_extraction import assert_same_cache, read_report

from mmaffect.commands.extract import add_parser, run  # noqa: E402
from mmaffect.extraction.pipeline import ExtractItem, extract  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 1024 ** 2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> list[ExtractItem]:
    d = tmp_path_factory.mktemp("ray-media")
    files = {"good": mf.face_video(d / "good.mp4", seconds=2.0), "noface": mf.noface_video(d / "noface.mp4"),
             "audio_only": mf.audio_only_mp4(d / "audio_only.mp4"), "zero": mf.zero_byte(d / "zero.mp4"),
             "text_as_mp4": mf.text_as_mp4(d / "text_as_mp4.mp4"), "missing": d / "missing.mp4"}
    return [ExtractItem(name, path, text=f"words of {name}", meta={"label": "hap" if i % 2 else "sad"})
            for i, (name, path) in enumerate(files.items())]


def test_ray_extraction_equals_the_serial_run_and_resumes(local_ray, items, tmp_path):
    serial = extract(items, tmp_path / "serial", workers=1, progress=False)
    on_ray = extract(items, tmp_path / "ray", workers=2, ray="", progress=False)
    assert on_ray.workers == 2 and on_ray.n_extracted == len(items)
    assert on_ray.failed == serial.failed and set(on_ray.failed) == {"zero", "text_as_mp4", "missing"}
    assert_same_cache(tmp_path / "serial", tmp_path / "ray")
    strip = {"path", "status", "reason", "warnings", "run"}
    assert {k: {c: r[c] for c in strip} for k, r in read_report(tmp_path / "ray").items()} == \
        {k: {c: r[c] for c in strip} for k, r in read_report(tmp_path / "serial").items()}

    again = extract(items, tmp_path / "ray", workers=2, ray="", progress=False)
    assert again.n_extracted == 0 and again.n_cached == len(items)
    more = [*items, ExtractItem("good2", items[0].path, text="other words")]
    resumed = extract(more, tmp_path / "ray", workers=2, ray="", progress=False)
    assert resumed.n_extracted == 1 and resumed.n_cached == len(items)


def test_cli_ray_option(local_ray, items, tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,path,text\n" + f"a,{items[0].path},hello there\n")
    (tmp_path / "media").mkdir()
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["extract", str(manifest), "--output", str(tmp_path / "out"), "--ray", "--quiet",
                              "--media-root", str(Path(items[0].path).parent)])
    assert args.ray == "" and args.workers is None
    assert run(args) == 0
    assert read_report(tmp_path / "out")["a"]["status"] == "ok"
