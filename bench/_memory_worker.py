"""The worker process measured by `worker_memory.py`: a real Worker with a no-op provider, driven over stdin.

Commands, one per line: `stats` prints a JSON line (RSS, Python object count); `stop` stops the worker and exits.
End of input stops it too. Not meant to be run by hand.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

import psutil
from _common import hard_limit, quiet_logs
from sqlalchemy import Select, select

from membersync.config import Settings
from membersync.models import Member, Tenant
from membersync.runtime import Runtime
from membersync.testing import FakeSyncProvider
from membersync.worker import Worker

PROVIDER = "bench_noop"
TIME_BOUND_SECONDS = 900.0


def all_members(tenant: Tenant) -> Select[Member]:
    return select(Member)


def register_noop(runtime: Runtime) -> None:
    runtime.providers.register(FakeSyncProvider(PROVIDER, members_query=all_members))


def stats() -> dict[str, int]:
    return {"rss": psutil.Process().memory_info().rss, "objects": len(gc.get_objects())}


def serve(worker: Worker) -> None:
    print(json.dumps({"ready": True} | stats()), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "stop":
            break
        if command == "stats":
            print(json.dumps(stats()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--queue-namespace", default="")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    quiet_logs()
    settings = Settings(
        _env_file=None,
        database_url=args.database_url,
        data_dir=args.data_dir,
        redis_url=args.redis_url,
        queue_namespace=args.queue_namespace,
    )
    worker = Worker(settings, threads=args.threads, periodic=False, setup=register_noop)
    with hard_limit(TIME_BOUND_SECONDS):
        worker.start()
        try:
            serve(worker)
        finally:
            worker.stop()
    print(json.dumps({"stopped": True}), flush=True)


if __name__ == "__main__":
    main()
