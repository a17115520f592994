"""The HTTP/1.1 protocol ``mayhold serve`` runs: uvicorn's (httptools), with its one answer of
its own, to a request it cannot parse, as problem+json like every other error.

uvicorn answers a malformed request (a broken request line, header or chunk) itself, before
any app sees it, with a ``text/plain`` 400 and closes the connection. Everything else reaches
the app (the app answers its own problems; ``limit_concurrency``, which would answer a
``text/plain`` 503, is not set).
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.kit.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_PREFIX

MALFORMED_REQUEST = json.dumps(
    {
        "type": PROBLEM_TYPE_PREFIX + "malformed-http",
        "title": "Malformed HTTP request",
        "status": 400,
        "detail": "The request is not valid HTTP/1.1 (its request line, a header or the "
        "chunked body cannot be parsed), so nothing was done and the connection is closed. "
        "Check the client or the proxy in between.",
    }
).encode()


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: " + PROBLEM_MEDIA_TYPE.encode() + b"\r\n",
                b"content-length: " + str(len(MALFORMED_REQUEST)).encode() + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                MALFORMED_REQUEST,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
