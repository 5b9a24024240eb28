"""A lever shipped only with the tests, registered through the `scrimp.stages` entry points like a third-party
package's: it answers bare greetings itself and declares what each one saved. It is one module and its options;
nothing in scrimp knows its name."""

from __future__ import annotations

from dataclasses import dataclass, field

from scrimp.canonical import ChatResponse
from scrimp.pipeline import Call, Next, Reply
from scrimp.stage import Stage, StageContext


@dataclass
class GreeterOptions:
    usd_per_call: float  # what a provider call for a greeting is taken to cost
    greetings: list[str] = field(default_factory=lambda: ["hi", "hello"])
    reply: str = "Hello! How can I help?"


class GreeterStage(Stage):
    name = "greeter"
    Options = GreeterOptions

    def __init__(self, options: GreeterOptions) -> None:
        self.options = options
        self.answered = 0

    @classmethod
    def build(cls, options: GreeterOptions, ctx: StageContext) -> GreeterStage:
        return cls(options)

    async def handle(self, call: Call, next: Next) -> Reply:
        if call.request.final_user_text().strip().lower() not in self.options.greetings:
            return await next(call)
        self.answered += 1
        call.save(self.name, "a provider call per greeting (configured)", self.options.usd_per_call)
        resp = ChatResponse(id=call.request_id, model=call.requested_model,
                            content=[{"type": "text", "text": self.options.reply}])
        return Reply(response=resp, served_model=call.requested_model, served_provider="greeter", billed=False)
