"""`scrimp cache`: train, calibrate and evaluate the semantic cache; invalidate entries; export feedback."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click


def _fail(message: str) -> None:
    raise click.ClickException(message)


def _section(config: str | None) -> dict[str, Any]:
    """The semantic_cache section of a gateway config (empty when none is given)."""
    if not config:
        return {}
    from scrimp.gateway.config import ConfigError, load

    try:
        cfg = load(config)
    except ConfigError as exc:
        _fail(str(exc))
    for section in cfg.stages:
        if section.get("name") == "semantic_cache":
            return section
    _fail(f"{config}: no semantic_cache stage configured")
    return {}


def _model(model_dir: str | None, section: dict[str, Any], runtime: str | None = None):
    from scrimp.cache.semantic.model import ModelError, load_model

    try:
        model = load_model(model_dir or section.get("model"), runtime=runtime or section.get("runtime", "onnx"),
                           remote=section.get("embeddings"), threads=os.cpu_count() or 1)
        if "threshold" in section:
            model.threshold = float(section["threshold"])
        if "max_false_hit" in section:
            model.threshold = model.threshold_for(float(section["max_false_hit"]))
    except (ModelError, ValueError, OSError) as exc:
        _fail(str(exc))
    return model


def _warn_unsupported(message: str) -> None:
    """--force: the model is written, and nobody reading the output should miss why it should not have been."""
    bar = "!" * 78
    click.secho(f"{bar}\nWARNING: {message}.\nWritten anyway (--force): the threshold does NOT keep false hits "
                f"under the target with the stated confidence.\n{bar}", err=True, fg="red", bold=True)


def _pairs(path: str):
    from scrimp.cache.semantic.pairs import PairsError, read_pairs

    try:
        return read_pairs(path)
    except PairsError as exc:
        _fail(str(exc))


@click.group()
def cache() -> None:
    """Semantic cache: calibrate, train, eval; invalidate; feedback."""


@cache.command()
@click.option("--pairs", "pairs_path", required=True, type=click.Path(), help="Labelled pairs, JSON lines.")
@click.option("--config", type=click.Path(), help="Gateway config: evaluate its semantic_cache settings.")
@click.option("--model", "model_dir", type=click.Path(), help="Model directory (default: the shipped model).")
@click.option("--max-false-hit", type=float, help="Evaluate at the threshold calibrated for this target.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval(pairs_path: str, config: str | None, model_dir: str | None, max_false_hit: float | None,
         as_json: bool) -> None:
    """Decide each pair as the gateway would (a cache holding text_a, asked text_b); report hit rates."""
    from scrimp.cache.semantic.training import pair_scores

    section = _section(config)
    model = _model(model_dir, section)
    if max_false_hit is not None:
        try:
            model.threshold = model.threshold_for(max_false_hit)
        except ValueError as exc:
            _fail(str(exc))
    pairs = _pairs(pairs_path)
    cos, score = pair_scores(model, pairs, progress=not as_json and sys.stderr.isatty())
    hit = model.accepts(cos, score)
    dup, non = pairs.labels == 1, pairs.labels == 0
    result = {"pairs": len(pairs), "duplicates": int(dup.sum()), "non_duplicates": int(non.sum()),
              "hit_rate": float(hit[dup].mean()) if dup.any() else None,
              "false_hit_rate": float(hit[non].mean()) if non.any() else None,
              "hits": int(hit.sum()), "false_hits": int((hit & non).sum()), "threshold": model.threshold,
              "verifier": model.verifier is not None,
              "precision": float((hit & dup).sum() / hit.sum()) if hit.any() else None}
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"pairs {result['pairs']} ({result['duplicates']} duplicates, {result['non_duplicates']} not)")
    click.echo(f"threshold {model.threshold:.4f} on {'verifier probability' if model.verifier else 'cosine'}")
    if result["hit_rate"] is not None:
        click.echo(f"hit rate on duplicates      {result['hit_rate']:.1%}")
    if result["false_hit_rate"] is not None:
        click.echo(f"false-hit rate on the rest  {result['false_hit_rate']:.2%}  ({result['false_hits']} pairs)")


@cache.command()
@click.option("--pairs", "pairs_path", required=True, type=click.Path(), help="Labelled pairs, JSON lines.")
@click.option("--max-false-hit", type=float, default=0.01, show_default=True)
@click.option("--confidence", type=float, default=0.95, show_default=True,
              help="Confidence that the false-hit rate holds on unseen pairs (upper bound).")
@click.option("--model", "model_dir", type=click.Path(), help="Model to calibrate (default: the shipped one).")
@click.option("--out", type=click.Path(), help="Write the calibrated model here (default: in place).")
@click.option("--force", is_flag=True,
              help="Write the model even when the pairs cannot support the target (the false-hit bound is above it).")
def calibrate(pairs_path: str, max_false_hit: float, confidence: float, model_dir: str | None,
              out: str | None, force: bool) -> None:
    """Pick the threshold that keeps false hits at or under the target.

    Refuses (exit 1, nothing written) when the upper confidence bound on the false-hit rate at the chosen
    threshold is above the target, unless --force."""
    from scrimp.cache.semantic.model import DEFAULT_MODEL_DIR
    from scrimp.cache.semantic.training import calibrate_model, data_provenance

    if not 0 < max_false_hit < 1:
        _fail("--max-false-hit must be between 0 and 1")
    target = Path(out or model_dir or "")
    if not out and (not model_dir or Path(model_dir).resolve() == DEFAULT_MODEL_DIR.resolve()):
        _fail("give --out DIR: the shipped model is not overwritten")
    model = _model(model_dir, {})
    pairs = _pairs(pairs_path)
    try:
        result = calibrate_model(model, pairs, max_false_hit, confidence, progress=sys.stderr.isatty(),
                                 source=data_provenance(pairs_path, len(pairs)))
    except ValueError as exc:
        _fail(str(exc))
    if not result.supported:
        if not force:
            _fail(f"{result.shortfall()}. Nothing written. Give more labelled pairs, a higher --max-false-hit or "
                  "a lower --confidence; --force writes the model anyway.")
        _warn_unsupported(result.shortfall())
        model.info["calibration"]["forced"] = True
    if out and model_dir and Path(model_dir).resolve() != Path(out).resolve():
        import shutil

        shutil.copytree(model_dir, out, dirs_exist_ok=True)
    elif out and not model_dir:
        import shutil

        shutil.copytree(DEFAULT_MODEL_DIR, out, dirs_exist_ok=True)
    model.save(target)
    click.echo(f"threshold {result.threshold:.4f}: false hits {result.false_hit_rate:.2%} on {result.pairs - result.duplicates} "
               f"non-duplicates (<= {result.false_hit_upper:.2%} at {confidence:.0%} confidence), "
               f"hit rate {result.hit_rate:.1%} on {result.duplicates} duplicates")
    click.echo(f"wrote {target}")


@cache.command()
@click.option("--pairs", "pairs_path", required=True, type=click.Path(), help="Labelled pairs, JSON lines.")
@click.option("--out", required=True, type=click.Path(), help="Model directory to write.")
@click.option("--max-false-hit", type=float, default=0.01, show_default=True)
@click.option("--calibration-share", type=float, default=0.3, show_default=True,
              help="Share of the pairs (by question group) kept aside to calibrate on.")
@click.option("--adapt-embedder/--no-adapt-embedder", default=True, show_default=True,
              help="Fine-tune the embedder's top layers on the training pairs (CPU, minutes).")
@click.option("--feedback", "feedback_config", type=click.Path(),
              help="Also learn from client feedback stored by the gateway with this config.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Write the model even when the calibration part cannot support the "
              "target (the false-hit bound is above it).")
def train(pairs_path: str, out: str, max_false_hit: float, calibration_share: float, adapt_embedder: bool,
          feedback_config: str | None, seed: int, force: bool) -> None:
    """Train the verifier (and adapt the embedder) on labelled pairs, then calibrate.

    Refuses (exit 1, nothing written) when the upper confidence bound on the false-hit rate at the chosen
    threshold is above the target, unless --force."""
    import numpy as np

    from scrimp.cache.semantic.pairs import Pairs
    from scrimp.cache.semantic.training import CalibrationUnsupported, data_provenance
    from scrimp.cache.semantic.training import train as run_train

    pairs = _pairs(pairs_path)
    source = data_provenance(pairs_path, len(pairs))
    if feedback_config:
        from scrimp.cache.semantic.store import open_store

        rows = open_store(_section(feedback_config)).feedback()
        if rows:
            pairs = pairs + Pairs([r["text_a"] for r in rows], [r["text_b"] for r in rows],
                                  np.asarray([r["label"] for r in rows]))
            click.echo(f"+ {len(rows)} feedback pairs")
        source["feedback"] = {"config": str(Path(feedback_config).resolve()), "pairs": len(rows)}
    try:
        _, result = run_train(pairs, out, max_false_hit=max_false_hit, calibration_share=calibration_share,
                              adapt_embedder=adapt_embedder, seed=seed, force=force, source=source)
    except CalibrationUnsupported as exc:
        _fail(f"{exc} (in the calibration part: --calibration-share {calibration_share} of the pairs). Nothing "
              "written. Give more labelled pairs or a higher --max-false-hit; --force writes the model anyway.")
    except ValueError as exc:
        _fail(str(exc))
    if not result.supported:
        _warn_unsupported(result.shortfall())
    click.echo(f"calibrated on {result.pairs} held-out pairs: threshold {result.threshold:.4f}, "
               f"false hits {result.false_hit_rate:.2%} (<= {result.false_hit_upper:.2%}), "
               f"hit rate {result.hit_rate:.1%}")
    click.echo(f"wrote {out}")


@cache.command()
@click.option("--config", required=True, type=click.Path(), help="Gateway config with a semantic_cache stage.")
@click.option("--tenant", required=True)
@click.option("--feature", help="Only this feature's entries.")
@click.option("--entry", "entry_id", type=int, help="Only this entry.")
def invalidate(config: str, tenant: str, feature: str | None, entry_id: int | None) -> None:
    """Delete a tenant's semantic-cache entries (all, one feature's, or one)."""
    from scrimp.cache.semantic.store import open_store

    store = open_store(_section(config))
    where, params = "tenant = ?", [tenant]
    if feature:
        where, params = where + " AND feature = ?", [*params, feature]
    if entry_id is not None:
        where, params = where + " AND id = ?", [*params, entry_id]
    gone = store.delete(where, tuple(params))
    store.close()
    click.echo(f"removed {len(gone)} entries")


@cache.command()
@click.option("--config", required=True, type=click.Path(), help="Gateway config with a semantic_cache stage.")
def feedback(config: str) -> None:
    """Print clients' feedback as labelled pairs (JSON lines), ready for `scrimp cache train`."""
    from scrimp.cache.semantic.store import open_store

    store = open_store(_section(config))
    for row in store.feedback():
        click.echo(json.dumps({"text_a": row["text_a"], "text_b": row["text_b"], "label": row["label"],
                               "tenant": row["tenant"], "feature": row["feature"]}))
    store.close()
