"""The metrics table both jobs print: one row per ``task/metric``, one column per K."""
from __future__ import annotations


def format_metrics(metrics: dict[str, float]) -> str:
    """``{"copurchase/recall@10": 0.6, ...}`` as aligned text; keys without ``@k`` are left out."""
    rows: dict[str, dict[int, float]] = {}
    for key, value in metrics.items():
        name, at, k = key.rpartition("@")
        if at and k.isdigit():
            rows.setdefault(name, {})[int(k)] = value
    if not rows:
        return "(no metrics)"
    ks = sorted({k for r in rows.values() for k in r})
    width = max(len(n) for n in rows) + 2
    lines = ["metric".ljust(width) + "".join(f"@{k:<8}" for k in ks)]
    for name, vals in rows.items():
        lines.append(name.ljust(width) + "".join(f"{vals[k]:<9.4f}" if k in vals else " " * 9 for k in ks))
    return "\n".join(lines)
