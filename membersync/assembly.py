"""Assemble a working runtime: build it, install the job handlers and claim builders, load plug-ins."""

from __future__ import annotations

from membersync.clock import Clock
from membersync.config import Settings
from membersync.freshness import tasks as freshness_tasks
from membersync.http import HttpClient
from membersync.jobs.queue import JobQueue
from membersync.login.claims import entitlement_claims
from membersync.provider.plugins import LoadedPlugin, load_plugins
from membersync.push import tasks as push_tasks
from membersync.runtime import Runtime, build_runtime


def install_defaults(runtime: Runtime) -> None:
    freshness_tasks.install(runtime)
    push_tasks.install(runtime)
    if entitlement_claims not in runtime.claim_builders:
        runtime.claim_builders.append(entitlement_claims)


def assemble(
    settings: Settings, *, clock: Clock | None = None, queue: JobQueue | None = None, http: HttpClient | None = None
) -> tuple[Runtime, list[LoadedPlugin]]:
    """The runtime for the API, the worker and the CLI, with every plug-in loaded."""
    runtime = build_runtime(settings, clock=clock, queue=queue, http=http)
    install_defaults(runtime)
    plugins = load_plugins(runtime.providers, settings.plugin_paths)
    return runtime, plugins
