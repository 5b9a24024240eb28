"""The audit as a terminal report: the headline, features by spend, top prompts, then each finding with its
dollars and the line that turns its lever on."""

from __future__ import annotations

from typing import Any


def _usd(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"${v:,.{digits}f}" if abs(v) >= 0.01 or v == 0 else f"${v:.6f}"


def _change(trend: dict[str, Any]) -> str:
    c = trend.get("change")
    return "-" if c is None else f"{c:+.0%}"


def _share(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


def render(report: dict[str, Any]) -> str:
    t, p = report["totals"], report["period"]
    lines = [f"scrimp audit: {p['since']} to {p['until']} ({p['days']:g} days)", "",
             (f"cost per successful request: {_usd(t['cost_per_success_usd'], 5)} (trend {_change(t['trend'])}, "
             f"second half of the period against the first)"),
             (f"spend {_usd(t['cost_usd'])} on {t['calls']} calls ({t['calls'] - t['succeeded']} failed), "
             f"already saved {_usd(t['saved_usd'])}; of the spend, shadow evaluations {_usd(t['shadow_cost_usd'])}"),
             (f"levers below would save {_usd(t['potential_saving_usd'])} over the period "
             f"(~{_usd(t['potential_saving_month_usd'])} a month), untested model moves aside"), ""]
    lines.append(f"{'feature':<22}{'calls':>8}{'spend':>12}{'$/success':>12}{'trend':>7}{'cache hit':>10}"
                 f"{'avg in':>8}{'trim':>6}{'avg out':>8}{'no max':>7}{'streamed':>9}")
    for f in report["features"]:
        lines.append(f"{f['feature'][:21]:<22}{f['calls']:>8}{_usd(f['cost_usd']):>12}"
                     f"{_usd(f['cost_per_success_usd'], 5):>12}{_change(f['trend']):>7}{f['cache_hit_rate']:>10.0%}"
                     f"{f['avg_input_tokens']:>8.0f}{_share(f.get('trimmable_share')):>6}"
                     f"{f['avg_output_tokens']:>8.0f}{_share(f.get('no_max_tokens_share')):>7}"
                     f"{f['streamed_share']:>9.0%}")
    if report["prompts"]:
        lines += ["", "top prompts by spend (normalised template):"]
        for r in report["prompts"][:10]:
            lines.append(f"  {_usd(r['cost_usd']):>10}  {r['calls']:>6}x  {r['cacheable']:<8} [{r['feature']}] "
                         f"{r['template'][:70]}")
    lines += ["", "findings (largest saving first):"]
    if not report["findings"]:
        lines.append("  none: no lever would save anything measurable on this traffic")
    for i, f in enumerate(report["findings"], 1):
        tag = {"untested": "up to ", "estimate": "~"}.get(f["confidence"], "")
        lines.append(f"{i:>3}. [{f['section']}/{f['check']}] {f['title']}")
        lines.append(f"     saves {tag}{_usd(f['saving_usd'])} over the period ({tag}{_usd(f['saving_month_usd'])} "
                     f"a month) with {f['lever']}: {f['how']}")
    for note in report["notes"]:
        lines += ["", f"note: {note}"]
    return "\n".join(lines)
