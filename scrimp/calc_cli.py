"""`scrimp calc finetune` and `scrimp calc selfhost`: break-even figures from the ledger's real mix or flags."""

from __future__ import annotations

import json
from typing import Any

import click

from scrimp.calc.gpus import GPUS
from scrimp.canonical import Usage


def _ledger_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="scrimp.yaml whose ledger gives the mix."),
        click.option("--db", default=None, help="SQLite ledger (default: the config's, or scrimp-ledger.db)."),
        click.option("--dsn", default=None, help="PostgreSQL DSN of a shared ledger."),
        click.option("--schema", default=None, help="PostgreSQL schema of the ledger."),
        click.option("--since", default="30d", show_default=True, help="The period the mix is read from."),
        click.option("--feature", default=None, help="One feature's mix instead of all traffic."),
        click.option("--no-ledger", is_flag=True, help="Flags only: read no ledger."),
        click.option("--json", "as_json", is_flag=True, help="One JSON object."),
    ]):
        f = opt(f)
    return f


def _mix(config_path: str | None, db: str | None, dsn: str | None, schema: str | None, since: str,
         feature: str | None, no_ledger: bool) -> dict[str, Any] | None:
    """The ledger's mix, or None when told not to read one or none is there (flags must then say enough)."""
    if no_ledger:
        return None
    from scrimp.audit import data
    from scrimp.audit.source import SourceError, open_ledger
    from scrimp.calc.mix import ledger_mix
    from scrimp.cli import load_config
    from scrimp.ledger.rollup import parse_since

    try:
        store = open_ledger(db, dsn, load_config(config_path), schema)
    except SourceError:
        if db or dsn or config_path:
            raise
        return None  # no ledger here: flags only
    mix = ledger_mix(data.load(store, parse_since(since)), feature)
    return mix if mix["calls_per_month"] else None


def _price(model: str) -> tuple[float, float, float]:
    """A model's list prices (USD per Mtok): input, cached input, output."""
    from scrimp import pricing
    from scrimp.audit.findings import provider_of

    try:
        p = provider_of(model)
        return (pricing.cost(model, p, Usage(input=1_000_000)), pricing.cost(model, p, Usage(cache_read=1_000_000)),
                pricing.cost(model, p, Usage(output=1_000_000)))
    except pricing.UnknownPrice as exc:
        raise click.ClickException(f"{exc}; give the prices with flags") from exc


def _fmt(v: float | None, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "never"
    return f"{v:,.{digits}f}{unit}"


@click.group()
def calc() -> None:
    """Break-even calculators fed by the ledger's real mix (or flags); formulas in docs/audit.md."""


@calc.command()
@click.option("--gpu", type=click.Choice(list(GPUS)),
              default="a100-80gb", show_default=True, help="A GPU preset (price, power).")
@click.option("--gpus", type=click.IntRange(1), default=1, show_default=True, help="GPUs in the deployment.")
@click.option("--gpu-price", type=float, default=None, help="USD per GPU (overrides the preset).")
@click.option("--gpu-watts", type=float, default=None, help="Watts per GPU (overrides the preset).")
@click.option("--throughput", type=click.FloatRange(min=0, min_open=True), required=True, help="Tokens per second the deployment generates.")
@click.option("--hours", type=float, default=None,
              help="Hours a month the GPUs run (default: the ledger's active hours a day x 30, else 176).")
@click.option("--usd-per-kwh", type=float, default=0.15, show_default=True)
@click.option("--pue", type=float, default=1.0, show_default=True, help="Power overhead (cooling) factor.")
@click.option("--ops", type=float, default=0.0, show_default=True, help="Operations cost, USD a month.")
@click.option("--utilisation", type=click.FloatRange(0.01, 1.0), default=1.0, show_default=True, help="Share of capacity in use.")
@click.option("--amortisation", type=float, default=36.0, show_default=True, help="Months to spread hardware over.")
@click.option("--api-model", default=None, help="Price the API side at this model's list prices.")
@click.option("--api-in", type=float, default=None, help="API input price, USD per Mtok.")
@click.option("--api-out", type=float, default=None, help="API output price, USD per Mtok.")
@click.option("--input-share", type=float, default=None, help="Share of tokens that are input (default: the "
              "ledger's, else 1/3 as in Pan et al.).")
@click.option("--volume", type=float, default=None, help="Tokens a month to serve (default: the ledger's).")
@_ledger_options
def selfhost(gpu: str, gpus: int, gpu_price: float | None, gpu_watts: float | None, throughput: float,
             hours: float | None, usd_per_kwh: float, pue: float, ops: float, utilisation: float,
             amortisation: float, api_model: str | None, api_in: float | None, api_out: float | None,
             input_share: float | None, volume: float | None, config_path: str | None, db: str | None,
             dsn: str | None, schema: str | None, since: str, feature: str | None, no_ledger: bool,
             as_json: bool) -> None:
    """Self-hosting an open model on GPUs against the API prices you pay: break-even months and the token
    volume a month at which owning the GPUs costs what the API does."""
    from scrimp.audit.source import SourceError
    from scrimp.calc.selfhost import SelfHost, blended_price
    from scrimp.pricing import BATCH_DISCOUNT

    try:
        mix = _mix(config_path, db, dsn, schema, since, feature, no_ledger)
    except (SourceError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    preset = GPUS[gpu]
    share = input_share if input_share is not None else (mix["input_share"] if mix else 1 / 3)
    note = ""
    if api_model or api_in is not None or api_out is not None:
        if api_model:
            pin, pcached, pout = _price(api_model)
        else:
            if api_in is None or api_out is None:
                raise click.ClickException("give both --api-in and --api-out (USD per Mtok), or --api-model")
            pin, pcached, pout = api_in, api_in, api_out
        per_token = blended_price(pin, pout, share, mix["cached_share_of_input"] if mix else 0.0, pcached)
        source = f"{api_model or 'the given prices'}, {share:.0%} input"
    elif mix:
        # what the ledger's calls really cost per token; batch-eligible spend could be had at the batch rate
        per_token = mix["usd_per_token"] * (1 - BATCH_DISCOUNT * mix["batchable_spend_share"])
        source = f"the ledger's mix ({share:.0%} input, {mix['cached_share_of_input']:.0%} of it cached)"
        if mix["batchable_spend_share"]:
            note = (f"{mix['batchable_spend_share']:.0%} of the spend is batch-eligible and is priced at the "
                    "batch rate on the API side")
    else:
        raise click.ClickException("no ledger to read the API side from: give --api-model or --api-in/--api-out")
    if hours is None:
        hours = mix["active_hours_per_day"] * 30 if mix and mix["active_hours_per_day"] else 176.0
    if volume is None and mix:
        volume = mix["tokens_per_month"]
    result = SelfHost(gpus, gpu_price if gpu_price is not None else preset.price_usd,
                      gpu_watts if gpu_watts is not None else preset.watts, throughput, per_token, hours, usd_per_kwh,
                      pue, ops, utilisation, volume, amortisation).result()
    result.update(api_price_source=source, note=note, ledger_mix=mix)
    if mix and mix["peak_tokens_per_s"] > throughput:
        result["note"] = (result["note"] + "; " if result["note"] else "") + (
            f"the busiest hour needs {mix['peak_tokens_per_s']:.0f} tokens/s, more than {throughput:.0f}")
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    r = result
    lines = [(f"self-hosting on {gpus} x {gpu} ({_fmt(r['hardware_usd'], ' USD', 0)}), {throughput:g} tokens/s, "
             f"{hours:g} h a month"),
             f"  API side: {per_token * 1e6:.4f} USD per Mtok ({source})",
             f"  capacity {r['capacity_tokens_per_month'] / 1e6:,.1f} Mtok a month; served "
             f"{r['served_tokens_per_month'] / 1e6:,.1f} Mtok" + (
                 f" ({r['unserved_tokens_per_month'] / 1e6:,.1f} Mtok more than the GPUs can make)"
                 if r["unserved_tokens_per_month"] else ""),
             (f"  API for those tokens: {_fmt(r['api_usd_per_month'])} USD a month; electricity "
             f"{_fmt(r['electricity_usd_per_month'])} + operations {_fmt(ops)}"),
             f"  break-even: {_fmt(r['break_even_months'], ' months', 1)}",
             f"  break-even volume: {_fmt((r['break_even_tokens_per_month'] or 0) / 1e6, ' Mtok a month', 1)} "
             f"(hardware over {amortisation:g} months + running cost, at the API price)"
             + ("" if r["break_even_within_capacity"] else "; more than the GPUs can serve")]
    if r["note"]:
        lines.append(f"  note: {r['note']}")
    click.echo("\n".join(lines))


@calc.command()
@click.option("--model", default=None, help="The model used now (default: the ledger's most used).")
@click.option("--target", default="gpt-4o-mini", show_default=True, help="The model to fine-tune (price preset).")
@click.option("--train-price", type=float, default=None, help="Training USD per Mtok (overrides the preset).")
@click.option("--ft-in", type=float, default=None, help="Tuned model input USD per Mtok.")
@click.option("--ft-out", type=float, default=None, help="Tuned model output USD per Mtok.")
@click.option("--examples", type=int, default=1000, show_default=True, help="Training examples.")
@click.option("--training-tokens", type=float, default=None,
              help="Tokens in the training set (default: examples x the average call's input + output).")
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option("--prompt-reduction", type=click.FloatRange(0.0, 0.99), default=0.0, show_default=True,
              help="Share of the prompt the tuned model no longer needs (instructions, examples).")
@click.option("--eval-cost", type=float, default=0.0, show_default=True, help="One-time evaluation cost, USD.")
@click.option("--hosting", type=float, default=0.0, show_default=True, help="Hosting fee of the tuned model, USD a month.")
@click.option("--input-tokens", type=float, default=None, help="Uncached input tokens per call.")
@click.option("--output-tokens", type=float, default=None, help="Output tokens per call.")
@click.option("--calls-per-month", type=float, default=None, help="Calls a month.")
@_ledger_options
def finetune(model: str | None, target: str, train_price: float | None, ft_in: float | None, ft_out: float | None,
             examples: int, training_tokens: float | None, epochs: int, prompt_reduction: float, eval_cost: float,
             hosting: float, input_tokens: float | None, output_tokens: float | None,
             calls_per_month: float | None, config_path: str | None, db: str | None, dsn: str | None,
             schema: str | None, since: str, feature: str | None, no_ledger: bool, as_json: bool) -> None:
    """A fine-tuned smaller model against the model you use now: one-time training cost against the saving per
    call, as break-even calls and months."""
    from scrimp.audit.source import SourceError
    from scrimp.calc.finetune import TUNED, FineTune

    try:
        mix = _mix(config_path, db, dsn, schema, since, feature, no_ledger)
    except (SourceError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    model = model or (next(iter(mix["models"]), None) if mix else None)
    if model is None:
        raise click.ClickException("no ledger to read the current model from: give --model")
    preset = TUNED.get(target)
    if preset is None and None in (train_price, ft_in, ft_out):
        raise click.ClickException(f"no price preset for {target!r} (known: {', '.join(TUNED)}): give "
                                   "--train-price, --ft-in and --ft-out")
    missing = [n for n, v in (("--input-tokens", input_tokens), ("--output-tokens", output_tokens),
                              ("--calls-per-month", calls_per_month)) if v is None]
    if missing and not mix:
        raise click.ClickException(f"no ledger to read the mix from: give {', '.join(missing)}")
    inp = input_tokens if input_tokens is not None else mix["avg_input_tokens"]  # type: ignore[index]
    cached = 0.0 if input_tokens is not None else mix["avg_cached_tokens"]  # type: ignore[index]
    out = output_tokens if output_tokens is not None else mix["avg_output_tokens"]  # type: ignore[index]
    calls = calls_per_month if calls_per_month is not None else mix["paid_calls_per_month"]  # type: ignore[index]
    pin, pcached, pout = _price(model)
    result = FineTune(inp, out, calls, pin, pout,
                      ft_in if ft_in is not None else preset.in_usd_per_mtok,  # type: ignore[union-attr]
                      ft_out if ft_out is not None else preset.out_usd_per_mtok,  # type: ignore[union-attr]
                      training_tokens if training_tokens is not None else examples * (inp + cached + out),
                      train_price if train_price is not None else preset.train_usd_per_mtok,  # type: ignore[union-attr]
                      epochs, cached, pcached, prompt_reduction, eval_cost, hosting).result()
    result.update(model=model, target=target, ledger_mix=mix)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    r = result
    click.echo("\n".join([
        f"fine-tuning {target} to replace {model}" + (f" on '{feature}'" if feature else ""),
        f"  per call: {inp:,.0f} input ({cached:,.0f} cached) + {out:,.0f} output tokens, {calls:,.0f} calls a month",
        f"  training: {r['inputs']['training_tokens']:,.0f} tokens x {epochs} epochs = {_fmt(r['training_usd'])} USD",
        (f"  cost a call: {r['usd_per_call_now']:.6f} USD now, {r['usd_per_call_after']:.6f} USD tuned "
        f"(saves {r['saving_usd_per_call']:.6f})"),
        (f"  break-even: {_fmt(r['break_even_calls'], ' calls', 0)}, {_fmt(r['break_even_months'], ' months', 1)} "
        f"at {calls:,.0f} calls a month"),
    ]))
