"""`scrimp router`: train, calibrate, evaluate and apply the learned router; export shadow results."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click
import numpy as np


def _fail(message: str) -> None:
    raise click.ClickException(message)


def _load_router(path: str):
    from scrimp.router.model import Router

    try:
        return Router.load(path)
    except (OSError, ValueError, KeyError) as exc:
        _fail(f"cannot load router {path}: {exc}")


def _data(path: str, cheap: str, strong: str):
    from scrimp.router.data import DataError, read

    try:
        return read(path, cheap, strong)
    except DataError as exc:
        _fail(str(exc))


def _progress() -> bool:
    return sys.stderr.isatty()


@click.group()
def router() -> None:
    """Learned routing: train, calibrate, eval, predict; export shadow results."""


@router.command()
@click.option("--data", "data_path", required=True, type=click.Path(), help="Labelled JSON lines.")
@click.option("--cheap", required=True, help="The cheap model's name in the scores.")
@click.option("--strong", required=True, help="The strong model's name in the scores.")
@click.option("--out", required=True, type=click.Path(), help="Router file to write.")
@click.option("--k", type=int, default=100, show_default=True, help="Neighbours that vote on each prompt.")
def train(data_path: str, cheap: str, strong: str, out: str, k: int) -> None:
    """Fit a router on labelled prompts (it then needs `calibrate`)."""
    from scrimp.router.model import Router

    data = _data(data_path, cheap, strong)
    click.echo(f"{len(data)} prompts; cheap model good enough on {(data.cheap >= data.strong).mean():.1%}", err=True)
    try:
        r = Router(cheap, strong, k=k).fit(data.prompts, data.cheap, data.strong, progress=True)
    except ValueError as exc:
        _fail(str(exc))
    r.info.update(data=str(data_path), data_digest=_digest(data.prompts))
    r.save(out)
    click.echo(f"wrote {out} (uncalibrated: run scrimp router calibrate)")


def _digest(prompts: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\x1e".join(prompts).encode()).hexdigest()[:16]


def _scored_as_unseen(r, prompts: list[str], progress: bool) -> np.ndarray:
    """p_cheap_ok with the router's own training prompts scored as they were when held out, so calibrating or
    evaluating on training data is not flattered; says how many there were."""
    seen = r.seen_in_training(prompts)
    if seen:
        click.echo(f"{seen} of {len(prompts)} prompts were in the training data: they are scored out of fold",
                   err=True)
    return r.p_cheap_ok(prompts, progress=progress, out_of_fold=True)


@router.command()
@click.option("--router", "router_path", required=True, type=click.Path())
@click.option("--data", "data_path", required=True, type=click.Path(), help="Labelled data to calibrate on.")
@click.option("--target-quality", type=float, default=0.95, show_default=True,
              help="Keep quality at or above this share of the strong model's.")
@click.option("--confidence", type=float, default=0.95, show_default=True)
def calibrate(router_path: str, data_path: str, target_quality: float, confidence: float) -> None:
    """Pick the threshold that keeps quality at the target; write it into the router file."""
    from scrimp.router.calibrate import calibrate as run

    if not 0 < target_quality <= 1:
        _fail("--target-quality must be in (0, 1]")
    r = _load_router(router_path)
    data = _data(data_path, r.cheap, r.strong)
    p = _scored_as_unseen(r, data.prompts, _progress())
    cal = run(p, data.cheap, data.strong, target_quality, confidence)
    r.threshold = cal.threshold
    r.info["calibration"] = {**cal.to_dict(), "data": str(data_path)}
    r.save(router_path)
    click.echo(f"threshold {cal.threshold:.4f}: expected strong-model share {cal.strong_share:.1%}; quality "
               f"{cal.quality_ratio:.1%} of the strong model's (>= {cal.quality_ratio_lower:.1%} at {confidence:.0%} "
               f"confidence; target {target_quality:.0%}) on {cal.examples} prompts")


@router.command(name="eval")
@click.option("--router", "router_path", required=True, type=click.Path())
@click.option("--data", "data_path", required=True, type=click.Path())
@click.option("--plot", type=click.Path(), help="Draw quality vs strong-model share to this PNG.")
@click.option("--json", "as_json", is_flag=True)
def eval_(router_path: str, data_path: str, plot: str | None, as_json: bool) -> None:
    """APGR, CPT(50%), CPT(80%) beside a random router and the oracle."""
    from scrimp.router import metrics

    r = _load_router(router_path)
    data = _data(data_path, r.cheap, r.strong)
    p = _scored_as_unseen(r, data.prompts, _progress() and not as_json)
    result = {"examples": len(data), "router": metrics.summary(p, data.cheap, data.strong),
              "random": metrics.random_summary(data.cheap, data.strong),
              "oracle": metrics.summary(metrics.oracle_scores(data.cheap, data.strong), data.cheap, data.strong)}
    if r.threshold is not None:
        to_cheap = p >= r.threshold
        q = float(np.where(to_cheap, data.cheap, data.strong).mean())
        result["calibrated"] = {"threshold": r.threshold, "strong_share": float(1 - to_cheap.mean()),
                                "quality_ratio": q / float(data.strong.mean()) if data.strong.mean() else None}
    if plot:
        _plot(plot, p, data, r.threshold)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{len(data)} prompts: cheap quality {result['router']['cheap_quality']:.3f}, "
               f"strong {result['router']['strong_quality']:.3f}")
    click.echo(f"{'':10} {'APGR':>6} {'CPT(50%)':>9} {'CPT(80%)':>9}")
    for name in ("router", "random", "oracle"):
        m = result[name]
        click.echo(f"{name:10} {m['apgr']:>6.3f} {m['cpt50']:>9.1%} {m['cpt80']:>9.1%}")
    if "calibrated" in result:
        c = result["calibrated"]
        click.echo(f"at the calibrated threshold: strong share {c['strong_share']:.1%}, quality "
                   f"{c['quality_ratio']:.1%} of strong")


def _plot(path: str, p: np.ndarray, data, threshold: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scrimp.router import metrics

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, scores in (("router", p), ("oracle", metrics.oracle_scores(data.cheap, data.strong))):
        c = metrics.curve(scores, data.cheap, data.strong)
        ax.plot(c.share * 100, c.quality, label=name)
    ax.plot([0, 100], [data.cheap.mean(), data.strong.mean()], "--", label="random")
    if threshold is not None:
        to_cheap = p >= threshold
        ax.plot([(1 - to_cheap.mean()) * 100], [np.where(to_cheap, data.cheap, data.strong).mean()], "o",
                label="calibrated threshold")
    ax.set_xlabel("calls to the strong model (%)")
    ax.set_ylabel("quality")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = Path(path).with_name(Path(path).name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


@router.command()
@click.option("--router", "router_path", required=True, type=click.Path())
@click.option("--data", "data_path", required=True, type=click.Path(),
              help="JSON lines with a 'prompt' (scores not needed).")
@click.option("--out", type=click.Path(), help="Write here instead of standard output.")
def predict(router_path: str, data_path: str, out: str | None) -> None:
    """One JSON line per prompt: {"prompt", "p_cheap_ok"}."""
    r = _load_router(router_path)
    prompts = []
    try:
        with open(data_path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row.get("prompt"), str):
                        _fail(f"{data_path}:{n}: no 'prompt' string")
                    prompts.append(row["prompt"])
    except OSError as exc:
        _fail(f"{data_path}: {exc.strerror}")
    except json.JSONDecodeError as exc:
        _fail(f"{data_path}: not JSON lines ({exc})")
    p = r.p_cheap_ok(prompts, progress=_progress())
    lines = "".join(json.dumps({"prompt": q, "p_cheap_ok": round(float(v), 6)}) + "\n" for q, v in zip(prompts, p))
    if not out:
        click.echo(lines, nl=False)
        return
    fd, tmp = tempfile.mkstemp(dir=Path(out).resolve().parent, prefix=".predict-")
    with os.fdopen(fd, "w") as fh:
        fh.write(lines)
    os.replace(tmp, out)


@router.command(name="export-shadow")
@click.option("--config", required=True, type=click.Path(), help="Gateway config (its ledger holds the results).")
@click.option("--route", help="Only this route.")
def export_shadow(config: str, route: str | None) -> None:
    """Shadow results from the ledger as labelled data for `train` (cheap score; strong = 1)."""
    from scrimp.gateway.config import ConfigError, load
    from scrimp.ledger.store import open_store

    try:
        cfg = load(config)
    except ConfigError as exc:
        _fail(str(exc))
    section = next((s for s in cfg.stages if s.get("name") == "ledger"), None)
    if section is None:
        _fail(f"{config}: no ledger stage configured")
    store = open_store(section)
    sql = "SELECT prompt, cheap_model, strong_model, score FROM shadow"
    rows = store.query(sql + (" WHERE route = ?" if route else "") + " ORDER BY ts", (route,) if route else ())
    for prompt, cheap, strong, score in rows:
        if score is not None:
            click.echo(json.dumps({"prompt": prompt, "scores": {cheap: float(score), strong: 1.0}}))
