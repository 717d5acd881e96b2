"""The list fetched from a URL prefix (httpx): over loopback http in tests, https
otherwise; a missing file or a server error loads nothing."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.integration.kyc.sanctions.conftest import sample_dir
from tradeguard.kyc.sanctions.common import ListRefused, ListUnavailable
from tradeguard.kyc.sanctions.lists import parse_sdn
from tradeguard.kyc.sanctions.source import read_files


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        del format, args


def _serve(directory: Path) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    (root / "ofac").mkdir(parents=True)
    for f in sample_dir().iterdir():
        (root / "ofac" / f.name).write_bytes(f.read_bytes())
    yield from _serve(root)


async def test_the_list_is_read_from_a_loopback_url(served: str) -> None:
    files = await read_files(f"{served}/ofac", max_bytes=1 << 20, timeout_seconds=5)
    assert len(parse_sdn(files).entries) == 17


async def test_a_missing_file_at_the_url_loads_nothing(served: str) -> None:
    with pytest.raises(ListUnavailable, match="HTTP 404"):
        await read_files(f"{served}/elsewhere", max_bytes=1 << 20, timeout_seconds=5)


async def test_an_oversized_file_is_refused(served: str) -> None:
    with pytest.raises(ListRefused, match="larger than"):
        await read_files(f"{served}/ofac", max_bytes=100, timeout_seconds=5)


@pytest.mark.parametrize(
    "location", ["http://example.com/ofac/", "ftp://example.com/ofac/", "http://10.0.0.1/x/"]
)
async def test_plain_http_is_refused_beyond_this_machine(location: str) -> None:
    with pytest.raises((ListRefused, ListUnavailable)):
        await read_files(location, max_bytes=1 << 20, timeout_seconds=5)


async def test_a_missing_directory_says_what_it_needs(tmp_path: Path) -> None:
    with pytest.raises(ListUnavailable, match=r"sdn\.csv"):
        await read_files(str(tmp_path / "nowhere"), max_bytes=1 << 20, timeout_seconds=5)
