"""A local HTTP mirror on 127.0.0.1 for download tests (nothing else is reachable), and a URL where nothing listens."""
from __future__ import annotations

import gzip
import hashlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aecore.engine.fetch import FILES
from idx_helpers import idx_bytes


class Mirror:
    """An HTTP server on 127.0.0.1 in a thread, serving `files` (name -> bytes) from its root.

    Counts GET requests per name; `delay` seconds pass before each answer, and while `hold` is a cleared
    Event every answer waits for it (at most 10 s), so tests can catch a download in the middle.
    """

    def __init__(self, files: dict[str, bytes], delay: float = 0.0):
        self.files, self.delay, self.hold = dict(files), delay, None
        self.requests: dict[str, int] = {}
        self._lock = threading.Lock()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                with mirror._lock:
                    mirror.requests[name] = mirror.requests.get(name, 0) + 1
                time.sleep(mirror.delay)
                if mirror.hold is not None:
                    mirror.hold.wait(timeout=10)
                body = mirror.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):   # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def close(self):
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def tiny_files(arrays: dict) -> tuple[dict[str, bytes], dict[str, str]]:
    """The tiny data set as the four .gz files, and their uncompressed MD5s."""
    keys = ("train-images", "train-labels", "test-images", "test-labels")
    raw = {name: idx_bytes(arrays[key]) for name, key in zip(FILES, keys)}
    return ({name: gzip.compress(b) for name, b in raw.items()},
            {name: hashlib.md5(b).hexdigest() for name, b in raw.items()})
