"""Reading a Server-Sent Events stream off a raw socket, as a browser's EventSource would hold it open."""

from __future__ import annotations

import socket
import time


def read_until(sock: socket.socket, marker: bytes, seconds: float = 20) -> bytes:
    """Everything the stream sent until `marker` arrived, the peer closed, or `seconds` passed."""
    data = b""
    deadline = time.monotonic() + seconds
    sock.settimeout(1)
    while marker not in data and time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        data += chunk
    return data
