"""Fine-tuning (or moving to) a smaller model against the model a feature uses now:

    training        C_train = training_tokens * epochs * train_usd_per_mtok / 1e6 + eval_usd   (one-time)
    per call now    c_now   = in * p_in_now + cached * p_cached_now + out * p_out_now
    per call after  c_ft    = in' * p_in_ft + out * p_out_ft,   in' = in * (1 - prompt_reduction)
                    (a tuned model needs fewer instructions and examples in its prompt: prompt_reduction)
    saving a call   s       = c_now - c_ft
    break-even      N*      = C_train / s  calls;   months = N* / calls_per_month   (never when s <= 0)
    hosting         a fine-tune with a monthly fee (hosted endpoints) adds fee / s calls a month to N*."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class FineTune:
    input_tokens_per_call: float  # uncached input
    output_tokens_per_call: float
    calls_per_month: float
    now_in_usd_per_mtok: float
    now_out_usd_per_mtok: float
    ft_in_usd_per_mtok: float
    ft_out_usd_per_mtok: float
    training_tokens: float  # tokens in the training set (one epoch)
    train_usd_per_mtok: float
    epochs: int = 3
    cached_tokens_per_call: float = 0.0
    now_cached_usd_per_mtok: float | None = None
    prompt_reduction: float = 0.0  # share of the input the tuned model no longer needs
    eval_usd: float = 0.0  # one-time evaluation / labelling cost
    hosting_usd_per_month: float = 0.0

    def result(self) -> dict[str, Any]:
        training = self.training_tokens * self.epochs * self.train_usd_per_mtok / 1e6 + self.eval_usd
        cached_price = self.now_cached_usd_per_mtok if self.now_cached_usd_per_mtok is not None \
            else self.now_in_usd_per_mtok
        now = (self.input_tokens_per_call * self.now_in_usd_per_mtok + self.cached_tokens_per_call * cached_price
               + self.output_tokens_per_call * self.now_out_usd_per_mtok) / 1e6
        tuned_input = (self.input_tokens_per_call + self.cached_tokens_per_call) * (1 - self.prompt_reduction)
        after = (tuned_input * self.ft_in_usd_per_mtok + self.output_tokens_per_call * self.ft_out_usd_per_mtok) / 1e6
        saving = now - after
        monthly = saving * self.calls_per_month - self.hosting_usd_per_month
        calls = training / saving if saving > 0 else None
        months = training / monthly if monthly > 0 else None
        return {"inputs": asdict(self), "training_usd": training, "usd_per_call_now": now,
                "usd_per_call_after": after, "saving_usd_per_call": saving, "saving_usd_per_month": monthly,
                "break_even_calls": calls, "break_even_months": months}


@dataclass(frozen=True)
class TunedPrices:
    train_usd_per_mtok: float
    in_usd_per_mtok: float
    out_usd_per_mtok: float


# OpenAI's list prices for fine-tuning and for calling the tuned model (USD per million tokens); they change:
# pass --train-price / --ft-in / --ft-out for current ones or for another provider.
TUNED = {
    "gpt-4o-mini": TunedPrices(3.00, 0.30, 1.20),
    "gpt-4o": TunedPrices(25.00, 3.75, 15.00),
    "gpt-4.1": TunedPrices(25.00, 3.00, 12.00),
    "gpt-4.1-mini": TunedPrices(5.00, 0.80, 3.20),
    "gpt-4.1-nano": TunedPrices(1.50, 0.20, 0.80),
}
