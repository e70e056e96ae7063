"""How much one loopback `send()` costs on this machine today, to read the other figures by.

Fan-out at one event per wake-up does one `send()` per reader per event, and
when the reader sleeps between events each `send()` also wakes it on the other
CPU. On a VM that wake-up can cost more than the rest of the send, and it
varies between machines and days: this figure tells whether a run is slower
than perf-anchors.md because of the code or because of the machine.
"""

from __future__ import annotations

import os
import socket
import struct
import time

from bench import procs

MESSAGE = b"x" * 200
SPIN_S = 50e-6


def _sender(conn: socket.socket, n: int, paced: bool) -> float:
    """CPU microseconds per send, less the busy-wait between paced sends."""
    cpu = time.process_time()
    spun = 0.0
    for _ in range(n):
        conn.send(MESSAGE)
        if paced:
            started = time.perf_counter()
            while time.perf_counter() - started < SPIN_S:
                pass
            spun += time.perf_counter() - started
    return (time.process_time() - cpu - spun) / n * 1e6


def loopback_send_us(n: int = 20_000) -> tuple[float, float]:
    """(back to back, paced) CPU per 200-byte send, sender on the server CPU."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        results_r, results_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the sender, where the servers run
            try:
                procs.pin_self(procs.SERVER_CPU)
                with socket.create_connection(listener.getsockname()) as conn:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    burst = _sender(conn, n * 5, paced=False)
                    paced = _sender(conn, n, paced=True)
                os.write(results_w, struct.pack("dd", burst, paced))
            finally:
                os._exit(0)
        os.close(results_w)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(30)
            while conn.recv(1 << 16):
                pass
        data = os.read(results_r, 16)
        os.close(results_r)
        os.waitpid(pid, 0)
    burst, paced = struct.unpack("dd", data) if len(data) == 16 else (0.0, 0.0)
    return burst, paced
