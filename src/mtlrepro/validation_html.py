"""The readable side of a validation report: one line per expectation, and the HTML page."""
from __future__ import annotations

import html
import json
from typing import Any


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit - 3] + "..."


def observed_text(entry: dict) -> str:
    """One line saying what an expectation saw."""
    if entry.get("error"):
        return f"error: {entry['error']}"
    parts = []
    if entry.get("observed_value") is not None:
        parts.append(f"observed {_short(entry['observed_value'])}")
    if entry.get("unexpected_count"):
        pct = entry.get("unexpected_percent")
        pct = f" ({pct:.3g}%)" if isinstance(pct, (int, float)) else ""
        parts.append(f"{entry['unexpected_count']} unexpected values{pct}, e.g. "
                     f"{_short(entry.get('partial_unexpected_list') or [], 120)}")
    if entry.get("partial_missing_list"):
        parts.append(f"missing {_short(entry['partial_missing_list'], 120)}")
    if not parts and not entry.get("success") and entry.get("type") == "expect_column_to_exist":
        parts.append("column not in the table")
    return "; ".join(parts) or "-"


def render_html(report: dict) -> str:
    esc = html.escape
    status = "PASSED" if report["success"] else "FAILED"
    s = report["summary"]
    rows = []
    for i, e in enumerate(report["expectations"]):
        kwargs = {k: v for k, v in e["kwargs"].items() if k not in ("column", "column_A", "column_B")}
        rows.append(
            f'<tr class="{"ok" if e["success"] else "bad"}"><td>{i}</td>'
            f'<td>{"pass" if e["success"] else "FAIL"}</td><td><code>{esc(e["type"])}</code></td>'
            f'<td>{esc(str(e["column"] or ""))}</td><td><code>{esc(_short(kwargs, 300))}</code></td>'
            f'<td>{esc(observed_text(e))}</td></tr>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{esc(report['dataset'])}: raw data validation {status}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }}
th {{ background: #eee; }}
tr.ok td:nth-child(2) {{ color: #176117; }}
tr.bad td {{ background: #fde8e8; }}
tr.bad td:nth-child(2) {{ color: #a40000; font-weight: bold; }}
.PASSED {{ color: #176117; }} .FAILED {{ color: #a40000; }}
</style></head>
<body>
<h1>{esc(report['dataset'])}: raw data validation <span class="{status}">{status}</span></h1>
<ul>
<li>raw file: <code>{esc(report['raw_file'])}</code> ({report['n_rows']} rows, {report['n_columns']} columns)</li>
<li>expectations: {s['evaluated']} evaluated, {s['successful']} passed, {s['failed']} failed
 ({s['success_percent']:.1f}%)</li>
<li>Great Expectations {esc(str(report['great_expectations_version']))}, {esc(report['created_utc'])}</li>
</ul>
<table>
<thead><tr><th>#</th><th>result</th><th>expectation</th><th>column</th><th>arguments</th><th>observed</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
</body></html>
"""
