"""Commands on an SSH connection in as few round trips as the protocol allows.

Each round trip costs the network's latency (20-100 ms to a real cluster), so a
command is one channel open (answered by the server: one round trip) and then, in a
single send, the ``exec`` request *without asking for a reply* and its stdin: the
server answers with the output and the exit status (the second and last). A command
the server refuses closes its channel, which reads as a dropped connection.

:class:`Stream` is a command left running: its stdout read as it comes (the start of
a run that then streams the run's results back), its stdin kept open for a last
word (what to tidy).
"""

from __future__ import annotations

import select
import time

from .base import ConnectionLost


def exec_nowait(chan, command: str) -> None:
    """Send ``exec command`` on ``chan`` without waiting for the server's yes.

    This uses paramiko's internal ``Transport._send_user_message`` (what its own
    ``exec_command`` sends with); a paramiko without it gets the plain
    ``exec_command``: correct, one round trip slower."""
    from paramiko.common import cMSG_CHANNEL_REQUEST
    from paramiko.message import Message

    send = getattr(chan.transport, "_send_user_message", None)
    if send is None:
        chan.exec_command(command)
        return

    m = Message()
    m.add_byte(cMSG_CHANNEL_REQUEST)
    m.add_int(chan.remote_chanid)
    m.add_string("exec")
    m.add_boolean(False)
    m.add_string(command)
    send(m)


class Stream:
    """A running command's channel: read its stdout by lines and frames."""

    def __init__(self, chan):
        self.chan = chan
        self.buf = bytearray()
        self.err = bytearray()
        self.ended: tuple[int, bytes, bytes] | None = None  # set by until()

    def _fill(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for output; False once it has ended."""
        chan = self.chan
        got = False
        while chan.recv_stderr_ready():
            self.err += chan.recv_stderr(1 << 20)
        while chan.recv_ready():
            data = chan.recv(1 << 20)
            if not data:
                return False
            self.buf += data
            got = True
        if got:
            return True
        if chan.eof_received and not chan.recv_ready():
            return False
        select.select([chan], [], [], max(0.0, timeout))
        while chan.recv_stderr_ready():
            self.err += chan.recv_stderr(1 << 20)
        if chan.recv_ready():
            data = chan.recv(1 << 20)
            if not data:
                return False
            self.buf += data
        elif chan.eof_received or chan.closed:
            return False
        return True

    def line(self, timeout: float) -> bytes | None:
        """The next line of stdout (without its newline), None at the end of the
        output or when ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            if not self._fill(max(0.0, deadline - time.monotonic())):
                return None
            if b"\n" not in self.buf and time.monotonic() >= deadline:
                return None
        end = self.buf.index(b"\n")
        line = bytes(self.buf[:end])
        del self.buf[:end + 1]
        return line

    def exact(self, n: int, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            if not self._fill(max(0.0, deadline - time.monotonic())):
                return None
            if len(self.buf) < n and time.monotonic() >= deadline:
                return None
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def finish(self, timeout: float = 30) -> tuple[int, bytes, bytes]:
        """Read to the end: (exit code or -1, the rest of stdout, stderr)."""
        deadline = time.monotonic() + timeout
        while self._fill(max(0.0, deadline - time.monotonic())) and \
                time.monotonic() < deadline:
            pass
        chan = self.chan
        end = time.monotonic() + 1
        while not chan.exit_status_ready() and not chan.closed and time.monotonic() < end:
            time.sleep(0.005)
        code = chan.recv_exit_status() if chan.exit_status_ready() else -1
        return code, bytes(self.buf), bytes(self.err)

    def until(self, is_marker, conn, lost: str):
        """Read lines until one that ``is_marker(line)`` accepts: (the lines before
        it, each with its newline; that line). If the command ends first: (its
        lines, None), and :attr:`ended` holds (exit code, the rest of stdout,
        stderr); a connection that dropped instead (no exit status) is closed and
        raises ``ConnectionLost(lost)``."""
        lines: list[bytes] = []
        while True:
            line = self.line(3600)
            if line is None:
                self.ended = self.finish()
                self.close()
                if self.ended[0] == -1:
                    conn.close()
                    raise ConnectionLost(lost)
                return lines, None
            if is_marker(line):
                return lines, line
            lines.append(line + b"\n")

    def frames(self, timeout_s: float):
        """The frames (``@pyjoule-frame N`` then N bytes) that came within
        ``timeout_s``, returning once some came and no more are buffered; None as the
        last item when the stream is gone (ended, or cut mid-frame)."""
        deadline = time.monotonic() + timeout_s
        while True:
            line = self.line(max(0.0, deadline - time.monotonic()))
            if line is None:
                if self.chan.eof_received or self.chan.closed:
                    yield None
                return
            if not line.startswith(b"@pyjoule-frame "):
                continue
            frame = self.exact(int(line.split()[1]), 60)
            yield frame  # None: cut mid-frame (then the stream is gone)
            if frame is None or not self.buf:
                return

    def say(self, data: bytes) -> None:
        """Send ``data`` on stdin and close it; the answer is not waited for."""
        try:
            self.chan.sendall(data)
            self.chan.shutdown_write()
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.chan.close()
        except Exception:  # noqa: BLE001 - closing a broken channel
            pass
