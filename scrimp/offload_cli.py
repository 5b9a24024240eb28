"""`scrimp offload`: find features a local classifier could answer, train and evaluate one, retrain a served one
from its newest logged answers."""

from __future__ import annotations

import json
import sys
from typing import Any

import click


def _fail(message: str) -> None:
    raise click.ClickException(message)


def _progress(as_json: bool = False) -> bool:
    return sys.stderr.isatty() and not as_json


def _config(path: str) -> Any:
    from scrimp.gateway.config import ConfigError, load

    try:
        return load(path)
    except ConfigError as exc:
        _fail(str(exc))


def _section(cfg: Any, name: str, path: str) -> dict[str, Any]:
    section = next((s for s in cfg.stages if s.get("name") == name), None)
    if section is None:
        _fail(f"{path}: no {name} stage configured")
    return section


def _log(config: str) -> Any:
    from scrimp.offload.logged import open_log

    section = _section(_config(config), "ledger", config)
    try:
        return open_log(section)
    except (ValueError, OSError) as exc:
        _fail(f"{config}: cannot open the request log: {exc}")


def _file_pairs(path: str):
    from scrimp.offload.data import DataError, read

    try:
        return read(path)
    except DataError as exc:
        _fail(str(exc))


def _settings(target: float, confidence: float, max_labels: int, folds: int):
    from scrimp.offload.training import TrainSettings

    if not 0.5 <= target < 1:
        _fail("--target-agreement must be in [0.5, 1)")
    if not 0.5 <= confidence < 1:
        _fail("--confidence must be in [0.5, 1)")
    if folds < 2:
        _fail("--folds must be at least 2")
    return TrainSettings(target_agreement=target, confidence=confidence, max_labels=max_labels, folds=folds)


def _train_and_write(pairs, settings, out: str, force: bool, source: str, as_json: bool) -> None:
    from scrimp.offload.labels import NotALabelSet
    from scrimp.offload.training import train as run

    try:
        trained = run(pairs.prompts, pairs.answers, settings, progress=_progress(as_json), source=source)
    except NotALabelSet as exc:
        _fail(f"not offloadable: {exc}")
    cal = trained.calibration
    if not cal.supported and not force:
        _fail(f"{cal.shortfall()}; nothing written (--force writes a model that answers nothing locally)")
    trained.model.save(out)
    s = trained.stats
    summary = {"out": out, "examples": len(pairs), "labels": len(trained.model.labels),
               "threshold": cal.to_dict()["threshold"], "calibration": cal.to_dict(),
               "seconds": {k: round(v, 2) for k, v in trained.seconds.items()}}
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"{len(pairs)} examples, {s.labels} distinct answers, {len(trained.model.labels)} labels learned "
               f"(answers seen at least {settings.min_per_label} times: {s.frequent_share:.1%} of the examples)")
    if cal.supported:
        click.echo(f"threshold {cal.threshold:.4f}: on held-out examples {cal.coverage:.1%} answered locally, "
                   f"agreeing with the LLM on {cal.agreement:.2%} (>= {cal.agreement_lower:.2%} at "
                   f"{cal.confidence:.0%} confidence; target {cal.target_agreement:.0%})")
        if cal.worst_label is not None:
            click.echo(f"label shift: the threshold also holds {cal.worst_label_agreement:.2%} agreement if "
                       f"{cal.worst_label!r} (a diverse label) became {cal.shift:.0%} of the calls")
    else:
        click.secho(f"WARNING: {cal.shortfall()}. Written anyway (--force): it answers nothing locally.",
                    err=True, fg="red")
    sec = trained.seconds
    click.echo(f"wrote {out} (embedding {sec['embed']:.1f}s, calibration {sec['calibrate']:.1f}s, "
               f"fit {sec['fit']:.1f}s)")


_train_options = [
    click.option("--target-agreement", "target", type=float, default=0.98, show_default=True,
                 help="Answers served locally agree with the LLM's at least this often..."),
    click.option("--confidence", type=float, default=0.95, show_default=True, help="...with this confidence."),
    click.option("--max-labels", type=int, default=200, show_default=True,
                 help="Refuse answers with more recurring labels than this."),
    click.option("--folds", type=int, default=5, show_default=True, help="Cross-fitting folds for calibration."),
    click.option("--force", is_flag=True, help="Write the model even if the data cannot support the target."),
    click.option("--json", "as_json", is_flag=True, help="Print one JSON object."),
]


def _with_train_options(fn):
    for option in reversed(_train_options):
        fn = option(fn)
    return fn


@click.group()
def offload() -> None:
    """Answer narrow, high-volume features (intents, categories) with a local classifier."""


@offload.command()
@click.option("--data", "data_path", type=click.Path(), help='JSON lines {"prompt": str, "answer": str}.')
@click.option("--config", type=click.Path(), help="Or a gateway config: train on the feature's logged traffic.")
@click.option("--feature", help="With --config: the feature whose logged answers to learn.")
@click.option("--tenant", help="With --config: only this tenant's calls.")
@click.option("--limit", type=int, default=50_000, show_default=True, help="With --config: the newest N calls.")
@click.option("--out", required=True, type=click.Path(), help="Model directory to write (whole or not at all).")
@_with_train_options
def train(data_path: str | None, config: str | None, feature: str | None, tenant: str | None, limit: int,
          out: str, target: float, confidence: float, max_labels: int, folds: int, force: bool,
          as_json: bool) -> None:
    """Train a classifier on a feature's answers and calibrate its confidence threshold."""
    settings = _settings(target, confidence, max_labels, folds)
    if bool(data_path) == bool(config):
        _fail("give either --data FILE or --config FILE --feature NAME")
    if data_path:
        pairs, source = _file_pairs(data_path), str(data_path)
    else:
        if not feature:
            _fail("--config needs --feature")
        pairs, source = _logged(config, feature, tenant, limit), f"request log of {config}, feature {feature}"
    _train_and_write(pairs, settings, out, force, source, as_json)


def _logged(config: str, feature: str, tenant: str | None, limit: int):
    from scrimp.offload.logged import pairs

    found = pairs(_log(config), feature, tenant=tenant, limit=limit)
    if not len(found):
        _fail(f"the request log of {config} has no answered calls of feature {feature!r}"
              + (f" for tenant {tenant!r}" if tenant else "") + " (is the request_log stage logging it?)")
    return found


@offload.command()
@click.option("--config", required=True, type=click.Path(), help="The gateway config serving the feature.")
@click.option("--feature", required=True, help="An offloaded feature of that config.")
@click.option("--limit", type=int, default=50_000, show_default=True, help="Learn from the newest N calls.")
@_with_train_options
def retrain(config: str, feature: str, limit: int, target: float, confidence: float, max_labels: int, folds: int,
            force: bool, as_json: bool) -> None:
    """Retrain a served feature from its newest logged answers, into its configured model directory (a running
    gateway picks the new model up, with a fresh drift guard)."""
    cfg = _config(config)
    section = _section(cfg, "offload", config)
    entry = (section.get("features") or {}).get(feature)
    if not isinstance(entry, dict) or not entry.get("model"):
        _fail(f"{config}: feature {feature!r} is not offloaded (stages.offload.features)")
    settings = _settings(target, confidence, max_labels, folds)
    pairs = _logged(config, feature, entry.get("tenant"), limit)
    _train_and_write(pairs, settings, str(entry["model"]), force, f"request log of {config}, feature {feature}",
                     as_json)


@offload.command(name="eval")
@click.option("--model", "model_dir", required=True, type=click.Path())
@click.option("--data", "data_path", required=True, type=click.Path(), help='JSON lines {"prompt", "answer"}.')
@click.option("--threshold", type=float, help="Instead of the model's calibrated threshold.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_(model_dir: str, data_path: str, threshold: float | None, as_json: bool) -> None:
    """Decide each example as the gateway would: coverage (answered locally) and agreement (equal to the LLM's)."""
    from scrimp.offload.evaluate import evaluate
    from scrimp.offload.model import OffloadModel

    try:
        model = OffloadModel.load(model_dir)
    except (OSError, ValueError, KeyError) as exc:
        _fail(f"cannot load {model_dir}: {exc}")
    pairs = _file_pairs(data_path)
    result = evaluate(model, pairs.prompts, pairs.answers, threshold=threshold, progress=_progress(as_json))
    if as_json:
        click.echo(json.dumps(result))
        return
    agreement = "-" if result["agreement"] is None else f"{result['agreement']:.2%}"
    threshold = "none (answers nothing locally)" if result["threshold"] is None else f"{result['threshold']:.4f}"
    click.echo(f"{result['examples']} examples: {result['coverage']:.1%} answered locally ({result['served']}), "
               f"agreeing with the LLM on {agreement}; accuracy if every call were answered locally "
               f"{result['accuracy']:.2%}; threshold {threshold}")
    if result["unknown_labels"]:
        click.echo(f"{result['unknown_labels']} examples have an answer the model never learned")


@offload.command()
@click.option("--config", required=True, type=click.Path(), help="Gateway config (its ledger and request log).")
@click.option("--days", type=float, default=30, show_default=True, help="Look at this many days of traffic.")
@click.option("--tenant", help="Only this tenant's calls.")
@click.option("--min-calls", type=int, default=200, show_default=True, help="Features with fewer are skipped.")
@click.option("--max-labels", type=int, default=200, show_default=True)
@click.option("--target-agreement", "target", type=float, default=0.98, show_default=True)
@click.option("--estimate/--no-estimate", default=True, show_default=True,
              help="Estimate coverage by training on each candidate's logged answers (held out, as train does).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def candidates(config: str, days: float, tenant: str | None, min_calls: int, max_labels: int, target: float,
               estimate: bool, as_json: bool) -> None:
    """Features whose answers are a small label set, with what offloading each would save at what agreement."""
    from scrimp.offload.candidates import find

    if not 0.5 <= target < 1:
        _fail("--target-agreement must be in [0.5, 1)")
    found = find(_log(config), days=days, tenant=tenant, min_calls=min_calls, max_labels=max_labels,
                 target=target, estimate=estimate, progress=_progress(as_json))
    if as_json:
        click.echo(json.dumps({"days": days, "target_agreement": target, "features": found}))
        return
    if not found:
        click.echo(f"no feature with at least {min_calls} logged calls in the last {days:g} days")
        return
    click.echo(f"{'feature':<20}{'calls':>8}{'labels':>8}  {'verdict':<44}{'spend':>11}{'saving':>11}")
    for f in found:
        if f["offloadable"]:
            cov = f.get("coverage")
            verdict = (f"{cov:.0%} local at >= {f['agreement_lower']:.1%} agreement" if cov is not None
                       else "label set (not estimated)")
        else:
            verdict = f["reason"][:44]
        saving = "-" if f.get("saving_usd") is None else f"${f['saving_usd']:.4f}"
        click.echo(f"{f['feature']:<20}{f['calls']:>8}{f['labels']:>8}  {verdict:<44}${f['spend_usd']:>10.4f}"
                   f"{saving:>11}")
    click.echo(f"(spend and saving over {days:g} days; saving = the spend of the calls a calibrated model would answer "
               "locally, less its shadow checks at the default 5%)")
