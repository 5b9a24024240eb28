"""The calculators: Pan et al.'s break-even table (arXiv 2509.18101, Table IV) reproduced within 10%, the
fine-tune formula by hand, and both fed by a ledger's real mix."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from scrimp.calc.selfhost import SelfHost, blended_price
from scrimp.cli import main

# Table I: API prices (USD per Mtok, input / output)
APIS = {"GPT-5": (1.25, 10.0), "Claude-4 Opus": (15.0, 75.0), "Claude-4 Sonnet": (3.0, 15.0),
        "Grok-4": (3.0, 15.0), "Gemini 2.5 Pro": (1.25, 10.0)}
# Table III: deployment (GPUs, GPU type) and throughput (tokens/s); Table II: A100 $15,000 400 W, RTX 5090
# $2,000 575 W
DEPLOYMENTS = {"Kimi-K2": (16, "a100-80gb", 800), "GLM-4.5": (6, "a100-80gb", 400),
               "Qwen3-235B": (4, "a100-80gb", 400), "gpt-oss-120B": (2, "a100-80gb", 220),
               "GLM-4.5-Air": (2, "a100-80gb", 200), "Llama-3.3-70B": (1, "a100-80gb", 190),
               "EXAONE 4.0 32B": (1, "rtx-5090", 200), "Qwen3-30B": (1, "rtx-5090", 180),
               "Magistral Small": (1, "rtx-5090", 150)}
# Table IV: break-even months, columns in the order of APIS
TABLE_IV = {"Kimi-K2": [69.3, 8.7, 44.0, 44.0, 63.1], "GLM-4.5": [51.5, 6.5, 32.8, 32.8, 47.0],
            "Qwen3-235B": [34.0, 4.3, 21.8, 21.8, 31.1], "gpt-oss-120B": [30.9, 3.9, 19.8, 19.8, 28.2],
            "GLM-4.5-Air": [34.0, 4.3, 21.8, 21.8, 31.1], "Llama-3.3-70B": [17.8, 2.3, 11.4, 11.4, 16.2],
            "EXAONE 4.0 32B": [2.26, 0.3, 1.4, 1.4, 2.06], "Qwen3-30B": [2.5, 0.3, 1.6, 1.6, 2.3],
            "Magistral Small": [3.0, 0.4, 1.9, 1.9, 2.76]}
GPU = {"a100-80gb": (15_000, 400), "rtx-5090": (2_000, 575)}


@pytest.mark.parametrize("model", list(TABLE_IV))
def test_pan_et_al_break_even_table_is_reproduced_within_10_percent(model):
    gpus, kind, throughput = DEPLOYMENTS[model]
    price, watts = GPU[kind]
    months = {}
    for (api, (pin, pout)), published in zip(APIS.items(), TABLE_IV[model], strict=True):
        months[api] = SelfHost(gpus, price, watts, throughput, blended_price(pin, pout)).result()["break_even_months"]
        if api == "Gemini 2.5 Pro":
            continue
        assert abs(months[api] - published) <= 0.10 * published, (model, api, months[api], published)
    # The paper's Gemini column is 9-11% below its GPT-5 column although its Table I gives both the same prices
    # ($1.25 / $10): the formulas give the same figure for both (docs/audit.md says so).
    assert months["Gemini 2.5 Pro"] == months["GPT-5"]


def test_the_command_gives_the_same_figure_and_the_formula_by_hand():
    result = CliRunner().invoke(main, ["calc", "selfhost", "--no-ledger", "--json", "--gpu", "a100-80gb",
                                       "--gpus", "4", "--throughput", "400", "--api-in", "1.25", "--api-out", "10"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.output)
    capacity = 400 * 3600 * 176  # tokens a month at 8 h x 22 days
    api = capacity / 3 * 1.25e-6 + capacity * 2 / 3 * 10e-6
    electricity = 4 * 0.4 * 176 * 0.15
    assert r["capacity_tokens_per_month"] == capacity
    assert r["api_usd_per_month"] == pytest.approx(api) and r["electricity_usd_per_month"] == pytest.approx(electricity)
    assert r["break_even_months"] == pytest.approx(60_000 / (api - electricity))  # Qwen3-235B vs GPT-5: 34.0
    assert r["break_even_tokens_per_month"] == pytest.approx((60_000 / 36 + electricity) / (api / capacity))


def test_finetune_break_even_by_hand():
    # gpt-4o ($2.50 / $10 per Mtok) replaced by a tuned gpt-4o-mini ($0.30 / $1.20, training $3 per Mtok)
    args = ["calc", "finetune", "--no-ledger", "--json", "--model", "gpt-4o", "--target", "gpt-4o-mini",
            "--input-tokens", "1000", "--output-tokens", "200", "--calls-per-month", "100000",
            "--examples", "2000", "--epochs", "3", "--prompt-reduction", "0.5"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    r = json.loads(result.output)
    training = 2000 * 1200 * 3 * 3.00e-6
    now = 1000 * 2.50e-6 + 200 * 10e-6
    after = 500 * 0.30e-6 + 200 * 1.20e-6
    assert r["training_usd"] == pytest.approx(training)
    assert r["usd_per_call_now"] == pytest.approx(now) and r["usd_per_call_after"] == pytest.approx(after)
    assert r["break_even_calls"] == pytest.approx(training / (now - after))
    assert r["break_even_months"] == pytest.approx(training / ((now - after) * 100_000))


def test_calculators_read_the_ledger_mix(week):
    args, made = week
    faq = made["features"]["faq"]
    result = CliRunner().invoke(main, ["calc", "finetune", "--json", "--feature", "faq", "--since", "8d", *args])
    assert result.exit_code == 0, result.output
    r = json.loads(result.output)
    assert r["model"] == "gpt-4o"
    assert r["inputs"]["input_tokens_per_call"] == pytest.approx(faq["input"] / faq["calls"])
    assert r["inputs"]["output_tokens_per_call"] == pytest.approx(faq["output"] / faq["calls"])
    days = r["ledger_mix"]["days"]
    assert 6 < days < 8 and r["inputs"]["calls_per_month"] == pytest.approx(faq["calls"] * 30 / days)

    result = CliRunner().invoke(main, ["calc", "selfhost", "--json", "--since", "8d", "--gpu", "rtx-5090",
                                       "--throughput", "150", *args])
    assert result.exit_code == 0, result.output
    r = json.loads(result.output)
    mix = r["ledger_mix"]
    tokens = sum(f["input"] + f["output"] for f in made["features"].values())
    assert mix["tokens_per_month"] == pytest.approx(tokens * 30 / mix["days"])
    assert 0 < mix["batchable_spend_share"] < 1  # the nightly job
    assert r["served_tokens_per_month"] == pytest.approx(mix["tokens_per_month"])
    assert "batch rate" in r["note"]
