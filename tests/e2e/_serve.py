"""Start a real tradeguard TLS server for end-to-end tests and benchmarks.

Independent of the `tradeguard serve` CLI on purpose: it migrates the database, then calls
tradeguard.web.server.serve with settings given on the command line. Run it by path:

    python tests/e2e/_serve.py --data-dir /tmp/x --port 8443
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from tradeguard.config import Settings
from tradeguard.db.engine import create_engine
from tradeguard.db.migrate import upgrade
from tradeguard.web.server import serve


async def migrate(settings: Settings) -> None:
    engine = create_engine(settings.main_database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tls-min-version", default="1.2", choices=("1.2", "1.3"))
    parser.add_argument("--max-body-bytes", type=int, default=1024 * 1024)
    parser.add_argument("--handshake-timeout", type=float, default=10.0)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--max-connections-per-client", type=int, default=64)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    settings = Settings(
        _env_file=None,
        data_dir=args.data_dir,
        host=args.host,
        port=args.port,
        tls_min_version=args.tls_min_version,
        max_body_bytes=args.max_body_bytes,
        tls_handshake_timeout_seconds=args.handshake_timeout,
        header_read_timeout_seconds=args.header_timeout,
        max_connections_per_client=args.max_connections_per_client,
        log_level=args.log_level,
        enable_api_docs=False,
    )
    asyncio.run(migrate(settings))
    serve(settings)


if __name__ == "__main__":
    main()
