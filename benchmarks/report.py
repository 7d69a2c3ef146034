"""Print every results table of the README (markdown) from the JSON files in benchmarks/results/.

Speed comes from the dedicated benchmark files only (``train-speed_*.json``, ``extraction_speed.json``),
measured on an idle machine; the ``seconds_per_epoch`` inside a training results file depends on
whatever else ran at the time, so the accuracy tables do not show it.

    python benchmarks/report.py

The README's tables are this script's output pasted verbatim; ``tests/test_report.py`` fails when one
differs (a hand-edited number, or a results file re-measured without updating the README).
Which command writes which file:

* ``bash benchmarks/baselines.sh``: ``mosi-bclstm_*.json``, ``*-text_*.json``, ``*_ablation.json``,
  ``train-speed_*.json`` and (through ``benchmarks/floors.py``) ``floors.json``;
* ``python benchmarks/extraction_speed.py``: ``extraction_speed.json``;
* ``python benchmarks/analysis_model.py``: ``analysis_model.json``;
* ``python benchmarks/context_models.py --dataset D`` (D = iemocap6-text, meld7-text, mosi-bclstm,
  sentiment2:mosi-bclstm): ``context_D.json`` (a colon in D becomes ``_``); with ``--encoder PATTERN``
  (fine-tuned text encoders, one per seed) ``context_D_finetuned.json``;
* ``python benchmarks/small_data.py --work DIR``: ``small_data.json``;
* ``python benchmarks/seeds_003_004.py --suite S`` (S = mosi, runtime, text, clips): ``seeds_003_004_S.json``;
* ``python benchmarks/seeds_000_002.py --work DIR``: ``seeds_000_002.json``;
* ``bash benchmarks/vs_mmsa/run.sh``: ``vs_mmsa.json``;
* ``python benchmarks/zoo.py --work DIR``: ``zoo_*.json``;
* ``bash benchmarks/mosi_text.sh``: ``context_*mosi-bclstm_{minilm,finetuned*}.json``,
  ``context_floor_*.json`` and ``sentiment2_mosi-bclstm_text-finetune-window2.json`` (MOSI with MiniLM
  text vectors of the transcripts, frozen or fine-tuned);
* ``bash benchmarks/engine.sh``: ``context_*_finetuned.json`` (the text-finetune encoders, their own heads
  being the text-finetune rows, and the context models on them), ``mosi-bclstm_bc-lstm*.json`` and
  (through ``benchmarks/context_floor.py``) ``context_floor.json``.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SENTIMENT = ["acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7", "mae", "corr"]
ABLATION = ["acc2_has0", "acc2_non0", "f1_non0", "acc7", "mae", "corr"]
EMOTION = ["acc", "wacc", "f1_weighted", "f1_macro"]
MOSI_MODELS = ["tfn", "lf-dnn", "lmf", "ef-mlp", "text-mlp"]
EMOTION_RUNS = ["iemocap6-text_text-mlp", "meld7-text_text-mlp", "meld3-text_text-mlp", "iemocap6-text_ef-lstm",
                "iemocap8-text_text-mlp"]
# published rows shown in the emotion table: the non-contextual RoBERTa baseline and the best contextual model
SHOWN_PUBLISHED = ("RoBERTa", "RoBERTa COSMIC (contextual)")
EXTRACTION_STAGES = [("decode", "decode"), ("face", "face (detection, mesh, FER, crop)"),
                     ("audio", "audio descriptors"), ("asr", "ASR (Whisper tiny.en)")]


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def digits(metric: str) -> int:
    return 3 if metric in ("mae", "corr") else 1


def cell(stats: dict, metric: str) -> str:
    d = digits(metric)
    return f"{stats[metric]['mean']:.{d}f} ± {stats[metric]['std']:.{d}f}"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def mosi() -> str:
    """Sentiment on MOSI: the baselines, the published contextual models, the floors."""
    rows = [[model] + [cell(load(f"mosi-bclstm_{model}.json")["test"], m) for m in SENTIMENT] for model in MOSI_MODELS]
    for ref in load(f"mosi-bclstm_{MOSI_MODELS[0]}.json")["published"]:
        if ref["comparable"]:
            rows.append([f"*published, same split:* {ref['model']}"]
                        + [f"{ref['value']:g}" if m == ref["metric"] else "" for m in SENTIMENT])
    floors = load("floors.json")["floors"]["mosi-bclstm"]
    names = {"majority": "majority rate of the test split", "logreg_t": "logistic regression, text",
             "logreg_tav": "logistic regression, t+a+v"}
    for key, name in names.items():
        rows.append([f"*floor:* {name}"] + [f"{floors[key][m]:.1f}" if m in floors[key] else "" for m in SENTIMENT])
    return markdown(["model", *SENTIMENT], rows)


def ablation() -> str:
    a = load("mosi-bclstm_tfn_ablation.json")
    return markdown(["modalities", *ABLATION],
                    [[row["modalities"]] + [cell(row["test"], m) for m in ABLATION] for row in a["rows"]])


def emotion() -> str:
    rows = []
    for name in EMOTION_RUNS:
        r = load(f"{name}.json")
        refs = [f"{p['model']} {p['value']:g}" for p in r["published"]
                if p["comparable"] and p["metric"] == "f1_weighted" and p["model"] in SHOWN_PUBLISHED]
        rows.append([f"{r['dataset']} ({r['split']})", r["model"]] + [cell(r["test"], m) for m in EMOTION]
                    + ["; ".join(refs) or "–"])
    return markdown(["dataset (split)", "model", "acc", "UA (wacc)", "f1_weighted", "f1_macro",
                     "published f1_weighted, same split"], rows)


def emotion_floors() -> str:
    floors = load("floors.json")["floors"]
    rows = []
    for name, f in floors.items():
        if name == "mosi-bclstm":
            continue
        rows.append([name, f"test majority class ({f['majority']['class']})"]
                    + [f"{f['majority'][m]:.1f}" for m in EMOTION])
        rows.append([name, f"logistic regression (C={f['logreg_t']['C']:g})"]
                    + [f"{f['logreg_t'][m]:.1f}" for m in EMOTION])
    return markdown(["dataset", "floor", "acc", "UA (wacc)", "f1_weighted", "f1_macro"], rows)


def train_speed() -> str:
    rows, header = [], None
    for model in ("tfn", "lf-dnn", "lmf"):
        s = load(f"train-speed_mosi-bclstm_{model}.json")
        cells = sorted(s["rows"], key=lambda row: (row["threads"], row["batch_size"]))
        header = header or [f"{c['threads']} thread{'s' if c['threads'] > 1 else ''}, batch {c['batch_size']}"
                            for c in cells]
        rows.append([model, f"{s['n_params']:,}"] + [f"{c['median_epoch_s']:.3f}" for c in cells])
    return markdown(["model", "parameters", *header], rows)


def extraction_speed() -> str:
    e = load("extraction_speed.json")
    runs = e["runs"]

    def stage_rtf(stage: str, workers: int) -> str:
        run = runs[f"pipeline_asr_w{workers}" if stage == "asr" else f"pipeline_w{workers}"]
        return f"{run['stages'][stage]['rtf']:.3g}"

    rows = [[name, stage_rtf(stage, 1), stage_rtf(stage, 2)] for stage, name in EXTRACTION_STAGES]
    by_threads = {t["threads"]: t for t in e["text_embedding"]}
    rows.append(["text embedding (MiniLM)"] + [f"{by_threads[w]['rtf']:.3g}" for w in (1, 2)])
    rows.append(["**whole pipeline, transcripts given**"]
                + [f"**{runs[f'pipeline_w{w}']['rtf']:.3g}** ({runs[f'pipeline_w{w}']['wall_seconds']:.1f} s)"
                   for w in (1, 2)])
    rows.append(["whole pipeline with ASR on every clip"]
                + [f"{runs[f'pipeline_asr_w{w}']['rtf']:.3g}" for w in (1, 2)])
    return markdown(["stage", "RTF, 1 worker", "RTF, 2 workers"], rows)


def _acc_f1(stats: dict) -> str:
    return (f"acc {stats['acc']['mean']:.1f} ± {stats['acc']['std']:.1f}, "
            f"F1w {stats['f1_weighted']['mean']:.1f} ± {stats['f1_weighted']['std']:.1f}")


def analysis_model() -> str:
    a = load("analysis_model.json")
    s = a["summary"]
    text = s["text_branch_session1"]
    transfer = a.get("voice_transfer") or {}  # the audio branch from the RAVDESS voice model
    default = a.get("default", "fusion")
    rows = [["5-fold, grouped by dialogue", _acc_f1(s["fusion"]["text_only"]), _acc_f1(s["fusion"]["fusion"])],
            ["leave-one-speaker-out (2 folds)", _acc_f1(s["fusion-by-speaker"]["text_only"]),
             _acc_f1(s["fusion-by-speaker"]["fusion"])],
            [f"text branch on all {a['text_branch_session1_rows']} Session 1 utterances of these classes",
             f"acc {text['acc']['mean']:.1f}, F1w {text['f1_weighted']['mean']:.1f}", "–"]]
    fused = " (the default model)" if not transfer else f" (valid acc {s['fusion']['valid']['acc']['mean']:.1f})"
    header = ["evaluation", "text branch alone", "text + audio + video" + fused]
    for name, evaluations in transfer.items():
        for row, evaluation in zip(rows, ("fusion", "fusion-by-speaker", None), strict=True):
            row.append(_acc_f1(evaluations[evaluation]["test"]) if evaluation else "–")
        how = {"frozen": "frozen", "finetuned": "fine-tuned on the clips"}[name.rsplit("-", 1)[1]]
        header.append(f"t + a + v, audio branch from the RAVDESS voice model, {how} "
                      f"(valid acc {evaluations['fusion']['valid']['acc']['mean']:.1f})")
    if transfer:
        names = ["fusion", *transfer]
        header[2 + names.index(default)] += ", the default"
    return markdown(header, rows)


def speaker_cue() -> str:
    s = load("analysis_model.json")["speaker_sync"]
    return markdown(["`speaker_sync` (mean over clips)", f"speaker on screen ({s['n_speaker_visible']} clips)",
                     f"listener on screen ({s['n_listener_visible']} clips)", "ROC-AUC speaker vs listener"],
                    [["mouth opening vs voice loudness", f"{s['mean_speaker_visible']:.2f}",
                      f"{s['mean_listener_visible']:.2f}", f"{s['roc_auc']:.2f}"]])


def gates() -> str:
    a = load("analysis_model.json")
    rows = []
    for name, label in (("fusion", "5-fold, grouped by dialogue"), ("fusion-by-speaker", "leave-one-speaker-out")):
        for gate, gate_label in (("free_gate", "free gate"), ("speaker_gate", "`speaker_gate` (default)")):
            r = a[gate][name]
            rel = r["visual_relevance"]
            rows.append([label, gate_label, f"{r['test']['acc']['mean']:.1f} ± {r['test']['acc']['std']:.1f}",
                         f"{r['test']['f1_weighted']['mean']:.1f} ± {r['test']['f1_weighted']['std']:.1f}",
                         f"{r['valid']['acc']['mean']:.1f}",
                         f"{rel['speaker_visible']:.3f} / {rel['listener_visible']:.3f}"])
    return markdown(["evaluation", "gate", "test acc", "test F1w", "valid acc",
                     "visual relevance, speaker / listener on screen"], rows)


def text_baselines(dataset: str) -> list[tuple[str, dict]]:
    """The ``text-finetune`` and ``text-mlp`` rows of ``dataset``. The fine-tuned encoders under the context
    models are text-finetune runs (one per seed), so their own heads are its row (``published`` from the
    same file)."""
    result = load(f"context_{dataset}_finetuned.json")
    return [("text-finetune", {**result["rows"]["text-finetune"], "published": result["published"]}),
            ("text-mlp", load(f"{dataset}_text-mlp.json"))]


def finetune() -> str:
    """The fine-tuned MiniLM beside the frozen-vector MLP, the linear floor and the published rows."""
    rows = []
    floors = load("floors.json")["floors"]
    for dataset in ("iemocap6-text", "meld7-text"):
        for model, r in text_baselines(dataset):
            refs = [f"{p['model']} {p['value']:g}" for p in r["published"]
                    if p["comparable"] and p["metric"] == "f1_weighted" and p["model"] in SHOWN_PUBLISHED[:1]]
            rows.append([dataset, model] + [cell(r["test"], m) for m in EMOTION] + ["; ".join(refs) or "–"])
        floor = floors[dataset]["logreg_t"]
        rows.append([dataset, "*floor:* logistic regression on the frozen vectors"]
                    + [f"{floor[m]:.1f}" for m in EMOTION] + ["–"])
    return markdown(["dataset", "model", "acc", "UA (wacc)", "f1_weighted", "f1_macro",
                     "published f1_weighted, same split"], rows)


def context() -> str:
    """bc-LSTM over each video's utterances (1 and 2 processes) beside the ridge context floor."""
    metrics = ["acc2_has0", "acc2_non0", "f1_non0", "mae", "corr"]
    rows = []
    for name, label in (("mosi-bclstm_bc-lstm", "bc-lstm, 1 process"), ("mosi-bclstm_bc-lstm_2p",
                                                                        "bc-lstm, 2 processes (`--devices 2`)")):
        rows.append([label] + [cell(load(f"{name}.json")["test"], m) for m in metrics])
    floor = load("context_floor.json")
    mods = "+".join(floor.get("modalities", ["t", "a"]))
    for key, label in (("utterance", f"*floor:* ridge, {mods}, utterance alone"),
                       ("utterance+context", f"*floor:* ridge, {mods}, [utterance, mean of the video's others]")):
        test = floor["rows"][key]["test"]
        rows.append([label] + [f"{test[m]:.{digits(m)}f}" for m in metrics])
    for ref in load("mosi-bclstm_bc-lstm.json")["published"]:
        if ref["comparable"]:
            rows.append([f"*published, same split:* {ref['model']}"]
                        + [f"{ref['value']:g}" if m == ref["metric"] else "" for m in metrics])
    return markdown(["model", *metrics], rows)


def context_models() -> str:
    """Context models beside their own no-context variant and the TF-IDF floor; unfinished rows say so."""
    rows = []
    for dataset, metrics in (("iemocap6-text", ["f1_weighted", "acc", "wacc", "f1_macro"]),
                             ("meld7-text", ["f1_weighted", "acc", "wacc", "f1_macro"]),
                             ("mosi-bclstm", ["acc2_has0", "acc2_non0", "mae", "corr"]),
                             ("sentiment2:mosi-bclstm", ["acc", "wacc", "f1_weighted", "f1_macro"])):
        for variant, r in load(f"context_{dataset.replace(':', '_')}.json")["rows"].items():
            if "seeds" not in r:  # the TF-IDF logistic-regression floor: one fit, no seeds
                values = ", ".join(f"{m} {r['test'][m]:.{digits(m)}f}" for m in metrics)
                rows.append([dataset, f"*floor:* TF-IDF logistic regression (C={r['C']:g})", values, "–"])
                continue
            values = ", ".join(f"{m} {cell(r['test'], m)}" for m in metrics)
            seeds = ",".join(map(str, r["seeds"])) + ("" if r["complete"] else " (unfinished)")
            rows.append([dataset, variant, values, seeds])
    return markdown(["dataset", "variant", "test (mean ± std over seeds)", "seeds"], rows)


FINETUNED_ORDER = ["text-finetune", "turn-transformer-nocontext", "turn-transformer-causal", "turn-transformer-bi",
                   "dialogue-rnn-nocontext", "dialogue-rnn-causal", "dialogue-rnn-bi", "bc-lstm-nocontext", "bc-lstm",
                   "dialogue-rnn-causal+spcl", "compm-pmonly", "compm-nomemory", "compm", "compm+spcl"]


def context_finetuned() -> str:
    """Context models on the fine-tuned encoder's vectors beside their no-context variants, the encoder's own
    head, the TF-IDF floor and the published rows; per-class F1 and timings for every row."""
    rows = []
    for dataset in ("iemocap6-text", "meld7-text"):
        result = load(f"context_{dataset}_finetuned.json")
        floor = load(f"context_{dataset}.json")["rows"]["tfidf-logreg"]
        per_class = " · ".join(f"{k} {v:.0f}" for k, v in floor["test_per_class_f1"].items())
        rows.append([dataset, f"*floor:* TF-IDF logistic regression (C={floor['C']:g})"]
                    + [f"{floor['test'][m]:.1f}" for m in ("f1_weighted", "acc", "wacc", "f1_macro")]
                    + [per_class, "–", "–", f"{floor['seconds']:.0f}"])
        for variant in FINETUNED_ORDER:
            r = result["rows"].get(variant)
            if r is None:
                continue
            name = "text-finetune (the encoder's own head)" if variant == "text-finetune" else variant
            seeds = ",".join(map(str, r["seeds"])) + ("" if r["complete"] else " (unfinished)")
            rows.append([dataset, name] + [cell(r["test"], m) for m in ("f1_weighted", "acc", "wacc", "f1_macro")]
                        + [" · ".join(f"{k} {v:.0f}" for k, v in r["test_per_class_f1"].items()), seeds,
                           f"{r['seconds_per_epoch']:.1f}", f"{r['seconds_per_run']:.0f}"])
        refs = "; ".join(f"{p['model']} {p['value']:g}" for p in result["published"] if p["metric"] == "f1_weighted")
        rows.append([dataset, f"*published, same split:* {refs}"] + [""] * 8)
    return markdown(["dataset", "variant", "f1_weighted", "acc", "UA (wacc)", "f1_macro", "per-class F1",
                     "seeds", "s/epoch", "s/run"], rows)


MOSI_TEXT_VARIANTS = ("bc-lstm-nocontext", "bc-lstm", "dialogue-rnn-nocontext", "dialogue-rnn-causal",
                      "dialogue-rnn-bi", "turn-transformer-nocontext", "turn-transformer-causal", "turn-transformer-bi")


# the ridge floor regresses the score: its two-class accuracy is acc2_has0 and its weighted F1 f1_has0
FLOOR_AS = {"acc": "acc2_has0", "f1_weighted": "f1_has0"}


def _floor_cells(floor: dict, name: str, metrics: list[str]) -> list[str]:
    """A ridge context-floor row's test metrics: one fit (a number) or one per encoder (mean ± std);
    "–" where a regression has no such metric (UA)."""
    test = floor["rows"][name]["test"]
    cells = []
    for metric in metrics:
        key = FLOOR_AS.get(metric, metric)
        if key not in test:
            cells.append("–")
        elif isinstance(test[key], float):
            cells.append(f"{test[key]:.{digits(key)}f}")
        else:
            cells.append(cell(test, key))
    return cells


def _mosi_text_rows(result: str, vectors: str, modalities: str, metrics: list[str], floor: str | None = None,
                    variants: tuple[str, ...] = ("text-finetune", *MOSI_TEXT_VARIANTS)) -> list[list[str]]:
    """The rows of ``variants`` in one ``context_models.py`` result on MOSI (with its ridge floor first, if
    given); a variant the result lacks is left out."""
    rows = []
    if floor is not None:
        ridge = load(floor)
        seeds = ",".join(map(str, ridge.get("seeds", []))) or "–"
        for name, label in (("utterance", "*floor:* ridge, utterance alone"),
                            ("utterance+context", "*floor:* ridge, [utterance, mean of the video's others]")):
            rows.append([vectors, modalities, label, *_floor_cells(ridge, name, metrics), seeds, "–",
                         f"{ridge['rows'][name]['seconds']:.1f}"])
    runs = load(result)["rows"]
    for variant in variants:
        r = runs.get(variant)
        if r is None:
            continue
        name, mods = ("text-finetune (the encoder's own head)", "t") if variant == "text-finetune" else (variant,
                                                                                                        modalities)
        seeds = ",".join(map(str, r["seeds"])) + ("" if r["complete"] else " (unfinished)")
        rows.append([vectors, mods, name, *[cell(r["test"], m) for m in metrics], seeds,
                     f"{r['seconds_per_epoch']:.2f}", f"{r['seconds_per_run']:.0f}"])
    return rows


def context_mosi_text() -> str:
    """MOSI as bc-LSTM's two classes with text vectors that did not see the corpus (frozen or fine-tuned
    MiniLM of the transcripts), beside the release's text-CNN vectors, ridge floors and published rows."""
    metrics = ["acc", "f1_weighted", "wacc"]
    header = ["text vectors", "modalities", "model", "acc (= acc2_has0)", "f1_weighted", "UA (wacc)", "seeds",
              "s/epoch", "s/run"]
    rows = _mosi_text_rows("context_sentiment2_mosi-bclstm.json", "bc-LSTM release (text CNN trained on the "
                           "training videos)", "t+a+v", metrics, variants=("bc-lstm-nocontext", "bc-lstm"))
    tfidf = load("context_sentiment2_mosi-bclstm_minilm.json")["rows"]["tfidf-logreg"]
    rows.append(["TF-IDF of the transcripts (word 1-2 grams)", "t",
                 f"*floor:* TF-IDF logistic regression (C={tfidf['C']:g})",
                 *[f"{tfidf['test'][m]:.1f}" for m in metrics], "–", "–", f"{tfidf['seconds']:.1f}"])
    rows += _mosi_text_rows("context_sentiment2_mosi-bclstm_minilm.json", "MiniLM, frozen", "t+a", metrics,
                            "context_floor_minilm.json")
    tuned = "MiniLM fine-tuned on the training videos"
    rows += _mosi_text_rows("context_sentiment2_mosi-bclstm_finetuned.json", tuned, "t+a", metrics,
                            "context_floor_sentiment2_mosi-bclstm_finetuned.json")
    window = load("sentiment2_mosi-bclstm_text-finetune-window2.json")
    rows.append([tuned, "t", "text-finetune, the 2 previous utterances in its window (causal)",
                 *[cell(window["test"], m) for m in metrics], ",".join(map(str, window["seeds"])),
                 f"{window['seconds_per_epoch']:.2f}", f"{window['train_seconds'] / len(window['seeds']):.0f}"])
    for mods in ("t", "tav"):
        rows += _mosi_text_rows(f"context_sentiment2_mosi-bclstm_finetuned_{mods}.json", tuned, "+".join(mods),
                                metrics, variants=MOSI_TEXT_VARIANTS)
    for ref in load("mosi-bclstm_bc-lstm.json")["published"]:
        if ref["comparable"] and ref["metric"] == "acc2_has0":
            rows.append(["", "", f"*published, same split:* {ref['model']}", f"{ref['value']:g}"] + [""] * 5)
    return markdown(header, rows)


def context_mosi_regression() -> str:
    """The same with the sentiment score regressed (the field's full metric set): fine-tuned MiniLM + audio."""
    metrics = ["acc2_has0", "f1_has0", "acc2_non0", "acc7", "mae", "corr"]
    rows = _mosi_text_rows("context_mosi-bclstm_finetuned.json", "MiniLM fine-tuned on the training videos",
                           "t+a", metrics, "context_floor_mosi-bclstm_finetuned.json")
    for ref in load("mosi-bclstm_bc-lstm.json")["published"]:
        if ref["comparable"]:
            rows.append(["", "", f"*published, same split:* {ref['model']}"]
                        + [f"{ref['value']:g}" if m == ref["metric"] else "" for m in metrics] + [""] * 3)
    return markdown(["text vectors", "modalities", "model", *metrics, "seeds", "s/epoch", "s/run"], rows)


def small_data() -> str:
    """The small-data comparisons of issue 16: searched MLP, its old fixed recipe and ``linear`` beside
    the logistic-regression floor on the same rows, vectors and folds."""
    data = load("small_data.json")
    names = {"text": "MELD pos/neg, 800 rows, MiniLM vectors", "audio": "RAVDESS audio only, with eGeMAPS",
             "audio_no_egemaps": "RAVDESS audio only, no eGeMAPS"}
    rows = []
    for part, label in names.items():
        for model, r in data[part]["rows"].items():
            rows.append([label, model, f"{r['acc']['mean']:.1f} ± {r['acc']['std']:.1f}",
                         f"{r['ua']['mean']:.1f} ± {r['ua']['std']:.1f}", str(len(r["acc"]["per_run"]))])
    return markdown(["data", "model", "acc", "UA", "runs (seeds x folds)"], rows)


SEEDS_METRICS = ["acc2_has0", "acc2_non0", "f1_non0", "acc7", "mae", "corr"]


def _seeds_row(row: dict, metrics: list[str]) -> list[str]:
    """Seeds, then mean ± std per metric (the mean alone for a single run: no spread was measured)."""
    seeds = ",".join(map(str, row["seeds"])) + ("" if row["complete"] else " (unfinished)")
    if len(row["test"][metrics[0]]["per_run"]) == 1:
        return [seeds] + [f"{row['test'][m]['mean']:.{digits(m)}f}" for m in metrics]
    return [seeds] + [cell(row["test"], m) for m in metrics]


def seeds_mosi() -> str:
    """MRE and SemanticMAC with every switch run, TFN/LMF on the same seeds, floors, the paper's row."""
    data = load("seeds_003_004_mosi.json")
    chosen = data["semanticmac_selection"]["chosen"]
    rows = [[name + (" **(chosen on validation)**" if name == chosen else ""), row["what"]]
            + _seeds_row(row, SEEDS_METRICS) for name, row in data["rows"].items()]
    floors = load("floors.json")["floors"]["mosi-bclstm"]
    for key, name in (("logreg_tav", "logistic regression, t+a+v"), ("majority", "majority rate of the test split")):
        rows.append([f"*floor:* {name}", "", "–"] + [f"{floors[key][m]:.1f}" if m in floors[key] else ""
                                                     for m in SEEDS_METRICS])
    rows.append(["*published, other data:* SemanticMAC-BERT", "CMU-MOSI standard folds, BERT + ImageBind on raw "
                 "video; zero convention not stated", "5 runs", "", "86.4", "86.4", "48.3", "0.685", "0.811"])
    return markdown(["variant", "what is changed", "seeds", *SEEDS_METRICS], rows)


def seeds_mosi_selection() -> str:
    """SemanticMAC's candidate configurations with the validation values it was chosen on (issue 18)."""
    selection = load("seeds_003_004_mosi.json")["semanticmac_selection"]
    rows = [[c["variant"] + (" **(chosen)**" if c["variant"] == selection["chosen"] else ""), c["what"],
             f"{c['valid_loss_mean']:.4f}", ", ".join(f"{v:.4f}" for v in c["valid_loss_per_seed"]),
             f"{c['gap_to_chosen']:+.4f} ± {c['gap_bootstrap_std']:.4f}", ", ".join(map(str, c["best_epochs"])),
             f"{c['n_params']:,}"] for c in selection["candidates"]]
    return markdown(["candidate", "what is changed", "valid L1, mean seeds 0-2", "per seed",
                     "gap to chosen ± std over validation videos", "best epochs", "parameters"], rows)


def seeds_mosi_switches() -> str:
    """SemanticMAC's other eleven switches on seeds 0-2, beside the full model re-run with them."""
    data = load("seeds_003_004_mosi_switches.json")
    rows = [[name + (" (re-run, reference)" if name == "semanticmac" else ""), row["what"]]
            + _seeds_row(row, SEEDS_METRICS) for name, row in data["rows"].items()]
    return markdown(["variant", "what is changed", "seeds", *SEEDS_METRICS], rows)


def seeds_runtime() -> str:
    """Seconds per epoch and per run on mosi-bclstm as ratios to MRE, and the seed-004 claim."""
    result = load("seeds_003_004_runtime.json")["rows"]

    def ratio(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f}"

    rows = [[model, f"{r['n_params']:,}", str(r["batch_size"]), f"{r['seconds_per_epoch']:.3f}",
             ratio(r["epoch_ratio_to_mre"]), "–" if r["epochs_per_run"] is None else f"{r['epochs_per_run']:.1f}",
             "–" if r["seconds_per_run"] is None else f"{r['seconds_per_run']:.1f}", ratio(r["run_ratio_to_mre"])]
            for model, r in result.items()]
    rows.append(["*published (seed 004, MOSEI, hardware and scope not stated):* MRE / MulT", "", "", "", "", "",
                 "95.79 / 2535.73", "MulT = 26.5"])
    return markdown(["model", "parameters", "batch", "s/epoch", "× MRE", "epochs per run", "s/run", "× MRE"], rows)


def seeds_text() -> str:
    """Both methods on the text corpora beside text-mlp, text-finetune and the linear floor."""
    result = load("seeds_003_004_text.json")["rows"]
    floors = load("floors.json")["floors"]
    rows = []
    for dataset in ("iemocap6-text", "meld7-text"):
        for row in result.values():
            if row["dataset"] == dataset:
                rows.append([dataset, f"{row['model']} ({row['what']})"] + _seeds_row(row, EMOTION))
        for model, r in text_baselines(dataset):
            rows.append([dataset, model, ",".join(map(str, r["seeds"]))] + [cell(r["test"], m) for m in EMOTION])
        floor = floors[dataset]["logreg_t"]
        rows.append([dataset, "*floor:* logistic regression on the frozen vectors", "–"]
                    + [f"{floor[m]:.1f}" for m in EMOTION])
    return markdown(["dataset", "model", "seeds", "acc", "UA (wacc)", "f1_weighted", "f1_macro"], rows)


def seeds_clips() -> str:
    """The 40 IEMOCAP clips, 5-fold CV grouped by dialogue, tri-modal, beside late-fusion."""
    result = load("seeds_003_004_clips.json")["rows"]
    rows = [[name, row["what"], f"{len(row['runs'])}" + ("" if row["complete"] else " (unfinished)")]
            + [cell(row["test"], m) for m in EMOTION] for name, row in result.items()]
    rows.append(["*floor:* chance (8 balanced classes)", "", "–", "12.5", "12.5", "", ""])
    return markdown(["model", "inputs", "runs (seeds x folds)", "acc", "UA (wacc)", "f1_weighted", "f1_macro"], rows)


SEED_GROUPS = [("clips", "IEMOCAP clips (40, 8 classes), 5-fold CV by dialogue", ["acc", "wacc", "f1_weighted"]),
               ("clips4", "IEMOCAP clips, 4 classes (the 25 with a superb4_label: neu 5, hap+exc 10, ang 5, "
                          "sad 5), 5-fold CV by dialogue", ["acc", "wacc", "f1_weighted"]),
               ("mosi", "CMU-MOSI bc-LSTM vectors, regression (L1), video split", ["acc2_has0", "acc2_non0", "acc7",
                                                                                   "mae", "corr"]),
               ("mosi3", "CMU-MOSI bc-LSTM vectors, 3-class sentiment, video split", ["acc", "wacc", "f1_weighted"]),
               ("iemocap6-text", "iemocap6-text (MiniLM vectors), COSMIC split", ["acc", "wacc", "f1_weighted"]),
               ("meld7-text", "meld7-text (MiniLM vectors), official split", ["acc", "wacc", "f1_weighted"])]
# foundation rows measured by benchmarks/baselines.sh on the same split and seeds
SEED_BASELINE_FILES = {"mosi": ["mosi-bclstm_tfn", "mosi-bclstm_lmf", "mosi-bclstm_lf-dnn"],
                       "iemocap6-text": ["iemocap6-text_text-mlp"], "meld7-text": ["meld7-text_text-mlp"]}
_SMAC_IEMOCAP = ("SemanticMAC w-Acc 70.4, w-F1 69.8: IEMOCAP 6 classes, tri-modal, BERT + ImageBind on raw "
                 "video (utterance setting)")
# the two other seed methods (issue 18, benchmarks/seeds_003_004.py): (results file, row, seed paper's number)
SEED_OTHER_ROWS = {
    "clips": [("seeds_003_004_clips.json", "mre", "none on IEMOCAP (MOSEI, CH-SIMS, SDME)"),
              ("seeds_003_004_clips.json", "semanticmac", _SMAC_IEMOCAP)],
    "mosi": [("seeds_003_004_mosi.json", "mre", "none on MOSI (2-class MOSEI 71.24 acc, CH-SIMS, SDME)"),
             ("seeds_003_004_mosi.json", "semanticmac", "SemanticMAC-BERT acc2 86.4, acc7 48.3, mae 0.685, corr "
                                                        "0.811: CMU-MOSI standard folds, BERT + ImageBind on raw "
                                                        "video; zero convention not stated")],
    "iemocap6-text": [("seeds_003_004_text.json", "iemocap6-text_mre", "none on IEMOCAP"),
                      ("seeds_003_004_text.json", "iemocap6-text_semanticmac-minilm", _SMAC_IEMOCAP
                       + "; not text only")],
    "meld7-text": [("seeds_003_004_text.json", "meld7-text_mre", "none on MELD")],
}


def _other_seed_row(row: dict, seeds: set[int], metrics: list[str]) -> tuple[str, str, str, str]:
    """A ``seeds_003_004`` row restricted to its runs of ``seeds``: the test values (mean ± sample std;
    the value alone for one run), the run count, mean s/epoch and the summed seconds of those runs."""
    keep = [i for i, run in enumerate(row["runs"]) if int(re.search(r"seed(\d+)", run).group(1)) in seeds]

    def stat(values: list[float], d: int) -> str:
        picked = [values[i] for i in keep]
        if len(picked) == 1:
            return f"{picked[0]:.{d}f}"
        return f"{statistics.mean(picked):.{d}f} ± {statistics.stdev(picked):.{d}f}"

    test = ", ".join(f"{m} {stat(row['test'][m]['per_run'], digits(m))}" for m in metrics if m in row["test"])
    epoch = statistics.mean(row["seconds_per_epoch"]["per_run"][i] for i in keep)
    return test, str(len(keep)), f"{epoch:.2f}", f"{sum(row['seconds_per_run']['per_run'][i] for i in keep):.0f}"


def seeds_000_002() -> str:
    """Seed methods 000-002 beside the foundation baselines and floors on the same data, splits and seeds,
    with the runtime of each row and the seed paper's own number (and how its data differ)."""
    data = load("seeds_000_002.json")
    rows = []
    def values(test: dict, metrics: list[str]) -> str:
        return ", ".join(f"{m} {cell(test, m)}" for m in metrics if m in test)

    for group, label, metrics in SEED_GROUPS:
        for name, r in data["rows"].items():
            if name.split("_")[0] == group:
                model = name.split("_", 1)[1]
                model = "*floor:* linear (weight decay chosen on valid)" if model == "linear" else model
                rows.append([label, model, values(r["test"], metrics), str(r["runs"]),
                             f"{r['n_params']:,}", f"{r['seconds_per_epoch']:.2f}", f"{r['train_seconds']:.0f}",
                             r.get("published", "–")])
        ours = {s for name, r in data["rows"].items() if name.split("_")[0] == group for s in r["seeds"]}
        for file, key, published in SEED_OTHER_ROWS.get(group, []):
            r = load(file)["rows"][key]
            common = sorted(ours & set(r["seeds"]))
            test, runs, epoch, total = _other_seed_row(r, set(common), metrics)
            seeds = ",".join(map(str, common)) + ("" if common == sorted(ours) else f" only (ours: "
                                                  f"{','.join(map(str, sorted(ours)))})")
            rows.append([label, f"{r['model']} (`benchmarks/seeds_003_004.py`: {r['what']}; seeds {seeds})", test,
                         runs, f"{r['n_params']:,}", epoch, total, published])
        for base in SEED_BASELINE_FILES.get(group, []):
            r = load(f"{base}.json")
            keep = [i for i, seed in enumerate(r["seeds"]) if seed in ours]  # the file may hold more seeds
            test = {m: {"mean": statistics.mean(v["per_run"][i] for i in keep),
                        "std": statistics.stdev(v["per_run"][i] for i in keep)} for m, v in r["test"].items()}
            subset = "" if len(keep) == len(r["seeds"]) else \
                f"; seeds {','.join(str(r['seeds'][i]) for i in keep)} of its {len(r['seeds'])}"
            rows.append([label, r["model"] + f" (`benchmarks/baselines.sh`{subset})", values(test, metrics),
                         str(len(keep)), f"{r['n_params']:,}", "–", "–", "–"])
        if group == "mosi":  # benchmarks/floors.py, same split
            tav = load("floors.json")["floors"]["mosi-bclstm"]["logreg_tav"]
            rows.append([label, "*floor:* logistic regression on the sign, t+a+v (`benchmarks/floors.py`)",
                         ", ".join(f"{m} {tav[m]:.1f}" for m in metrics if m in tav), "–", "–", "–", "–", "–"])
        if group in data["floors"]:
            floor = data["floors"][group]
            rows.append([label, "*floor:* training-majority class", values(floor, metrics), "–", "–", "–", "–", "–"])
        if group == "clips4" and any(name.startswith("clips4_") for name in data["rows"]):
            rows.append([label, "*floor:* chance (a uniform guess over the 4 classes)", "acc 25.0, wacc 25.0", "–",
                         "–", "–", "–", "–"])
    return markdown(["data", "model", "test (mean ± std over runs)", "runs", "params", "s/epoch", "train s",
                     "seed paper's number (its data)"], rows)


def int2_heads() -> str:
    """INT2-M3AP: every head alone, mean-probability fusion and the vote, from the same weights; the vote's
    gain against its best member chosen on validation (and against the test oracle)."""
    data = load("seeds_000_002.json")
    rows = []
    for name, label in (("clips_int2-m3ap", "IEMOCAP clips"), ("clips4_int2-m3ap", "IEMOCAP clips, 4 classes"),
                        ("mosi3_int2-m3ap", "MOSI 3-class"),
                        ("mosi_int2-m3ap", "MOSI regression")):
        if name not in data["rows"]:
            continue
        heads = data["rows"][name]["heads"]
        metric = heads["metric"]
        d = digits(metric)
        cells = [f"{heads['test'][h][metric]['mean']:.{d}f}" if h in heads["test"] else "–"
                 for h in ("v", "t", "a", "vt", "va", "ta", "m", "mean")]
        vote = heads["test"].get("vote_prob", heads["test"].get("vote"))[metric]
        gain, oracle = heads["vote_gain_vs_valid_best_member"], heads["vote_gain_vs_test_best_member"]
        ties = f"{100 * heads['test_tied_share']:.0f} %" if "test_tied_share" in heads else "–"
        lowest = heads["test"].get("vote_lowest", {}).get(metric)
        rows.append([label, metric] + cells + [f"{vote['mean']:.{d}f} ± {vote['std']:.{d}f}",
                    f"{lowest['mean']:.{d}f}" if lowest else "–", ties,
                    f"{gain['mean']:+.{d}f} ± {gain['std']:.{d}f}", f"{oracle['mean']:+.{d}f} ± {oracle['std']:.{d}f}"])
    return markdown(["data", "metric", "v", "t", "a", "vt", "va", "ta", "m (hierarchical)", "mean prob.",
                     "vote (tie: prob)", "vote (tie: lowest id)", "test rows tied",
                     "vote's gain over its best member chosen on valid", "gain over the test-best member"], rows)


def vs_mmsa() -> str:
    """MMSA 2.2.1's own trainers beside ours on the same exported data, seeds and selection rule
    (``bash benchmarks/vs_mmsa/run.sh``); time = train wall seconds per run, MMSA / ours."""
    result = load("vs_mmsa.json")
    rows = []
    for row in result["rows"]:
        theirs, ours = row["mmsa"], row["ours"]
        loads = [v for pair in theirs["loadavg_1min"] + ours["loadavg_1min"] for v in pair]
        name = row["model"] + (" (MMSA: BERT-free)" if theirs.get("variant", "").startswith("BERT-free") else "")
        rows.append([name, cell(theirs, "acc2_has0"), cell(ours, "acc2_has0"), cell(theirs, "mae"), cell(ours, "mae"),
                     f"{theirs['train_seconds']['mean']:.1f}", f"{ours['train_seconds']['mean']:.1f}",
                     f"{ours['run_seconds']['mean']:.1f}" if "run_seconds" in ours else "–",
                     f"{row['time_ratio_mmsa_over_ours']:.1f}x", f"{row['epoch_time_ratio_mmsa_over_ours']:.1f}x",
                     f"{min(loads):.1f}-{max(loads):.1f}",
                     ("met" if row["accuracy_target_met"] else "**missed**") + " / "
                     + ("met" if row["speed_target_met"] else "**missed**")])
    return markdown(["model", "MMSA acc2_has0", "ours acc2_has0", "MMSA mae", "ours mae", "MMSA s/run", "ours s/run",
                     "ours whole run s", "MMSA / ours time", "MMSA / ours s/epoch", "load avg",
                     "targets (accuracy / 3x speed)"], rows)


ZOO_MODELS = ["mfn", "graph-mfn", "mult", "misa", "self-mm", "mmim"]


def zoo() -> str:
    """The MMSA-zoo models on MOSI (``python benchmarks/zoo.py``) beside the floors and MMSA's published
    rows, which are on MMSA's own features and folds (other data)."""
    rows = [[model] + [cell(load(f"zoo_mosi-bclstm_{model}.json")["test"], m) for m in ABLATION]
            for model in ZOO_MODELS]
    rows.append(["*floor:* linear (same runs)"] + [cell(load("zoo_mosi-bclstm_linear.json")["test"], m)
                                                   for m in ABLATION])
    floor = load("floors.json")["floors"]["mosi-bclstm"]["logreg_tav"]
    rows.append(["*floor:* logistic regression, t+a+v"] + [f"{floor[m]:.1f}" if m in floor else "" for m in ABLATION])
    for model, p in load("zoo_published.json")["rows"].items():
        rows.append([f"*published, other data (MMSA, {p['data_setting'].lower()} CMU features, CMU folds):* {model}"]
                    + [f"{p[m]:.3f}" if m in ("mae", "corr") else f"{p[m]:.1f}" for m in ABLATION])
    return markdown(["model", *ABLATION], rows)


def _speech():
    """``benchmarks/speech_emotion.py`` (beside this file) owns the RAVDESS tables of docs/voice.md."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import speech_emotion

    return speech_emotion


def speech() -> str:
    """RAVDESS speech emotion, actor-independent test split and 6-fold actor CV (``speech_emotion.py``)."""
    return _speech().results_table(load("speech_emotion.json"))


def speech_extraction() -> str:
    """Extraction seconds per audio minute of each audio extractor (``speech_emotion.py --speed``)."""
    return _speech().speed_table(load("speech_emotion.json"))


TABLES = {"mosi": mosi, "ablation": ablation, "emotion": emotion, "emotion-floors": emotion_floors,
          "finetune": finetune, "context": context, "context-models": context_models,
          "context-finetuned": context_finetuned, "context-mosi-text": context_mosi_text,
          "context-mosi-regression": context_mosi_regression, "small-data": small_data,
          "seeds-mosi": seeds_mosi, "seeds-mosi-selection": seeds_mosi_selection,
          "seeds-mosi-switches": seeds_mosi_switches, "seeds-runtime": seeds_runtime,
          "seeds-000-002": seeds_000_002, "int2-heads": int2_heads, "seeds-text": seeds_text,
          "seeds-clips": seeds_clips, "train-speed": train_speed, "vs-mmsa": vs_mmsa, "zoo": zoo,
          "extraction-speed": extraction_speed, "analysis-model": analysis_model, "speaker-cue": speaker_cue,
          "gates": gates, "speech": speech, "speech-extraction": speech_extraction}


def tables() -> dict[str, str]:
    """Every README table by name, as markdown."""
    return {name: make() for name, make in TABLES.items()}


if __name__ == "__main__":
    for name, text in tables().items():
        print(f"<!-- {name} -->\n{text}\n")
