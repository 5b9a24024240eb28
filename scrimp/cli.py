"""The `scrimp` command. Each sub-command group lives in its own module and registers here."""

from __future__ import annotations

from typing import Any

import click


@click.group()
@click.version_option(package_name="scrimp")
def main() -> None:
    """scrimp: cut LLM inference cost without cutting quality."""


def load_config(config_path: str | None, *, models_required: bool = False) -> Any:
    """A gateway config file for a command that reads one (None without a path); refused with its line."""
    if not config_path:
        return None
    from scrimp.gateway.config import ConfigError, load

    try:
        return load(config_path, models_required=models_required)
    except ConfigError as exc:
        raise click.ClickException(f"config refused: {exc}") from exc


def _register() -> None:
    # Imported lazily-by-name so one broken optional part does not take the whole CLI down.
    import importlib

    for module, attr in [
        ("scrimp.sim.cli", "sim"),
        ("scrimp.serve_cli", "serve"),
        ("scrimp.usage_cli", "usage"),
        ("scrimp.demo.cli", "demo"),
        ("scrimp.cache_cli", "cache"),
        ("scrimp.router_cli", "router"),
        ("scrimp.keys_cli", "keys"),
        ("scrimp.budgets_cli", "budgets"),
        ("scrimp.batch_cli", "batch"),
        ("scrimp.audit_cli", "audit"),
        ("scrimp.simulate_cli", "simulate"),
        ("scrimp.calc_cli", "calc"),
        ("scrimp.trim_cli", "trim"),
        ("scrimp.offload_cli", "offload"),
    ]:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("scrimp"):
                continue
            raise
        main.add_command(getattr(mod, attr))


_register()
