"""The evaluation's report: what ``evaluate.evaluate`` returns, and its files, tables and figures.

``write_report`` writes ``report.json``, ``results.csv``, ``summary.csv`` and the PNG figures, each atomically;
``headline_table`` is the headline as text (``main --mode=evaluate`` logs it).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from universeg_jax.files import atomic_path

# The summary scope of the headline number: the mean over datasets, each weighted equally (its name is "all").
HEADLINE = "datasets"


@dataclasses.dataclass
class Report:
    """What ``evaluate`` returns. ``rows``: one per (experiment, method, task, draw, support size, K) with the
    draw's mean Dice; ``summary``: aggregates per task, per dataset, over all tasks and over datasets (the
    headline; see ``evaluate.summarize``); ``qualitative``: arrays for the qualitative figure (not written to JSON)."""

    config: dict
    methods: list[str]
    tasks: list[dict]
    rows: list[dict]
    summary: list[dict]
    timing: dict
    qualitative: list[dict] = dataclasses.field(repr=False)

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "qualitative"}

    def summary_row(
        self, method: str, support_size: int, *, ensemble: int = 1, scope: str = HEADLINE, name: str = "all"
    ) -> dict:
        """The summary row of ``method`` at this support size (and ensemble size K; K > 1 means the ensemble
        experiment): by default the headline mean over datasets (each weighted equally); ``scope='all'`` for the
        mean over all tasks, or ``scope='task'|'dataset'`` and its ``name``."""
        experiment = "support_size" if ensemble == 1 else "ensemble"
        key = (scope, name, experiment, method, support_size, ensemble)
        for row in self.summary:
            if (
                row["scope"],
                row["name"],
                row["experiment"],
                row["method"],
                row["support_size"],
                row["ensemble"],
            ) == key:
                return row
        raise KeyError(
            f"no summary row for scope={scope!r} name={name!r} method={method!r} "
            f"support_size={support_size} ensemble={ensemble}"
        )


def write_atomic(path: Path, write: Callable[[io.IOBase], None], *, binary: bool = False) -> None:
    """Write through a temporary file in the same directory, then rename: readers never see half a file."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"newline": "", "encoding": "utf-8"})) as f:
            write(f)


def _write_csv(path: Path, rows: Sequence[dict]) -> None:
    def write(f):
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    write_atomic(path, write)


def write_report(report: Report, directory) -> dict[str, Path]:
    """``report.json`` (everything but arrays), ``results.csv`` (per draw), ``summary.csv`` and the PNG figures."""
    directory = Path(directory)
    paths = {
        name: directory / name
        for name in (
            "report.json",
            "results.csv",
            "summary.csv",
            "dice_vs_support_size.png",
            "dice_vs_ensemble.png",
            "qualitative.png",
        )
    }
    write_atomic(paths["report.json"], lambda f: json.dump(report.to_json(), f, indent=1))
    _write_csv(paths["results.csv"], report.rows)
    _write_csv(paths["summary.csv"], report.summary)
    for experiment, x, name in (
        ("support_size", "support_size", "dice_vs_support_size.png"),
        ("ensemble", "ensemble", "dice_vs_ensemble.png"),
    ):
        figure = curves_figure(report, experiment, x)
        write_atomic(paths[name], lambda f, fig=figure: fig.savefig(f, format="png", dpi=110), binary=True)
    if report.qualitative:
        figure = qualitative_figure(report)
        write_atomic(paths["qualitative.png"], lambda f: figure.savefig(f, format="png", dpi=90), binary=True)
    else:
        del paths["qualitative.png"]
    return paths


def curves_figure(report: Report, experiment: str, x: str):
    """Mean Dice against ``x`` per method: one panel for the headline mean over datasets (each weighted equally)
    and one per dataset; bands are +- the std over support draws; hollow markers are means over only some of the
    panel's tasks (the others are too small for that support size)."""
    from matplotlib.figure import Figure

    panels = [(HEADLINE, "all")] + sorted({("dataset", t["dataset"]) for t in report.tasks})
    figure = Figure(figsize=(4.2 * len(panels), 3.6), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    n_datasets = len({t["dataset"] for t in report.tasks})
    for ax, (scope, name) in zip(axes, panels):
        n_tasks = sum(1 for t in report.tasks if scope == HEADLINE or t["dataset"] == name)
        for method in report.methods:
            wanted = (scope, name, experiment, method)
            points = sorted(
                (r[x], r["dice_mean"], r["dice_std_draws"], r["tasks"])
                for r in report.summary
                if (r["scope"], r["name"], r["experiment"], r["method"]) == wanted
            )
            if not points:
                continue
            xs, mean, std, tasks = (np.array(v, float) for v in zip(*points))
            (line,) = ax.plot(xs, mean, marker="o", label=method)
            ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.15)
            partial = tasks < n_tasks
            ax.plot(xs[partial], mean[partial], "o", markerfacecolor="white", color=line.get_color())
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        if scope == HEADLINE:
            title = f"mean over {n_datasets} dataset{'s' * (n_datasets > 1)} ({n_tasks} tasks)"
        else:
            title = f"{name}: {n_tasks} task{'s' * (n_tasks > 1)}"
        ax.set_title(f"{title} (hollow = fewer)", fontsize=9)
        ax.set_xlabel(
            "support size N"
            if x == "support_size"
            else f"ensemble members K (support size {report.config['ensemble_support_size']})"
        )
        ax.set_ylabel("Dice (mean over datasets)" if scope == HEADLINE else "Dice (mean over tasks)")
    axes[0].legend(fontsize="small")
    return figure


def qualitative_figure(report: Report):
    """Per task: support pairs (label outlined), query, truth, then each method's prediction with its Dice."""
    from matplotlib.figure import Figure

    rows = report.qualitative
    n_support = max(len(q["support_images"]) for q in rows)
    columns = n_support + 2 + len(report.methods)
    figure = Figure(figsize=(1.6 * columns, 1.8 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), columns, squeeze=False)
    for r, q in enumerate(rows):
        panels = [
            (f"support {i + 1}", q["support_images"][i], q["support_labels"][i])
            for i in range(len(q["support_images"]))
        ]
        panels += [("", None, None)] * (n_support - len(q["support_images"]))
        panels += [("query", q["query"], None), ("truth", q["truth"], None)]
        panels += [(f"{m}\nDice {q['predictions'][m][1]:.2f}", q["predictions"][m][0], None) for m in report.methods]
        for ax, (title, image, outline) in zip(axes[r], panels):
            if image is None:
                ax.set_axis_off()
                continue
            ax.set_xticks([])  # keep the frame: an all-foreground mask is otherwise invisible
            ax.set_yticks([])
            ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if outline is not None and outline.max() > outline.min():
                ax.contour(outline, levels=[0.5], colors="red", linewidths=0.6)
            ax.set_title(title, fontsize=7)
        axes[r][0].text(
            -0.1,
            0.5,
            f"{q['task']}\nN={q['support_size']}",
            transform=axes[r][0].transAxes,
            fontsize=7,
            ha="right",
            va="center",
        )
    return figure


def headline_table(report: Report) -> str:
    """The headline as text: one line per method, its mean Dice over datasets at each support size of the sweep
    (with the number of datasets taking part when some are too small for that size)."""
    rows = [r for r in report.summary if r["scope"] == HEADLINE and r["experiment"] == "support_size"]
    sizes = sorted({r["support_size"] for r in rows})
    every = max((r["datasets"] for r in rows), default=0)
    lines = ["method".ljust(18) + "".join(f"N={n}".rjust(12) for n in sizes)]
    for method in report.methods:
        cells = {r["support_size"]: r for r in rows if r["method"] == method}
        lines.append(
            method.ljust(18)
            + "".join(
                (
                    f"{cells[n]['dice_mean']:.3f}"
                    + (f" ({cells[n]['datasets']})" if cells[n]["datasets"] < every else "")
                    if n in cells
                    else "-"
                ).rjust(12)
                for n in sizes
            )
        )
    return "\n".join(lines)
