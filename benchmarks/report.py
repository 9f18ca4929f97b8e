"""The table, the verdict on the targets, the JSON record and the plot."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .scenarios import Row

_BASIS_TEXT = {"per_cpu": "ratios on per-server-CPU figures", "value": "ratios on results"}


def number(value: Optional[float]) -> str:
    """``12,345`` for large figures, three significant digits for small ones."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _groups(rows: Sequence[Row]) -> List[List[Row]]:
    order: Dict[Tuple[str, str], List[Row]] = {}
    for row in rows:
        order.setdefault((row.scenario, row.case), []).append(row)
    return list(order.values())


def _best(rows: Iterable[Row]) -> Optional[Row]:
    usable = [r for r in rows if not r.error and r.compared() is not None]
    if not usable:
        return None
    pick = max if usable[0].higher_is_better else min
    return pick(usable, key=lambda r: r.compared() or 0.0)


def references(group: Sequence[Row]) -> Tuple[Optional[Row], Optional[Row]]:
    """The floor row and the best CPython 3.11 row of a (scenario, case) group."""
    floor = _best(r for r in group if r.family == "floor")
    stdlib = _best(r for r in group if r.family == "stdlib")
    return floor, stdlib


def ratio(row: Row, reference: Optional[Row]) -> Optional[float]:
    """``row``'s compared figure over ``reference``'s (None when either is missing)."""
    if reference is None or row.error:
        return None
    mine, theirs = row.compared(), reference.compared()
    if mine is None or not theirs:
        return None
    return mine / theirs


def _ratio_text(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.2f}"


_HEADER = ("Implementation", "Result", "Per server CPU-s", "vs floor", "vs 3.11")
_WIDTHS = (24, 22, 22, 8, 7)


def _line(cells: Sequence[str]) -> str:
    parts = [cell.ljust(width) if i < 3 else cell.rjust(width)
             for i, (cell, width) in enumerate(zip(cells, _WIDTHS))]
    return "  ".join(parts).rstrip()


def _row_cells(row: Row, floor: Optional[Row], stdlib: Optional[Row]) -> List[str]:
    if row.error:
        return [row.label, f"failed: {row.error}"]
    result = f"{number(row.value)} {row.unit}"
    per_cpu = "" if row.per_cpu is None else f"{number(row.per_cpu)} /CPU-s"
    return [row.label, result, per_cpu, _ratio_text(ratio(row, floor)), _ratio_text(ratio(row, stdlib))]


def table(rows: Sequence[Row]) -> str:
    """The whole table as text, one block per (scenario, case)."""
    out = [_line(_HEADER), _line(["-" * w for w in _WIDTHS])]
    for group in _groups(rows):
        first = group[0]
        basis = _BASIS_TEXT[first.basis]
        lower = "" if first.higher_is_better else ", lower is better"
        out.append(f"{first.scenario}: {first.case}  ({basis}{lower})")
        floor, stdlib = references(group)
        for row in group:
            cells = _row_cells(row, floor, stdlib)
            out.append(_line(["  " + cells[0]] + cells[1:]) if not row.error
                       else "  " + cells[0].ljust(_WIDTHS[0]) + "  " + cells[1])
        out.extend(_worker_note(group))
    return "\n".join(out)


def _worker_note(group: Sequence[Row]) -> List[str]:
    if group[0].scenario != "workers" or len(group) < 2:
        return []
    first, last = group[0], group[-1]
    if first.error or last.error or not first.value or last.value is None:
        return []
    return [f"  {last.label} / {first.label}: {last.value / first.value:.2f}x msg/s"]


# -- targets -------------------------------------------------------------------------------


def _find(rows: Sequence[Row], scenario: str, family: str, label: Optional[str] = None) -> List[Row]:
    return [r for r in rows if r.scenario == scenario and r.family == family
            and (label is None or r.label == label)]


def _largest_case(rows: Sequence[Row], scenario: str) -> List[Row]:
    sized = [r for r in rows if r.scenario == scenario and r.x is not None]
    if not sized:
        return [r for r in rows if r.scenario == scenario]
    top = max(r.x or 0 for r in sized)
    return [r for r in rows if r.scenario == scenario and r.x in (top, None)]


def targets(rows: Sequence[Row], ours: str) -> List[Tuple[str, Optional[float], str]]:
    """``(target, measured ratio, verdict)`` for each target of the issue.

    ``ours`` is the label of our row on the best poller.
    """
    idle = _largest_case(rows, "idle")
    memory = [r for r in rows if r.scenario == "memory"]
    checks = [
        ("idle scaling: ours >= 0.90 x selectors loop (round trips/s)", idle, "floor", 0.90, True),
        ("echo: ours >= 0.95 x selectors loop (msg per server CPU-s)", rows_of(rows, "echo"),
         "floor", 0.95, True),
        ("echo: ours >= 1.00 x CPython 3.11 asyncore (msg per server CPU-s)", rows_of(rows, "echo"),
         "stdlib", 1.0, True),
        ("lines: ours >= 0.85 x linear splitter (lines per server CPU-s)", rows_of(rows, "lines"),
         "floor", 0.85, True),
        ("bulk in: ours >= 1.00 x CPython 3.11 (per server CPU-s)", rows_of(rows, "bulk in"),
         "stdlib", 1.0, True),
        ("bulk out: ours >= 1.00 x CPython 3.11 (per server CPU-s)", rows_of(rows, "bulk out"),
         "stdlib", 1.0, True),
        ("memory: ours <= 1.20 x CPython 3.11 asyncore with poll (peak RSS)", memory, "stdlib", 1.2, False),
    ]
    return [_verdict(text, group, ours, family, bound, at_least)
            for text, group, family, bound, at_least in checks if group]


def rows_of(rows: Sequence[Row], scenario: str) -> List[Row]:
    return [r for r in rows if r.scenario == scenario]


def _verdict(
    text: str, group: Sequence[Row], ours: str, family: str, bound: float, at_least: bool,
) -> Tuple[str, Optional[float], str]:
    mine = next((r for r in group if r.label == ours), None)
    refs = [r for r in group if r.family == family]
    if family == "stdlib" and not at_least:
        # memory is held against 3.11 with poll, the variant that survives 10,000 fds
        refs = [r for r in refs if r.label.endswith("poll")] or refs
    reference = _best(refs)
    value = None if mine is None else ratio(mine, reference)
    if value is None:
        return text, None, "not measured"
    met = value >= bound if at_least else value <= bound
    return text, value, "met" if met else "NOT met"


def targets_text(results: Sequence[Tuple[str, Optional[float], str]]) -> str:
    lines = ["Targets (ratios of ours on the best poller):"]
    for text, value, verdict in results:
        shown = "-" if value is None else f"{value:.2f}"
        lines.append(f"  {text:<72} {shown:>6}  {verdict}")
    return "\n".join(lines)


# -- files --------------------------------------------------------------------------------


def write_json(path: Path, rows: Sequence[Row], meta: Dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=1))


def _idle_series(rows: Sequence[Row]) -> Dict[str, List[Tuple[int, float]]]:
    """Points per implementation; one that failed says at which size in its name."""
    series: Dict[str, List[Tuple[int, float]]] = {}
    renamed: Dict[str, str] = {}
    for row in rows:
        if row.scenario != "idle" or not row.x:
            continue
        if row.error:
            renamed[row.label] = f"{row.label} (failed at {row.x:,})"
        elif row.value:
            series.setdefault(row.label, []).append((row.x, row.value))
    return {renamed.get(label, label): points for label, points in series.items()}


def plot(path: Path, rows: Sequence[Row], title: str) -> Optional[str]:
    """Draw idle connections against round trips/s; returns why not, if it could not."""
    series = _idle_series(rows)
    if not series:
        return "no idle-scaling results to plot"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib); no plot drawn"
    figure, axes = plt.subplots(figsize=(8, 5), dpi=100)
    sizes = sorted({x for points in series.values() for x, _ in points})
    for label, points in series.items():
        xs, ys = zip(*sorted(points))
        axes.plot(xs, ys, marker="o", label=label, linestyle="--" if "3.11" in label else "-")
    axes.set(xscale="log", yscale="log", xlabel="idle connections beside the active one",
             ylabel="round trips per second", title=title)
    axes.set_xticks(sizes, [f"{x:,}" for x in sizes])
    axes.minorticks_off()
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(str(path))
    plt.close(figure)
    return None
