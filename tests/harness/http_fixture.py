"""A loopback HTTP file server for download tests: Range support, a cut-after-N-bytes fault, request log."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class ServedFile:
    body: bytes
    honour_range: bool = True
    cut_after: int | None = None  # close the connection after this many bytes (first request only)
    announced_length: int | None = None  # lie about Content-Length when set
    requests: list[dict] = field(default_factory=list)


class FileServer:
    def __init__(self) -> None:
        self.files: dict[str, ServedFile] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                served = server.files.get(self.path)
                if served is None:
                    self.send_error(404)
                    return
                range_header = self.headers.get("Range")
                served.requests.append({"range": range_header})
                start = 0
                if range_header and served.honour_range:
                    start = int(range_header.split("=")[1].split("-")[0])
                    if start >= len(served.body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(served.body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(served.body) - 1}/{len(served.body)}")
                else:
                    self.send_response(200)
                payload = served.body[start:]
                length = served.announced_length if served.announced_length is not None else len(payload)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if served.cut_after is not None:
                    cut, served.cut_after = served.cut_after, None
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"
