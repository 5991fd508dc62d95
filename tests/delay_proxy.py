"""A TCP forwarder that adds network latency and counts round trips (issue #14 §4).

Users' clusters are 20-100 ms away; the test sshd is 0.1 ms away. ``DelayProxy``
listens on 127.0.0.1, forwards every connection to the test sshd and delays each
chunk by ``delay_s`` in each direction (25 ms each way = 50 ms RTT), in order.

It counts *turns*: the number of times traffic turns from client->server to
server->client on a connection (a client send answered by the server). Latency costs
one RTT per turn, so the count is the protocol's cost on a real network, independent
of the machine's speed: tests assert counts, never seconds.

    proxy = DelayProxy(("127.0.0.1", 2222), delay_s=0.025, port=2240).start()
    config = proxy.ssh_config(sshd, "/tmp/x")   # alias "pjslow" through the proxy
    ...; proxy.reset(); ...; print(proxy.turns); proxy.stop()

Standard library only: usable from a fixture and from benchmarks/remote.py.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from pathlib import Path


class DelayProxy:
    def __init__(self, target: tuple[str, int], delay_s: float = 0.0, port: int = 0):
        self.target, self.delay_s, self.port = target, delay_s, port
        self.turns = 0
        self.connections = 0
        self.trace: list | None = None  # a list: (time, "c"/"s", bytes) of each chunk
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._stopped = threading.Event()

    # ------------------------------------------------------------- lifecycle
    def start(self) -> DelayProxy:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(16)
        self._sock, self.port = sock, sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="delay-proxy").start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        for s in [self._sock, *self._open]:
            try:
                s.close()
            except OSError:
                pass

    def reset(self) -> None:
        """Start counting turns from zero (connections already open are kept)."""
        with self._lock:
            self.turns = 0
            self.connections = 0

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --------------------------------------------------------------- forwarding
    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._open += [client, server]
            with self._lock:
                self.connections += 1
            state = {"last": None}  # the direction of the last chunk seen
            for src, dst, way in ((client, server, "c"), (server, client, "s")):
                pending: queue.Queue = queue.Queue()
                threading.Thread(target=self._read, args=(src, pending, way, state),
                                 daemon=True).start()
                threading.Thread(target=self._write, args=(dst, pending),
                                 daemon=True).start()

    def _read(self, src, pending, way, state) -> None:
        while True:
            try:
                data = src.recv(1 << 16)
            except OSError:
                data = b""
            with self._lock:
                if data and way == "s" and state["last"] == "c":
                    self.turns += 1
                if data:
                    state["last"] = way
                    if self.trace is not None:
                        self.trace.append((time.monotonic(), way, len(data)))
            pending.put((time.monotonic() + self.delay_s, data))
            if not data:
                return

    @staticmethod
    def _write(dst, pending) -> None:
        while True:
            due, data = pending.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return

    # ------------------------------------------------------------------ ssh
    def ssh_config(self, server, folder, alias: str = "pjslow") -> Path:
        """An ssh config (in ``folder``) whose ``alias`` reaches ``server`` (a
        tests/sshd_server.py server) through this proxy, with a known_hosts line for
        the proxy's port: the shared server's own files are left as they are."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        key = server.known_hosts.read_text().split(None, 1)[1]
        known = folder / "known_hosts"
        known.write_text(f"[127.0.0.1]:{self.port} {key}")
        lines = [f"Host {alias}"]
        for line in server.ssh_config.read_text().splitlines()[1:]:
            word = line.split(None, 1)[0].lower() if line.strip() else ""
            if word == "port":
                line = f"  Port {self.port}"
            elif word == "userknownhostsfile":
                line = f"  UserKnownHostsFile {known}"
            lines.append(line)
        config = folder / "ssh_config"
        config.write_text("\n".join(lines) + "\n")
        return config
