"""What a job did: one row per item (and per skipped manifest row) in :class:`ExtractionReport`,
written atomically to ``report.csv``, with the summary line ``mmaffect extract`` prints.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from mmaffect.extraction.config import REPORT_COLUMNS, REPORT_FILE, ExtractItem, SkippedRow
from mmaffect.features.asr import LOW_CONFIDENCE_LOGPROB
from mmaffect.io import atomic_write

__all__ = ["ExtractionReport", "UNRELIABLE_ASR_MEAN", "UNRELIABLE_NO_SPEECH_MEAN"]



# A job whose ASR transcripts average below this log-probability, or above this no-speech probability,
# gets a warning in its summary. Measured with the packaged tiny.en: the 40 real IEMOCAP clips (English,
# 38 transcribed) average -0.61 and 0.11; espeak-ng sentences in German, French, Spanish and Russian
# give -0.9 to -1.6 (no-speech 0.35-0.44), in Chinese -0.49 but no-speech 0.40; English espeak-ng -0.4/0.1.
UNRELIABLE_ASR_MEAN = -0.8
UNRELIABLE_NO_SPEECH_MEAN = 0.3


@dataclass
class ExtractionReport:
    """What a run did. ``rows`` has one dict per item (id, row, path, status, reason, warnings, run,
    asr_logprob) where ``status`` is ok / failed / pending / skipped and ``run`` is extracted / cached /
    updated / pending / skipped; skipped rows are manifest rows that could not be used (not items)."""

    output: Path
    rows: list[dict]
    n_extracted: int = 0
    n_cached: int = 0
    seconds: float = 0.0
    media_seconds: float = 0.0  # media extracted by this run
    stage_seconds: dict[str, float] = field(default_factory=dict)  # summed over items (all workers)
    workers: int = 1
    asr_mode: str | None = None  # config.asr_mode(): shown in the summary, so the ASR choice is never hidden

    @property
    def n_items(self) -> int:
        return sum(r["status"] != "skipped" for r in self.rows)

    @property
    def n_skipped(self) -> int:
        return sum(r["status"] == "skipped" for r in self.rows)

    @property
    def asr_logprobs(self) -> list[float]:
        """Mean token log-probability of each ASR transcript in the cache for these items."""
        return [r["asr_logprob"] for r in self.rows if r.get("asr_logprob") is not None]

    def asr_summary(self) -> str | None:
        """How many items were transcribed and how confidently; a warning when the job's transcripts
        look unreliable as a whole (the usual cause: the ASR model does not know the language)."""
        lps = self.asr_logprobs
        mode = f"asr ({self.asr_mode})" if self.asr_mode else "asr"
        if not lps:
            return None if self.asr_mode is None else f"{mode}: nothing transcribed"
        mean = sum(lps) / len(lps)
        no_speech = [r["asr_no_speech"] for r in self.rows if r.get("asr_no_speech") is not None]
        mean_ns = sum(no_speech) / len(no_speech) if no_speech else 0.0
        low = sum(lp < LOW_CONFIDENCE_LOGPROB for lp in lps)
        text = (f"{mode}: {len(lps)} transcribed, mean log-probability {mean:.2f}, mean no-speech probability "
                f"{mean_ns:.2f}, {low} low-confidence")
        if mean < UNRELIABLE_ASR_MEAN or mean_ns > UNRELIABLE_NO_SPEECH_MEAN:
            text += (f" -- WARNING: the transcripts look unreliable (log-probability below {UNRELIABLE_ASR_MEAN:g} or "
                     f"no-speech above {UNRELIABLE_NO_SPEECH_MEAN:g}); if the speech is not English, use a "
                     "multilingual --asr-model, or --asr never for an audio-only corpus")
        return text

    @property
    def n_failed(self) -> int:
        return sum(r["status"] == "failed" for r in self.rows)

    @property
    def n_ok(self) -> int:
        return sum(r["status"] == "ok" for r in self.rows)

    @property
    def failed(self) -> dict[str, str]:
        return {r["id"]: r["reason"] for r in self.rows if r["status"] == "failed"}

    @property
    def report_path(self) -> Path:
        return self.output / REPORT_FILE

    def summary(self) -> str:
        warned = sum(bool(r["warnings"]) for r in self.rows)
        rtf = f", RTF {self.seconds / self.media_seconds:.3f}" if self.media_seconds > 0 else ""
        skipped = f", {self.n_skipped} manifest row(s) skipped" if self.n_skipped else ""
        asr = self.asr_summary()
        return (f"{self.n_items} items: {self.n_extracted} extracted, {self.n_cached} already cached; "
                f"{self.n_ok} ok ({warned} with warnings), {self.n_failed} failed{skipped}; {self.seconds:.1f} s"
                f"{rtf}{f'; {asr}' if asr else ''}; report: {self.report_path}")


def _write_report(path: Path, rows: list[dict]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=REPORT_COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow({**{k: "" if v is None else v for k, v in row.items()},
                                 "warnings": "; ".join(row["warnings"])})

    atomic_write(path, write)


def _row(item: ExtractItem, record: dict | None, run: str) -> dict:
    row = {"id": item.id, "row": item.meta.get("row"), "path": str(item.path), "status": "pending", "reason": None,
           "warnings": [], "run": run, "asr_logprob": None, "asr_no_speech": None}
    if record is not None:
        asr = record.get("asr") or {}
        row.update(status=record["status"], reason=record.get("reason"), warnings=list(record.get("warnings") or []),
                   asr_logprob=asr.get("avg_logprob"), asr_no_speech=asr.get("no_speech_prob"))
    return row


def _skipped_row(skip: SkippedRow) -> dict:
    return {"id": skip.id, "row": skip.row, "path": skip.path, "status": "skipped", "reason": skip.reason,
            "warnings": [], "run": "skipped", "asr_logprob": None, "asr_no_speech": None}
