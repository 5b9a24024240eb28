"""`scrimp sim serve`: run the provider simulator."""

from __future__ import annotations

import click


@click.group()
def sim() -> None:
    """The local provider simulator (OpenAI and Anthropic wire APIs)."""


@sim.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8100, show_default=True, type=int)
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML config file.")
@click.option("--batch-delay", type=float, help="Seconds a batch takes to complete (overrides the config).")
def serve(host: str, port: int, config_path: str | None, batch_delay: float | None) -> None:
    """Serve the simulator until interrupted."""
    import uvicorn

    from scrimp.sim.app import create_app
    from scrimp.sim.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except (ConfigError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    if batch_delay is not None:
        config.batch_delay_s = batch_delay
    models = ", ".join(m.name for m in config.models.values())
    click.echo(f"scrimp simulator on http://{host}:{port}  models: {models}")
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")
