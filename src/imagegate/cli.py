"""The ``imagegate`` command: a thin typer app, one function per command."""

from __future__ import annotations

import signal
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from imagegate.errors import ImageGateError
from imagegate.logs import configure_logging
from imagegate.settings import Settings, load_settings

if TYPE_CHECKING:
    from imagegate.sdk import Client, Event, Job

app = typer.Typer(help="ImageGate: durable image generation as a service.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")
keys_app = typer.Typer(help="Tenants' API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console(stderr=True)


def _settings(**overrides: Any) -> Settings:
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    configure_logging(settings)
    return settings


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind.")] = None,
    workers: Annotated[int | None, typer.Option(help="In-process workers; 0 = API only.")] = None,
) -> None:
    """Run the HTTP API, with in-process workers (embedded mode)."""
    from imagegate.api.server import serve as run_server

    settings = _settings(host=host, port=port, workers=workers)
    run_server(settings, settings.workers, settings.host, settings.port)


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Worker threads in this process.")] = 1,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve /metrics, /healthz and /readyz on this port (0: any free)."),
    ] = None,
) -> None:
    """Run workers alone against the shared database (scale-out mode)."""
    from imagegate.runtime import Runtime

    settings = _settings(worker_metrics_port=metrics_port)
    if settings.public_url is None:
        console.print(
            "[yellow]note:[/yellow] IMAGEGATE_PUBLIC_URL is not set, so webhook payloads from "
            f"this worker link images at http://{settings.host}:{settings.port}."
        )
    runtime = Runtime(settings)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if settings.worker_metrics_port is not None:  # before the model loads: /readyz says so
        bound = runtime.start_probes(settings.worker_metrics_host, settings.worker_metrics_port)
        console.print(f"probes and metrics on http://{settings.worker_metrics_host}:{bound}")
    try:
        runtime.start_workers(concurrency)
    except ImageGateError as exc:  # e.g. the model is not available: say so plainly
        console.print(f"[red]error:[/red] {exc.message}")
        runtime.close()
        raise typer.Exit(1) from exc
    runtime.start_sweeper()
    console.print(f"imagegate worker: {concurrency} worker(s) running; SIGTERM drains.")
    stop.wait()
    console.print("draining...")
    runtime.close()


@app.command()
def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what is past its time; delete nothing.")
    ] = False,
) -> None:
    """Delete what is past its retention now: ended jobs and the images only they use,
    expired cache entries and idempotency keys, old events, previews and withheld images."""
    from rich.table import Table

    from imagegate.runtime import Runtime

    runtime = Runtime(_settings())
    try:
        swept = runtime.sweeper().sweep_all(dry_run=dry_run)
    finally:
        runtime.close()
    table = Table("what", "would delete" if dry_run else "deleted", title="imagegate gc")
    for name, count in swept.as_dict().items():
        table.add_row(name.replace("_", " "), str(count))
    Console().print(table)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write.")] = Path(
        "out.png"
    ),
    style: Annotated[str | None, typer.Option(help="A style name.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed; random when omitted.")] = None,
    width: Annotated[int | None, typer.Option(help="Width in pixels.")] = None,
    height: Annotated[int | None, typer.Option(help="Height in pixels.")] = None,
    steps: Annotated[int | None, typer.Option(help="Generation steps.")] = None,
    url: Annotated[str | None, typer.Option(help="A running server; embedded if omitted.")] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="IMAGEGATE_API_KEY", help="The server's API key, if it needs one."),
    ] = None,
) -> None:
    """Generate one image and write it as PNG, showing progress."""
    from imagegate import sdk
    from imagegate.api.server import background_server

    fields = {"style": style, "seed": seed, "width": width, "height": height, "steps": steps}
    with ExitStack() as stack:
        quiet = _settings(log_level="warning")
        base = url or stack.enter_context(background_server(quiet, workers=1))
        client = stack.enter_context(sdk.Client(base, api_key=api_key))
        try:
            job = _follow(client, prompt, {k: v for k, v in fields.items() if v is not None})
            output.write_bytes(client.images.download(job.images[0]))
        except sdk.ImageGateError as exc:
            console.print(f"[red]error:[/red] {exc.detail}")
            raise typer.Exit(1) from exc
    meta = job.metadata
    seed_ms = f"seed {meta.seed}, {meta.generation_time_ms} ms" if meta else "no metadata"
    console.print(f"wrote {output} ({seed_ms})")


def _follow(client: Client, prompt: str, fields: dict[str, Any]) -> Job:
    """``client.generate``, with a progress bar fed by the job's events."""
    from imagegate.sdk import ProgressEvent

    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("queued", total=fields.get("steps"))

        def show(event: Event) -> None:
            if isinstance(event, ProgressEvent):
                progress.update(
                    task, description="generating", completed=event.step, total=event.total
                )
            else:
                progress.update(task, description=event.type)

        return client.generate(prompt, on_event=show, **fields)


@app.command("webhook-secret")
def webhook_secret() -> None:
    """Print the whsec_ secret that webhook receivers verify signatures with."""
    typer.echo(_settings(log_level="warning").webhook_secrets[0])


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Create or migrate the schema to the latest version."""
    from imagegate.jobs.database import create_db_engine, upgrade

    engine = create_db_engine(_settings(auto_migrate=False))
    upgrade(engine, revision)
    console.print(f"database at {revision}")


def _key_store() -> Any:
    from imagegate.jobs.database import create_db_engine, upgrade
    from imagegate.tenancy.keys import KeyStore

    settings = _settings(log_level="warning")
    engine = create_db_engine(settings)
    if settings.auto_migrate:
        upgrade(engine)
    return KeyStore(engine)


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant (created if new).")],
    name: Annotated[str, typer.Option(help="What the key is for.")],
    scopes: Annotated[
        str, typer.Option(help="Comma separated: jobs:write,jobs:read,usage:read,admin.")
    ] = "jobs:write,jobs:read,usage:read",
    as_json: Annotated[bool, typer.Option("--json", help="Print the key as JSON.")] = False,
) -> None:
    """Create an API key and print it. It is shown this once: only its hash is kept."""
    import json

    from imagegate.api.tenancy_schemas import KeyOut
    from imagegate.tenancy.principal import Scope

    try:
        chosen = [Scope(part.strip()) for part in scopes.split(",") if part.strip()]
        record, secret = _key_store().create_key(tenant, name, chosen)
    except (ValueError, ImageGateError) as exc:
        console.print(f"[red]error:[/red] {getattr(exc, 'message', exc)}")
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(KeyOut.of(record).model_dump(mode="json") | {"key": secret}))
        return
    typer.echo(secret)
    console.print(f"key {record.id} for tenant {record.tenant}: keep it now, it is not shown again")


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="One tenant's keys.")] = None,
) -> None:
    """List keys (prefixes only, never secrets)."""
    for key in _key_store().list_keys(tenant):
        state = "revoked" if key.revoked_at else "active"
        scopes = ",".join(sorted(key.scopes))
        typer.echo(f"{key.id}  {key.prefix}…  {key.tenant}  {key.name}  {scopes}  {state}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")]) -> None:
    """Revoke a key: refused everywhere within a second or two."""
    try:
        key = _key_store().revoke(key_id)
    except ImageGateError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    console.print(f"revoked {key.id} ({key.name}, tenant {key.tenant})")
