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
@click.option("--insecure", is_flag=True, help="Serve on a non-loopback host without auth.required (an open "
              "gateway: anyone who reaches it spends the configured provider keys).")
def serve(config_path: str | None, host: str | None, port: int | None, simulate: bool, insecure: bool) -> None:
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
        auth_required = config.auth is not None and config.auth.required
        _refuse_open(host, auth_required, insecure)
        click.echo(f"scrimp gateway on http://{host}:{port}  ({len(config.models)} models"
                   f"{', simulated upstream' if simulate else ''})")
        click.echo(f"  OpenAI clients:    base_url=http://{host}:{port}/v1")
        click.echo(f"  Anthropic clients: base_url=http://{host}:{port}")
        if auth_required:
            click.echo("  auth: every request needs a gateway key (docs/auth.md)")
        elif not is_loopback(host):
            click.echo(f"  warning: an open gateway on {host} (--insecure): no key is asked of anyone")
        uvicorn.run(app, host=host, port=port, log_level="warning")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: only this machine can connect."""
    import ipaddress

    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def _refuse_open(host: str, auth_required: bool, insecure: bool) -> None:
    if is_loopback(host) or auth_required or insecure:
        return
    raise click.ClickException(
        f"refusing to serve on {host} without auth: anyone who can reach it could spend the configured provider "
        "keys and read every tenant's cached answers. Set `auth: {required: true}` in the config and give callers "
        "gateway keys (scrimp keys create; docs/auth.md), serve on 127.0.0.1, or pass --insecure to serve an open "
        "gateway anyway (e.g. behind a proxy that authenticates).")

