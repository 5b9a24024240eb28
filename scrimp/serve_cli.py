"""`scrimp serve`: run the gateway."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click


@contextlib.contextmanager
def _simulator() -> Iterator[str]:
    from scrimp.sim.testing import run_simulator

    with run_simulator() as (url, _app):
        yield url


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="scrimp.yaml")
@click.option("--host", default=None, help="Default 127.0.0.1 (or the config's host).")
@click.option("--port", default=None, type=int, help="Default 8080 (or the config's port).")
@click.option("--simulate", is_flag=True, help="Use the built-in provider simulator as every model's upstream.")
def serve(config_path: str | None, host: str | None, port: int | None, simulate: bool) -> None:
    """Start the gateway. Point an OpenAI or Anthropic client's base_url at it."""
    import uvicorn

    from scrimp.gateway.app import create_app
    from scrimp.gateway.config import ConfigError, load, simulated, with_stages

    if not simulate and not config_path:
        raise click.UsageError("give --config FILE, or --simulate to try scrimp without API keys")
    with contextlib.ExitStack() as stack:
        try:
            # the file is read (and refused) before the simulator starts
            file_config = load(config_path, models_required=not simulate) if config_path else None
            if simulate:
                config = simulated(stack.enter_context(_simulator()))
                if file_config is not None:
                    config = with_stages(config, file_config)
            else:
                assert file_config is not None
                config = file_config
            app = create_app(config)  # builds every stage: a bad section is refused here, before the banner
        except ConfigError as exc:
            raise click.ClickException(f"config refused: {exc}") from exc
        host = host or config.host
        port = port or config.port
        click.echo(f"scrimp gateway on http://{host}:{port}  ({len(config.models)} models"
                   f"{', simulated upstream' if simulate else ''})")
        click.echo(f"  OpenAI clients:    base_url=http://{host}:{port}/v1")
        click.echo(f"  Anthropic clients: base_url=http://{host}:{port}")
        uvicorn.run(app, host=host, port=port, log_level="warning")
