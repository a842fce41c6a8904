"""`python -m aecore.runs list [--store DIR|URL] [--state STATE]`: the runs a store keeps, one JSON object per line
(newest first), with at least id, name, state, epochs_done, epochs and created; a run whose server is gone shows
as "interrupted". Without --store: the store the app uses (AELAB_STORE, else the cache folder's). Exit status 2
with one line on stderr when the store cannot be read."""
from __future__ import annotations

import json
import os
import sys

from aecore.argv import OneLineParser, positive_int
from aecore.runs.settings import RegistryConfig
from aecore.runs.store import Store, StoreError


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m aecore.runs", description="The run store of AE Lab.")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="one JSON line per stored run, newest first")
    listing.add_argument("--store", help="a store folder or a postgresql:// URL (default: AELAB_STORE, else the "
                                         "cache folder's store)")
    listing.add_argument("--state", help="only runs in this state (finished, interrupted, running, ...)")
    listing.add_argument("--limit", type=positive_int, help="at most this many runs")
    args = parser.parse_args(argv)
    where = args.store or RegistryConfig.from_settings(os.environ).store
    if not where:
        print("python -m aecore.runs: error: AELAB_STORE is none: there is no store to list", file=sys.stderr)
        return 2
    if "://" not in where and not os.path.exists(os.path.join(where, "runs.sqlite")):
        print(f"python -m aecore.runs: error: no store at {where} (no runs.sqlite there)", file=sys.stderr)
        return 2
    try:
        store = Store(where)
        runs = store.runs(args.limit)
    except StoreError as e:
        print(f"python -m aecore.runs: error: {e}", file=sys.stderr)
        return 2
    for run in runs:
        if args.state is None or run.state == args.state:
            print(json.dumps(run.summary()))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
