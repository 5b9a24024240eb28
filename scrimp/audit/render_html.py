"""The audit as one self-contained HTML file with charts: Chart.js (MIT), the library the dashboard serves
from scrimp/dashboard/static, inlined so the file opens offline; without it, the same charts as plain SVG bars."""

from __future__ import annotations

import html
from importlib import resources
from typing import Any

import orjson

from scrimp.audit.render_text import _change, _usd

COLOURS = ["#2563eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"]


def chart_library() -> str | None:
    """Chart.js as shipped with the package (scrimp/dashboard/static/chart.umd.min.js), or None."""
    try:
        return (resources.files("scrimp") / "dashboard" / "static" / "chart.umd.min.js").read_text()
    except (FileNotFoundError, ModuleNotFoundError, OSError):
        return None


def charts(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's charts as Chart.js configurations (also what the SVG fallback draws)."""
    feats = report["features"][:12]
    findings = report["findings"][:12]
    out = [
        {"id": "spend", "title": "Spend by feature (USD)", "type": "bar",
         "labels": [f["feature"] for f in feats],
         "series": [{"label": "spend", "data": [round(f["cost_usd"], 6) for f in feats]},
                    {"label": "already saved", "data": [round(f["saved_usd"], 6) for f in feats]}]},
        {"id": "savings", "title": "What each finding would save over the period (USD)", "type": "bar",
         "horizontal": True, "labels": [f"{f['check']} · {f['feature']}" for f in findings],
         "series": [{"label": "saving", "data": [round(f["saving_usd"], 6) for f in findings]}]},
        {"id": "cache", "title": "Cache hit rate by feature (%)", "type": "bar",
         "labels": [f["feature"] for f in feats],
         "series": [{"label": "exact / semantic hits", "data": [round(100 * f["cache_hit_rate"], 1) for f in feats]},
                    {"label": "input read from the prompt cache",
                     "data": [round(100 * f["prompt_cache_read_share"], 1) for f in feats]}]},
    ]
    days = len(report["totals"]["trend"]["daily"])
    out.append({"id": "trend", "title": "Cost per successful request, by day (USD)", "type": "line",
                "labels": [f"day {d + 1}" for d in range(days)],
                "series": [{"label": f["feature"], "data": f["trend"]["daily"]} for f in feats[:6]]})
    if report["prompts"]:
        top = report["prompts"][:10]
        out.append({"id": "prompts", "title": "Top prompts by spend (USD)", "type": "bar", "horizontal": True,
                    "labels": [f"{p['feature']}: {p['template'][:40]}" for p in top],
                    "series": [{"label": "spend", "data": [round(p["cost_usd"], 6) for p in top]}]})
    return out


def _chartjs(chart: dict[str, Any]) -> dict[str, Any]:
    return {"type": chart["type"],
            "data": {"labels": chart["labels"],
                     "datasets": [{"label": s["label"], "data": s["data"], "spanGaps": True,
                                   "backgroundColor": COLOURS[i % len(COLOURS)],
                                   "borderColor": COLOURS[i % len(COLOURS)]}
                                  for i, s in enumerate(chart["series"])]},
            "options": {"animation": False, "responsive": True, "maintainAspectRatio": False,
                        "indexAxis": "y" if chart.get("horizontal") else "x",
                        "plugins": {"title": {"display": True, "text": chart["title"]}}}}


def _svg(chart: dict[str, Any]) -> str:
    """A plain SVG bar chart of the first series (the fallback without Chart.js)."""
    series = chart["series"][0]["data"]
    values = [v or 0 for v in series]
    top = max(values, default=0) or 1
    rows = []
    for i, (label, v) in enumerate(zip(chart["labels"], values, strict=False)):
        w = 380 * v / top
        rows.append(f'<text x="0" y="{i * 22 + 15}" font-size="12">{html.escape(str(label)[:36])}</text>'
                    f'<rect x="250" y="{i * 22 + 3}" width="{w:.1f}" height="16" fill="{COLOURS[0]}"/>'
                    f'<text x="{255 + w:.1f}" y="{i * 22 + 15}" font-size="11">{v:g}</text>')
    return (f'<h3>{html.escape(chart["title"])}</h3><svg class="chart" width="720" height="{len(values) * 22 + 10}" '
            f'data-chart="{chart["id"]}">{"".join(rows)}</svg>')


def render(report: dict[str, Any]) -> str:
    t, p = report["totals"], report["period"]
    library = chart_library()
    spec = charts(report)
    if library is not None:
        canvases = "".join(f'<div class="box"><canvas id="chart-{c["id"]}"></canvas></div>' for c in spec)
        configs = orjson.dumps({c["id"]: _chartjs(c) for c in spec}).decode().replace("</", "<\\/")
        script = (f"<script>{library}</script><script>const charts = {configs};\n"
                  "for (const [id, cfg] of Object.entries(charts)) new Chart(document.getElementById('chart-' + id), cfg);"
                  "</script>")
    else:
        canvases, script = "".join(_svg(c) for c in spec), ""
    findings = "".join(
        f"<tr><td>{i}</td><td>{html.escape(f['section'])}/{html.escape(f['check'])}</td>"
        f"<td>{html.escape(f['feature'])}</td><td>{html.escape(f['title'])}</td>"
        f"<td class='n'>{'up to ' if f['confidence'] == 'untested' else ''}{_usd(f['saving_usd'])}</td>"
        f"<td class='n'>{_usd(f['saving_month_usd'])}</td><td><code>{html.escape(f['how'])}</code></td></tr>"
        for i, f in enumerate(report["findings"], 1))
    features = "".join(
        f"<tr><td>{html.escape(f['feature'])}</td><td class='n'>{f['calls']}</td><td class='n'>{_usd(f['cost_usd'])}</td>"
        f"<td class='n'>{_usd(f['cost_per_success_usd'], 5)}</td><td class='n'>{_change(f['trend'])}</td>"
        f"<td class='n'>{f['cache_hit_rate']:.0%}</td><td class='n'>{f['avg_input_tokens']:.0f}</td>"
        f"<td class='n'>{f['avg_output_tokens']:.0f}</td></tr>" for f in report["features"])
    notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in report["notes"])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>scrimp audit</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#111}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}} .n{{text-align:right}}
.box{{height:320px;margin:1.5em 0}} .head{{font-size:1.4em}} code{{font-size:.85em}} .note{{color:#555}}
</style></head><body>
<h1>scrimp audit</h1><p>{html.escape(p['since'])} to {html.escape(p['until'])} ({p['days']:g} days)</p>
<p class="head">Cost per successful request: <b>{_usd(t['cost_per_success_usd'], 5)}</b>
(trend {_change(t['trend'])})</p>
<p>Spend {_usd(t['cost_usd'])} on {t['calls']} calls; the levers below would save
<b>{_usd(t['potential_saving_usd'])}</b> over the period (~{_usd(t['potential_saving_month_usd'])} a month).</p>
{canvases}
<h2>Findings</h2><table><tr><th>#</th><th>check</th><th>feature</th><th>what</th><th>saving</th><th>a month</th>
<th>turn it on</th></tr>{findings}</table>
<h2>Features</h2><table><tr><th>feature</th><th>calls</th><th>spend</th><th>$/success</th><th>trend</th>
<th>cache hit</th><th>avg in</th><th>avg out</th></tr>{features}</table>{notes}
{script}</body></html>"""
