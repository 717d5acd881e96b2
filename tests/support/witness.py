"""A real C2SP tlog-witness (c2sp.org/tlog-witness, `add-checkpoint`) on a loopback HTTP
server in a thread, for witness publishing tests. It checks what a witness must (the log's
signature with the independent verifier, the old size, the consistency proof) and answers
with the protocol's status codes: 200 with a cosignature line, 409 with `text/x.tlog.size`,
422, 403, 404, 400.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support import rfc9162


@dataclass
class WitnessState:
    origin: str
    vkeys: list[str]
    size: int = 0
    root: bytes = b""
    requests: list[str] = field(default_factory=list)
    cosigned: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    key: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)


Answer = tuple[int, str, str]  # status, body, content type


def add_checkpoint(state: WitnessState, body: str) -> Answer:
    """The witness's checks, in the order the spec lists them."""
    head, _, note = body.partition("\n\n")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        return 400, "", "text/plain"
    old = int(lines[0][4:])
    proof = [base64.b64decode(line) for line in lines[1:]]
    verified = None
    for vkey in state.vkeys:
        try:
            verified = rfc9162.verify_checkpoint(note, vkey)
            break
        except ValueError:
            continue
    if verified is None:
        return 403, "", "text/plain"
    origin, size, root = verified
    if origin != state.origin:
        return 404, "", "text/plain"
    if old > size:
        return 400, "", "text/plain"
    with state.lock:
        if old != state.size:
            return 409, f"{state.size}\n", "text/x.tlog.size"
        if old == size and root != state.root:
            return 409, f"{state.size}\n", "text/plain"
        if 0 < old < size and not rfc9162.verify_consistency(old, size, state.root, root, proof):
            return 422, "", "text/plain"
        state.size, state.root = size, root
        state.cosigned.append(size)
    signature = state.key.sign(note.partition("\n\n")[0].encode() + b"\n")
    return 200, f"\u2014 witness.test/w1 {base64.b64encode(signature).decode()}\n", "text/plain"


def _handler(state: WitnessState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_POST(self) -> None:
            status, text, content_type = 404, "", "text/plain"
            if self.path == "/witness/add-checkpoint":
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                state.requests.append(body)
                status, text, content_type = add_checkpoint(state, body)
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def running_witness(state: WitnessState) -> Iterator[str]:
    """Serve the witness on 127.0.0.1; yields its submission prefix."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/witness"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
