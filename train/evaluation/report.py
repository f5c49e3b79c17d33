"""The terminal table of an evaluation report (the dict that also goes to ``--report``,
where non-finite numbers, e.g. the Elo of a 100% score, are written as null)."""

from __future__ import annotations

import math

from train.evaluation.heldout import METRIC_BY_KEY
from train.evaluation.match import elo_text

__all__ = ["format_report", "json_safe"]


def json_safe(obj):
    """``obj`` with non-finite floats as None (strict JSON has no inf or NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def _num(x: float | None, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+.4f}" if sign else f"{x:.4f}"


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Aligned columns: the first ``left`` flush left, the others flush right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        cells = (c.ljust(w) if i < left else c.rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        return "  ".join(cells).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def format_report(report: dict) -> str:
    out = []
    for side in ("A", "B"):
        p = report["players"][side]
        out.append(f"{side}: {p['name']}: {p['description']}")
    held = report.get("heldout")
    out.append("")
    if held is None or held.get("skipped"):
        reason = held.get("skipped") if held else "not asked for"
        out.append(f"held-out metrics: skipped ({reason})")
    else:
        out.append(f"held-out metrics: {held['path']}, {held['positions']} positions; "
                   f"value target teacher_mix {held['teacher_mix']}, policy target "
                   f"{'teacher move where known' if held['policy_from_teacher'] else 'move played'}")
        for side in held.get("no_metrics", []):
            out.append(f"  {side} is a baseline ({report['players'][side]['name']}): "
                       "no held-out metrics for it")
        sides = [s for s in ("A", "B") if s in held["metrics"]]
        rates = held.get("base_rates") or {}
        header = ["metric", "better", *(["base rate"] if rates else []), *sides]
        paired = "diff" in held
        if paired:
            boot = held.get("bootstrap", 0)
            header += ["A - B", f"95% CI (paired bootstrap x{boot})" if boot else "95% CI"]
        rows = []
        for key, metric in METRIC_BY_KEY.items():
            better = "higher" if metric.higher_is_better else "lower"
            task = key.removesuffix("_f1")
            rate = [_num(rates[task]) if key.endswith("_f1") and task in rates else ""] \
                if rates else []
            row = [metric.label, better, *rate, *(_num(held["metrics"][s][key]) for s in sides)]
            if paired:
                lo, hi = held["ci95"].get(key, (None, None))
                ci = "-" if lo is None or math.isnan(lo) else f"[{_num(lo, True)}, {_num(hi, True)}]"
                row += [_num(held["diff"][key], True), ci]
            rows.append(row)
        out += _table(header, rows, left=2)
    match = report.get("match")
    if match and match.get("games"):
        out.append("")
        out.append(f"match: {match['games']} games, {match['openings']} openings x 2 colours "
                   f"from {match['book']}, ply cap {match['max_plies']} "
                   f"(adjudicated: {match['adjudicate']})")
        out += _table(["", "A wins", "draws", "A losses", "score (A)",
                       "Elo A - B [95% interval]"],
                      [["result", str(match["wins"]), str(match["draws"]), str(match["losses"]),
                        f"{match['points']:g}/{match['games']} = {match['score']:.3f}",
                        elo_text(match)]])
        endings = ", ".join(f"{k} {v}" for k, v in match["terminations"].items())
        out.append(f"endings: {endings}; mean length {match['mean_plies']:.1f} plies")
        if match.get("pgn"):
            out.append(f"games written to {match['pgn']}")
    return "\n".join(out)
