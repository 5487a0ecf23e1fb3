"""Aggregate multirun directories into a results table (markdown + CSV, mean ± std over seeds) and PNG plots.

    written = write_report(["multirun/2026-11-24_10-00-00"])   # -> <dir>/report/{report.md, report.csv, *.png}

Jobs are the run directories below the given paths (any depth); a configuration is a job's Hydra overrides
(``.hydra/overrides.yaml``) without ``seed``, so the seeds of one configuration form one row, its ``seeds`` column
listing them. A value measured on one seed has no std. The same inputs always give the same files; an unreadable
run file or an unknown metric is a one-line ``ValueError`` and nothing is written.
"""
from __future__ import annotations

import csv
import difflib
import io
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import yaml
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ._atomic import atomic_write
from .run_dir import RunDir, find_runs

DEFAULT_METRICS = ("copurchase/recall@10", "copurchase/ndcg@10", "text_query/recall@10", "text_query/mrr@10",
                   "index/recall@10", "val/recall@10", "epochs", "train_s")
CURVES = ("train/loss", "val/recall@10")
BUNDLES = ("experiment", "hparams_search")  # overrides naming a bundle of settings: an axis only if nothing else varies


@dataclass
class Job:
    path: Path
    overrides: tuple[str, ...]  # without seed
    seed: int | None
    metrics: dict[str, float]
    history: list[dict]


@dataclass
class Group:
    """The jobs (seeds) of one configuration."""

    overrides: tuple[str, ...]
    jobs: list[Job] = field(default_factory=list)
    label: str = ""

    def values(self, metric: str) -> list[float]:
        return [j.metrics[metric] for j in self.jobs if metric in j.metrics]

    def mean_std(self, metric: str) -> tuple[float, float | None] | None:
        """Mean and sample standard deviation (None for one seed); None when no job has the metric."""
        v = self.values(metric)
        if not v:
            return None
        return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else None)

    @property
    def seeds(self) -> str:
        return " ".join(str(j.seed) for j in self.jobs)

    def setting(self, key: str) -> str | None:
        return dict(_split(o) for o in self.overrides).get(key)


# ------------------------------------------------------------------------------------------------ collect
def find_jobs(paths: Iterable[str | Path]) -> list[Job]:
    """Every finished run under ``paths``, in sweep order."""
    return [_load_job(run) for run in find_runs(paths)]


def _load_job(run: RunDir) -> Job:
    """One finished run; a file that does not read as expected is a ``ValueError`` naming it."""
    overrides_file = run / ".hydra" / "overrides.yaml"
    try:
        overrides = (yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else None) or []
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{overrides_file}: unreadable ({_first_line(err)})") from None
    info, metrics, history = run.info(), run.metrics(), run.history()
    for path, value, kind in ((run / run.INFO, info, dict), (run / run.METRICS, metrics, dict),
                              (run / run.HISTORY, history, list), (overrides_file, overrides, list)):
        if not isinstance(value, kind):
            raise ValueError(f"{path}: unreadable (not a {'mapping' if kind is dict else 'list'})")
    metrics.update(epochs=info.get("epochs"), train_s=(info.get("timings_s") or {}).get("train_s"))
    return Job(run.path, tuple(str(o) for o in overrides if _split(str(o))[0] != "seed"), info.get("seed"),
               {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
               [row for row in history if isinstance(row, dict)])


def group_jobs(jobs: Sequence[Job]) -> list[Group]:
    """One group per configuration, in order of first appearance, labelled by the overrides that differ."""
    groups: dict[tuple[str, ...], Group] = {}
    for job in jobs:
        groups.setdefault(job.overrides, Group(job.overrides)).jobs.append(job)
    shared = set.intersection(*(set(g.overrides) for g in groups.values())) if len(groups) > 1 else set()
    for g in groups.values():
        g.label = " ".join(o for o in g.overrides if o not in shared) or "(defaults)"
    return list(groups.values())


# ------------------------------------------------------------------------------------------------ tables
def _direction(metric: str) -> str | None:
    """Which way is better: ``max`` for retrieval metrics, ``min`` for timings and losses, None for counts."""
    if metric == "epochs":
        return None
    return "min" if metric.endswith("_s") or "loss" in metric else "max"


def best_groups(groups: Sequence[Group], metric: str) -> set[int]:
    """Indices of the groups with the best mean for ``metric`` (ties all count); empty when all are equal."""
    means = {i: ms[0] for i, g in enumerate(groups) if (ms := g.mean_std(metric)) is not None}
    direction = _direction(metric)
    if len(set(means.values())) < 2 or direction is None:
        return set()
    best = max(means.values()) if direction == "max" else min(means.values())
    return {i for i, m in means.items() if m == best}


def _cell(ms: tuple[float, float | None] | None, metric: str) -> str:
    if ms is None:
        return "–"
    digits = 1 if metric.endswith("_s") or metric == "epochs" else 4
    return f"{ms[0]:.{digits}f}" + (f" ± {ms[1]:.{digits}f}" if ms[1] is not None else "")


def to_markdown(groups: Sequence[Group], metrics: Sequence[str]) -> str:
    """A markdown table: one row per configuration, ``mean ± std`` per metric, the best per column in bold."""
    best = {m: best_groups(groups, m) for m in metrics}
    lines = ["| configuration | seeds | " + " | ".join(metrics) + " |", "|---|---:|" + "---:|" * len(metrics)]
    for i, g in enumerate(groups):
        cells = [_cell(g.mean_std(m), m) for m in metrics]
        cells = [f"**{c}**" if i in best[m] else c for c, m in zip(cells, metrics)]
        lines.append(f"| {g.label} | {g.seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(groups: Sequence[Group], metrics: Sequence[str], path: Path) -> Path:
    """``configuration, seeds, <metric> mean, <metric> std, ..., best`` (the metrics this row is best at); the std is
    empty for a value measured on one seed."""
    best = {m: best_groups(groups, m) for m in metrics}
    f = io.StringIO()
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["configuration", "seeds", *[f"{m} {s}" for m in metrics for s in ("mean", "std")], "best"])
    for i, g in enumerate(groups):
        cells = []
        for m in metrics:
            ms = g.mean_std(m)
            cells += ["", ""] if ms is None else [f"{ms[0]:.6g}", "" if ms[1] is None else f"{ms[1]:.6g}"]
        w.writerow([g.label, g.seeds, *cells, ";".join(m for m in metrics if i in best[m])])
    return atomic_write(path, f.getvalue())


# ------------------------------------------------------------------------------------------------ plots
def ablation_axes(groups: Sequence[Group]) -> list[str]:
    """Override keys that take at least two values across the configurations (``seed`` is never one)."""
    values: dict[str, list[str]] = {}
    for g in groups:
        for key, value in map(_split, g.overrides):
            if value not in values.setdefault(key, []):
                values[key].append(value)
    axes = [k for k, v in values.items() if len(v) > 1]
    return [k for k in axes if k not in BUNDLES] or axes


def plot_axis(groups: Sequence[Group], axis: str, metrics: Sequence[str], path: Path) -> Path | None:
    """Metric (mean ± std over seeds) against the values of one ablation axis; one panel per metric that varies.

    Numeric axes are drawn as lines, others as bars; configurations that also differ elsewhere become series.
    """
    members = [g for g in groups if g.setting(axis) is not None]
    others = [k for k in ablation_axes(members) if k != axis]
    series: dict[str, list[Group]] = {}
    for g in members:
        series.setdefault(" ".join(f"{k}={g.setting(k)}" for k in others if g.setting(k) is not None), []).append(g)
    values = list(dict.fromkeys(g.setting(axis) for g in members))
    numeric = all(_is_number(v) for v in values)
    if numeric:
        values.sort(key=float)
    shown = [m for m in metrics if _varies(members, m)]
    if not shown:
        return None
    cols = min(3, len(shown))
    rows = -(-len(shown) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax in axes[len(shown):]:
        ax.set_axis_off()
    width = 0.8 / len(series)
    for ax, metric in zip(axes, shown):
        for s, (name, gs) in enumerate(series.items()):
            points = sorted((values.index(g.setting(axis)), g.mean_std(metric)) for g in gs if g.mean_std(metric))
            x = [p[0] for p in points]
            y, err = [p[1][0] for p in points], [p[1][1] or 0.0 for p in points]
            if numeric:
                ax.errorbar([float(values[i]) for i in x], y, yerr=err, marker="o", capsize=4, label=name or None)
            else:
                colors = [f"C{i}" for i in x] if len(series) == 1 else None  # one series: a colour per value
                ax.bar([i + (s - (len(series) - 1) / 2) * width for i in x], y, width, yerr=err, capsize=4,
                       label=name or None, color=colors)
        if not numeric:
            ax.set_xticks(range(len(values)), values, rotation=20 if max(map(len, values)) > 8 else 0)
        ax.set_xlabel(axis)
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    if any(series):
        axes[0].legend(fontsize="small")
    fig.suptitle(f"{axis} (mean ± std over seeds)")
    fig.savefig(path, dpi=110)
    return path


def plot_curves(groups: Sequence[Group], path: Path, keys: Sequence[str] = CURVES) -> Path | None:
    """Training curves per configuration: the mean over seeds per epoch, shaded ± std."""
    keys = [k for k in keys if any(k in row for g in groups for j in g.jobs for row in j.history)]
    if not keys:
        return None
    fig = Figure(figsize=(5.5 * len(keys) + 2.5, 3.8), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        for g in groups:
            by_epoch: dict[int, list[float]] = {}
            for j in g.jobs:
                for row in j.history:
                    if key in row:
                        by_epoch.setdefault(int(row["epoch"]), []).append(float(row[key]))
            epochs = sorted(by_epoch)
            mean = [statistics.fmean(by_epoch[e]) for e in epochs]
            std = [statistics.stdev(by_epoch[e]) if len(by_epoch[e]) > 1 else 0.0 for e in epochs]
            (line,) = ax.plot(epochs, mean, label=g.label, linewidth=1.2)
            ax.fill_between(epochs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                            color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(key)
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize="small")
    fig.suptitle("training curves (mean ± std over seeds)")
    fig.savefig(path, dpi=110)
    return path


# ------------------------------------------------------------------------------------------------ report
def write_report(paths: Sequence[str | Path], out: str | Path | None = None,
                 metrics: Sequence[str] | None = None) -> dict[str, Path]:
    """Write ``report.md``, ``report.csv``, ``ablation_<axis>.png`` and ``training_curves.png`` to ``out``
    (default: ``<first path>/report``); returns what was written by name."""
    jobs = find_jobs(paths)
    if not jobs:
        raise FileNotFoundError(f"no finished runs (run.json + metrics.json) under {', '.join(map(str, paths))}")
    groups = group_jobs(jobs)
    present = {m for j in jobs for m in j.metrics}
    if metrics:
        unknown = [m for m in metrics if m not in present]
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(present), n=3)
            raise ValueError(f"no run has the metric {unknown[0]!r}"
                             + (f" (did you mean {', '.join(close)}?)" if close else
                                f" (e.g. {', '.join(sorted(present)[:3])})"))
    metrics = [m for m in (metrics or DEFAULT_METRICS) if m in present]
    out = Path(out) if out is not None else Path(paths[0]) / "report"
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("ablation_*.png"):
        stale.unlink()

    written = {"csv": write_csv(groups, [*metrics, *sorted(present - set(metrics))], out / "report.csv")}
    plot_metrics = [m for m in metrics if m != "epochs"]
    for axis in ablation_axes(groups):
        if plot := plot_axis(groups, axis, plot_metrics, out / f"ablation_{_slug(axis)}.png"):
            written[f"ablation {axis}"] = plot
    if curves := plot_curves(groups, out / "training_curves.png"):
        written["curves"] = curves

    sources = sorted({str(j.path.parent) for j in jobs})
    lines = [f"# Results: {len(jobs)} runs, {len(groups)} configurations", "",
             f"Sources: {', '.join(f'`{s}`' for s in sources)}. Mean ± sample std over the seeds listed (no std "
             "for one seed), best in bold.",
             "", to_markdown(groups, metrics), ""]
    lines += [f"![{name}]({p.name})\n" for name, p in written.items() if p.suffix == ".png"]
    written["markdown"] = atomic_write(out / "report.md", "\n".join(lines))
    return written


# ------------------------------------------------------------------------------------------------ helpers
def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def _first_line(err: Exception) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def _is_number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _varies(groups: Sequence[Group], metric: str) -> bool:
    """Whether the configurations' means differ (a metric the axis does not touch is left out of its plot)."""
    means = [ms[0] for g in groups if (ms := g.mean_std(metric)) is not None]
    return len(means) > 1 and max(means) - min(means) > 1e-9


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
