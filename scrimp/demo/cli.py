"""`scrimp demo`: the first command a newcomer runs."""

from __future__ import annotations

import click


@click.command()
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
def demo(no_progress: bool) -> None:
    """Replay a realistic workload straight to the simulated providers and through scrimp; compare."""
    import logging

    from scrimp.demo.runner import run

    logging.getLogger("scrimp").setLevel(logging.ERROR)
    run(progress=not no_progress, out=click.echo)
