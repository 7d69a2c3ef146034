"""Markdown and self-contained HTML reports of a benchmark suite (:mod:`mmaffect.benchmark.suite`).

The HTML file embeds its plots as base64 PNG (matplotlib, Agg), so it opens anywhere, offline, and can
be mailed as one file. Plots per dataset: seed spread of the headline metric (published numbers on
the same data and split drawn beside ours), seconds per epoch, per-class F1, confusion matrices
(summed over runs; for score tasks the negative / non-negative sign, acc2_has0's classes) and
ablation bars when the suite has ablations. Every published number is labelled with its source and
whether it is on the same data and split.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import numpy as np

# headline metrics per task, in the field's order (the first is the one plotted)
_METRICS = {"sentiment": ["acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7", "mae", "corr"],
            "classification": ["f1_weighted", "acc", "wacc", "f1_macro"],
            "binary": ["f1_weighted", "acc", "wacc", "f1", "auc"],
            "regression": ["mae", "corr"], "multilabel": ["f1_micro", "f1_macro", "subset_acc"]}
_RAW = {"mae", "corr", "auc", "loss"}  # not in percent: three decimals


def metrics_of(results: dict) -> list[str]:
    """The headline metrics a cell has, first the task's main one."""
    wanted = [m for kind in results["task"].split("+") for m in _METRICS.get(kind, [])]
    present = [m for m in dict.fromkeys(wanted) if m in results["test"]]
    return present or sorted(results["test"])[:5]


def _fmt(value: float | None, metric: str) -> str:
    if value is None or value != value:
        return "–"
    return f"{value:.3f}" if metric in _RAW else f"{value:.1f}"


def _pm(stats: dict, metric: str) -> str:
    return f"{_fmt(stats['mean'], metric)} ± {_fmt(stats['std'], metric)}"


def _by_dataset(entries: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for entry in entries:
        groups.setdefault(entry["cell"].dataset.name, []).append(entry)
    return groups


def _rows(entries: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one dataset's table: our cells, then published numbers (labelled)."""
    metrics = metrics_of(entries[0]["results"])
    header = ["model", "modalities", *metrics, "s/epoch", "runs"]
    rows = []
    for entry in entries:
        res, cell = entry["results"], entry["cell"]
        rows.append([cell.model, cell.modalities or ",".join(m for m in res["modalities"]
                                                             if m not in res.get("empty_modalities", []))]
                    + [_pm(res["test"][m], m) if m in res["test"] else "–" for m in metrics]
                    + [f"{res['seconds_per_epoch']:.3f}", str(len(entry["runs"]))])
    floor = majority_floor(entries)
    if floor:
        rows.append([f"*floor:* test majority class ({floor.pop('class')})", ""]
                    + [_fmt(floor[m], m) if m in floor else "" for m in metrics] + ["", ""])
    published: dict[tuple[bool, str], dict[str, float]] = {}  # one row per published model
    for entry in entries:
        for ref in entry["results"].get("published", []):
            if ref["metric"] in metrics:
                published.setdefault((not ref["comparable"], ref["model"]), {})[ref["metric"]] = ref["value"]
    for (elsewhere, model), values in sorted(published.items()):
        where = "published, other data/split" if elsewhere else "published, same data and split"
        rows.append([f"*{where}:* {model}", ""] + [_fmt(values.get(m), m) if m in values else "" for m in metrics]
                    + ["", ""])
    return header, rows


def majority_floor(entries: list[dict]) -> dict | None:
    """What always predicting the test rows' most frequent class scores (for score tasks: the more
    frequent sign, acc2_has0's classes), from the summed test confusion matrices."""
    report = next((r for r in map(_mean_report, entries) if r is not None), None)
    if report is None:
        return None
    names, _, confusion = report
    counts = confusion.sum(1)
    share = counts.max() / counts.sum()
    f1_majority = 2 * share / (1 + share)  # precision = share, recall = 1
    present = int((counts > 0).sum())
    values = {"acc": 100 * share, "wacc": 100 / present, "f1_weighted": 100 * share * f1_majority,
              "f1_macro": 100 * f1_majority / present, "acc2_has0": 100 * share,
              "f1_has0": 100 * share * f1_majority}
    return {"class": names[int(counts.argmax())], **values}


def _title(entries: list[dict]) -> str:
    entry = entries[0]
    return f"{entry['cell'].dataset.label} — test split: {entry['results']['split']}"


def markdown_report(suite, entries: list[dict]) -> str:
    lines = [f"# Benchmark suite: {suite.name}", "", suite.description, "",
             "Test-split metrics, mean ± sample std over the runs (seeds x folds); accuracies and F1 in "
             "percent. Published rows come from the data root's published_results and say whether they "
             "are on the same data and split.", ""]
    for entries_ in _by_dataset(entries).values():
        header, rows = _rows(entries_)
        lines += [f"## {_title(entries_)}", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
    return "\n".join(lines)


# ---- plots -----------------------------------------------------------------------------------

def _png(figure) -> str:
    """The figure as an <img> with a base64 PNG (closed afterwards)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _name(entry: dict) -> str:
    cell = entry["cell"]
    return cell.model + (f" [{cell.modalities}]" if cell.modalities else "")


def seed_spread(entries: list[dict]) -> str:
    """The headline metric of every run, per model, with published same-split numbers as lines."""
    metric = metrics_of(entries[0]["results"])[0]
    figure, axis = _figure(max(4.0, 1.1 * len(entries) + 2), 3.2)
    for x, entry in enumerate(entries):
        values = entry["results"]["test"][metric]["per_run"]
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
        axis.scatter(x + np.asarray(jitter), values, s=22, color="C0", zorder=3)
        axis.hlines(np.nanmean(values), x - 0.25, x + 0.25, color="C0")
    refs = {(r["model"], r["value"]) for e in entries for r in e["results"].get("published", [])
            if r["comparable"] and r["metric"] == metric}
    for k, (model, value) in enumerate(sorted(refs, key=lambda r: r[1])):
        axis.axhline(value, color=f"C{k + 1}", linestyle="--", linewidth=1, label=f"published: {model} {value:g}")
    if refs:
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the plot, not over the dots
    axis.set_xticks(range(len(entries)), [_name(e) for e in entries], rotation=30, ha="right", fontsize=8)
    axis.set_ylabel(f"test {metric}")
    axis.set_title(f"{metric} per run (dots) and mean (bar)", fontsize=9)
    return _png(figure)


def time_per_epoch(entries: list[dict]) -> str:
    figure, axis = _figure(max(4.0, 1.1 * len(entries) + 2), 2.8)
    means = [e["results"]["seconds_per_epoch"] for e in entries]
    axis.bar(range(len(entries)), means, color="C2")
    axis.set_xticks(range(len(entries)), [_name(e) for e in entries], rotation=30, ha="right", fontsize=8)
    axis.set_ylabel("seconds per epoch")
    threads = entries[0]["results"].get("environment", {}).get("threads")
    axis.set_title(f"training time per epoch (train + validation pass; {threads} thread(s))", fontsize=9)
    return _png(figure)


def _mean_report(entry: dict) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """Class names, mean per-class F1 over runs and the summed confusion matrix, or None."""
    reports = [r["test_report"] for r in entry["runs"] if r.get("test_report")]
    if not reports:
        return None
    names = list(reports[0]["per_class"])
    f1 = np.mean([[rep["per_class"][n]["f1"] for n in names] for rep in reports], axis=0)
    confusion = np.sum([np.asarray(rep["confusion"]) for rep in reports], axis=0)
    return names, f1, confusion


def per_class_f1(entries: list[dict]) -> str | None:
    reports = [(e, _mean_report(e)) for e in entries]
    reports = [(e, r) for e, r in reports if r is not None]
    if not reports:
        return None
    names = reports[0][1][0]
    width = 0.8 / len(reports)
    figure, axis = _figure(max(5.0, 0.9 * len(names) * max(1, len(reports) / 2) + 2), 3.2)
    for k, (entry, (_, f1, _)) in enumerate(reports):
        axis.bar(np.arange(len(names)) + k * width - 0.4 + width / 2, f1, width, label=_name(entry))
    axis.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    axis.set_ylabel("test F1 (%)")
    axis.set_ylim(0, 125)  # room for the legend above the bars
    axis.set_yticks(range(0, 101, 20))
    axis.set_title("per-class F1, mean over runs", fontsize=9)
    axis.legend(fontsize=7, ncol=min(4, len(reports)))
    return _png(figure)


def confusion_matrices(entries: list[dict]) -> list[str]:
    """One matrix per cell: rows = true class, columns = predicted, counts summed over runs,
    colour = share of the row (recall)."""
    images = []
    for entry in entries:
        report = _mean_report(entry)
        if report is None:
            continue
        names, _, confusion = report
        share = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
        size = 1.6 + 0.45 * len(names)
        figure, axis = _figure(size, size)
        axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i, j in np.ndindex(confusion.shape):
            axis.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=7,
                      color="white" if share[i, j] > 0.6 else "black")
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        axis.set_yticks(range(len(names)), names, fontsize=7)
        axis.set_xlabel("predicted", fontsize=8)
        axis.set_ylabel("true", fontsize=8)
        axis.set_title(f"{_name(entry)} ({len(entry['runs'])} runs)", fontsize=8)
        images.append(_png(figure))
    return images


def ablation_bars(entries: list[dict]) -> str | None:
    subsets = [e for e in entries if e["cell"].modalities]
    if not subsets:
        return None
    metric = metrics_of(subsets[0]["results"])[0]
    figure, axis = _figure(max(4.0, 0.8 * len(subsets) + 2), 2.8)
    means = [e["results"]["test"][metric]["mean"] for e in subsets]
    stds = [e["results"]["test"][metric]["std"] for e in subsets]
    axis.bar(range(len(subsets)), means, yerr=stds, capsize=3, color="C4")
    low, high = min(np.subtract(means, stds)), max(np.add(means, stds))
    axis.set_ylim(max(0.0, low - 0.15 * (high - low) - 1), high + 0.1 * (high - low) + 1)  # zoom on the differences
    axis.set_xticks(range(len(subsets)), [e["cell"].modalities for e in subsets], fontsize=8)
    axis.set_ylabel(f"test {metric}")
    axis.set_title(f"modality ablation: {subsets[0]['cell'].model} (mean ± std over runs)", fontsize=9)
    return _png(figure)


# ---- page ------------------------------------------------------------------------------------

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1250px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3}td{white-space:nowrap}td:first-child{white-space:normal;min-width:14em;max-width:26em}
.plots img{margin:4px;vertical-align:top}
.note{color:#555;font-size:.9em}"""


def _html_table(header: Sequence[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c).replace('*', '')}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_report(suite, entries: list[dict]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(suite.name)}</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>Benchmark suite: {html.escape(suite.name)}</h1><p>{html.escape(suite.description)}</p>",
             "<p class='note'>Test-split metrics, mean ± sample std over the runs (seeds x folds); accuracies "
             "and F1 in percent. Published numbers are labelled with whether they are on the same data and "
             "split; only those are drawn in the plots.</p>"]
    for entries_ in _by_dataset(entries).values():
        grid = [e for e in entries_ if not e["cell"].modalities]
        header, rows = _rows(entries_)
        parts += [f"<h2>{html.escape(_title(entries_))}</h2>", _html_table(header, rows), "<div class='plots'>"]
        plots = [seed_spread(grid or entries_), time_per_epoch(entries_), per_class_f1(grid or entries_),
                 ablation_bars(entries_), *confusion_matrices(grid or entries_)]
        parts += [p for p in plots if p] + ["</div>"]
    env = entries[0]["results"].get("environment", {})
    parts.append(f"<p class='note'>mmaffect {html.escape(str(env.get('mmaffect')))}, torch "
                 f"{html.escape(str(env.get('torch')))}, {env.get('threads')} thread(s). Times were measured "
                 "on whatever machine ran the suite; compare them within one report only.</p></body></html>")
    return "\n".join(parts)
