"""A real single-node SLURM cluster on 127.0.0.1 for the SLURM tests.

munged, slurmctld and ``slurmd -N localhost`` from Debian's packages, started by hand
(no systemd), with one node ``localhost`` of 8 CPUs in the default partition ``debug``.
Optionally slurmdbd and MariaDB too, so that ``sacct`` works. Any local user can
submit: jobs run as the submitting user, and their output goes to the submit directory.
Standard library only; needs root (packages, daemons).

    python tests/slurm_cluster.py [--max-array-size N] [--accounting] start|stop|status

``ensure_cluster()`` is idempotent: it installs the packages with apt when missing,
creates the munge key when missing, writes the config, and (re)starts the daemons
only when they are not running or the config they run with differs. The config lives
in /etc/slurm, the Debian default: every client (``sbatch`` as another user, through
``runuser``, ssh or a login shell) finds it there, whereas ``SLURM_CONF`` would have
to reach each of their environments. So there is one such cluster per machine. The
facts behind each setting are in /work/shared/design/TEST-INFRA-slurm.md.
"""

from __future__ import annotations

import argparse
import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from machine_setup import apt_install, kill_and_wait, locked, missing_packages, processes
from machine_setup import run as _run
from machine_setup import write as _write

CONF_DIR = Path("/etc/slurm")
NODE = "localhost"
CPUS = 8
REAL_MEMORY = 16384  # MB: the largest --mem a job may ask for
LOG_DIR = Path("/var/log/slurm")
STATE_DIR = Path("/var/lib/slurm")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN = Path("/run/munge")
MUNGE_LOG = Path("/var/log/munge/munged.log")
MARIADB_RUN = Path("/run/mysqld")
MARIADB_LOG = Path("/var/log/mysql/pyjoule-test.err")
DBD_PORT = 6819
LOCK = Path("/run/pyjoule-slurm.lock")
# the slurm.conf that the running slurmctld and slurmd were started with
STARTED = Path("/run/pyjoule-slurm.started")
READY_TIMEOUT = 30.0
# apt package -> the programs it must provide
PACKAGES = {
    "munge": ["munged", "munge", "unmunge", "mungekey"],
    "slurmctld": ["slurmctld"],
    "slurmd": ["slurmd"],
    "slurm-client": ["sbatch", "squeue", "scancel", "sinfo", "scontrol", "sacct"],
}
ACCOUNTING_PACKAGES = {
    "slurmdbd": ["slurmdbd"],
    "mariadb-server": ["mariadbd", "mariadb", "mariadb-admin"],
}
# squeue states after which a job (or array task) does nothing more
FINAL_STATES = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
                "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT"}
# squeue -o codes -> the keys of SlurmCluster.squeue()'s dicts
SQUEUE_FIELDS = {"%i": "id", "%A": "job_id", "%F": "array_job_id", "%K": "array_task_id",
                 "%T": "state", "%r": "reason", "%u": "user"}

SLURM_CONF = """\
# Written by pyjoule's tests/slurm_cluster.py; it is rewritten on each ensure_cluster().
ClusterName=pyjoule
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={state}/slurmctld
SlurmdSpoolDir={state}/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile={log}/slurmctld.log
SlurmdLogFile={log}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
KillWait=5
MailProg=/bin/true
MaxArraySize={max_array_size}
JobCompType=jobcomp/filetxt
JobCompLoc={log}/jobcomp.log
{accounting}
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={real_memory} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""
# SlurmdParameters=config_overrides: CPUs=8 is more than the machine has; without it the
# node goes "inval". CR_Core: per-core allocation, so array tasks run side by side.
# batch_sched_delay=0: array tasks start 1 s apart instead of 3 s.

ACCOUNTING_NONE = """\
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"""

ACCOUNTING_DBD = f"""\
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={DBD_PORT}
JobAcctGatherType=jobacct_gather/linux"""

SLURMDBD_CONF = f"""\
# Written by pyjoule's tests/slurm_cluster.py.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={DBD_PORT}
SlurmUser=root
PidFile=/run/slurmdbd.pid
LogFile={LOG_DIR}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
"""
# StorageUser=root needs no password: MariaDB's root@localhost logs in by socket identity.


@dataclass
class SlurmCluster:
    """The machine's test cluster: one node, ``cpus`` CPUs, config in ``conf_dir``."""

    conf_dir: Path
    max_array_size: int
    cpus: int
    accounting: bool  # slurmdbd + MariaDB: sacct works

    @property
    def slurm_conf(self) -> Path:
        return self.conf_dir / "slurm.conf"

    @property
    def logs(self) -> list[Path]:
        logs = [MUNGE_LOG, LOG_DIR / "slurmctld.log", LOG_DIR / "slurmd.log"]
        return logs + ([MARIADB_LOG, LOG_DIR / "slurmdbd.log"] if self.accounting else [])

    def running(self) -> bool:
        """Whether the daemons run, the node is usable, and with this config."""
        return (_started_with() == _slurm_conf(self)
                and all(_pids(name) for name in _daemons(self.accounting))
                and _node_state() in _READY_STATES)

    def stop(self) -> None:
        """Stop every daemon of the cluster; job state in StateSaveLocation stays."""
        with locked(LOCK):
            self._stop_slurm()
            _stop("slurmdbd")
            _stop("mariadbd")
            _stop("munged")

    def restart(self) -> None:
        """Restart slurmctld and slurmd (munged, slurmdbd stay); jobs survive it."""
        with locked(LOCK):
            self._stop_slurm()
            self._start()

    def sbatch(self, *args: str, user: str | None = None, cwd: Path | str | None = None
               ) -> str:
        """The job id of ``sbatch --parsable ARGS``, run as ``user`` (default: us) in
        ``cwd``, which is also where the job runs and writes its output by default."""
        proc = _command(["sbatch", "--parsable", *args], user=user, cwd=cwd)
        if proc.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(args)} failed ({proc.returncode}): "
                               f"{proc.stderr.strip()}")
        return proc.stdout.strip().split(";")[0]  # ";cluster" only in multi-cluster use

    def squeue(self, job_id: str) -> list[dict[str, str]]:
        """One dict per task of ``job_id`` (keys: SQUEUE_FIELDS' values), finished ones
        included while slurmctld keeps them (MinJobAge, 300 s); [] once purged."""
        proc = _command(["squeue", "-h", "-r", "-t", "all", "-j", job_id,
                         "-o", "|".join(SQUEUE_FIELDS)])
        if proc.returncode != 0:
            if "Invalid job id" in proc.stderr:
                return []
            raise RuntimeError(f"squeue -j {job_id} failed ({proc.returncode}): "
                               f"{proc.stderr.strip()}")
        return [dict(zip(SQUEUE_FIELDS.values(), line.split("|")))
                for line in proc.stdout.splitlines()]

    def wait(self, job_id: str, timeout: float = 60) -> list[dict[str, str]]:
        """Wait until no task of ``job_id`` is pending, running or completing; returns
        the last squeue() rows. TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.squeue(job_id)
            if all(row["state"] in FINAL_STATES for row in rows):
                return rows
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} not finished after {timeout:.0f} s: "
                                   + ", ".join(f"{r['id']} {r['state']} ({r['reason']})"
                                               for r in rows))
            time.sleep(0.2)

    def sacct(self, job_id: str) -> list[dict[str, str]]:
        """``sacct -j ID -X``: one dict (JobID, State, ExitCode) per job or task. It lags
        behind squeue by seconds; poll it. Needs ``accounting``."""
        fields = ["JobID", "State", "ExitCode"]
        proc = _command(["sacct", "-j", job_id, "-X", "-P", "-n", "-o", ",".join(fields)])
        if proc.returncode != 0:
            raise RuntimeError(f"sacct -j {job_id} failed ({proc.returncode}): "
                               f"{proc.stderr.strip()}")
        return [dict(zip(fields, line.split("|"))) for line in proc.stdout.splitlines()]

    def _start(self) -> None:
        """Start what is not running, in order, and wait until a job runs."""
        _start_munged()
        if self.accounting:
            _start_mariadb()
            _start_slurmdbd()
        if not _pids("slurmctld"):
            _daemonize(["slurmctld"])
        self._wait_for(lambda: _command(["scontrol", "ping"]).returncode == 0,
                       "slurmctld to answer `scontrol ping`", ["slurmctld"])
        if not _pids("slurmd"):
            # slurmd finds its node by hostname unless told
            _daemonize(["slurmd", "-N", NODE])
        self._wait_node_ready()
        # The first job after a fresh slurmctld takes ~3 s more; pay that here. Not
        # `sbatch --wait`: it polls slowly, and took 10 s for this.
        job = self.sbatch("--output=/dev/null", "--wrap", "true", cwd="/")
        try:
            rows = self.wait(job, timeout=READY_TIMEOUT)
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{self._log_tail()}") from exc
        if [row["state"] for row in rows] != ["COMPLETED"]:
            raise RuntimeError(f"a trivial job ended {rows}\n{self._log_tail()}")
        _write(STARTED, _slurm_conf(self), 0o644)

    def _stop_slurm(self) -> None:
        STARTED.unlink(missing_ok=True)
        _stop("slurmd")
        _stop("slurmctld")

    def _wait_node_ready(self) -> None:
        resumed = False

        def ready() -> bool:
            nonlocal resumed
            state = _node_state()
            # a node that was down or drained (e.g. a config it could not meet) stays so
            if not resumed and state.rstrip("*~#") in {"down", "drained", "draining", "inval"}:
                _command(["scontrol", "update", f"NodeName={NODE}", "State=RESUME"])
                resumed = True
            return state in _READY_STATES
        self._wait_for(ready, f"node {NODE} to be idle in sinfo")

    def _wait_for(self, condition, what: str, daemons: list[str] | None = None) -> None:
        _wait_for(condition, what, daemons or _daemons(self.accounting), self.logs)

    def _log_tail(self) -> str:
        return _log_tail(self.logs)


# node states (sinfo %T) in which jobs can run; a trailing * would mean not responding
_READY_STATES = {"idle", "mixed", "allocated", "completing"}


def ensure_cluster(max_array_size: int = 1001, accounting: bool = False) -> SlurmCluster:
    """The running test cluster with this config, set up and (re)started as needed;
    RuntimeError if impossible. ``accounting`` adds slurmdbd + MariaDB (sacct): about
    12 s more to install and 1-2 s more to start; turning it off again leaves them
    running, unused."""
    cluster = SlurmCluster(conf_dir=CONF_DIR, max_array_size=max_array_size, cpus=CPUS,
                           accounting=accounting)
    if os.geteuid() != 0:
        missing = missing_packages(_packages(accounting))
        raise RuntimeError(
            "the test SLURM cluster needs root (it writes /etc/slurm and runs munged, "
            "slurmctld and slurmd); run the SLURM tests as root"
            + (f", and install {' '.join(missing)}" if missing else ""))
    try:
        apt_install(_packages(accounting), recommends=False)
        with locked(LOCK):
            _ensure(cluster)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"cannot set up the test SLURM cluster: {exc}") from exc
    return cluster


def _ensure(cluster: SlurmCluster) -> None:
    if not MUNGE_KEY.exists():
        _run("mungekey", "--create", "--keyfile", str(MUNGE_KEY))
    munge = pwd.getpwnam("munge")
    os.chown(MUNGE_KEY, munge.pw_uid, munge.pw_gid)
    os.chmod(MUNGE_KEY, 0o600)
    for folder in (LOG_DIR, STATE_DIR / "slurmctld", STATE_DIR / "slurmd"):
        folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    cluster.conf_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    # 644: every user's sbatch and squeue read it
    _write(cluster.slurm_conf, _slurm_conf(cluster), 0o644)  # what running() compares
    if cluster.accounting:
        # slurmdbd refuses a slurmdbd.conf that others can read
        _write(cluster.conf_dir / "slurmdbd.conf", SLURMDBD_CONF, 0o600)
    if cluster.running():
        return
    # slurmctld must restart for node changes (`scontrol reconfigure` refuses them), and
    # so must slurmd; restarting both keeps pending and running jobs
    if _started_with() != _slurm_conf(cluster):
        cluster._stop_slurm()
    cluster._start()


def _slurm_conf(cluster: SlurmCluster) -> str:
    return SLURM_CONF.format(state=STATE_DIR, log=LOG_DIR, node=NODE, cpus=cluster.cpus,
                             real_memory=REAL_MEMORY, max_array_size=cluster.max_array_size,
                             accounting=ACCOUNTING_DBD if cluster.accounting
                             else ACCOUNTING_NONE)


def _started_with() -> str | None:
    try:
        return STARTED.read_text()
    except OSError:
        return None


def _daemons(accounting: bool) -> list[str]:
    return ["munged"] + (["mariadbd", "slurmdbd"] if accounting else []) + [
        "slurmctld", "slurmd"]


def _node_state() -> str:
    proc = _command(["sinfo", "-h", "-n", NODE, "-o", "%T"])
    return proc.stdout.strip() if proc.returncode == 0 else ""


# ------------------------------------------------------------------ daemons
def _start_munged() -> None:
    # on machines where init scripts run, the package may already have started it
    if not _pids("munged"):
        munge = pwd.getpwnam("munge")
        MUNGE_RUN.mkdir(mode=0o755, exist_ok=True)
        os.chown(MUNGE_RUN, munge.pw_uid, munge.pw_gid)
        # as root it refuses to start ("Logfile is insecure")
        _daemonize(["runuser", "-u", "munge", "--", "munged"])
    _wait_for(_munge_works, "munged to answer `munge -n | unmunge`", ["munged"], [MUNGE_LOG])


def _munge_works() -> bool:
    cred = _command(["munge", "-n"])
    return cred.returncode == 0 and subprocess.run(
        ["unmunge"], input=cred.stdout, capture_output=True, text=True).returncode == 0


def _start_mariadb() -> None:
    if not _pids("mariadbd"):
        mysql = pwd.getpwnam("mysql")
        MARIADB_RUN.mkdir(mode=0o755, exist_ok=True)
        os.chown(MARIADB_RUN, mysql.pw_uid, mysql.pw_gid)
        if not Path("/var/lib/mysql/mysql").is_dir():
            _run("mariadb-install-db", "--user=mysql")
        MARIADB_LOG.parent.mkdir(parents=True, exist_ok=True)
        # it does not daemonize; --skip-networking: the unix socket only, no port 3306
        _daemonize(["setsid", "-f", "mariadbd", "--user=mysql", "--skip-networking",
                    f"--pid-file={MARIADB_RUN}/mariadbd.pid", f"--log-error={MARIADB_LOG}"])
    _wait_for(lambda: _command(["mariadb-admin", "ping"]).returncode == 0,
              "MariaDB to answer `mariadb-admin ping`", ["mariadbd"], [MARIADB_LOG])
    _run("mariadb", "-e", "CREATE DATABASE IF NOT EXISTS slurm_acct_db")


def _start_slurmdbd() -> None:
    if not _pids("slurmdbd"):
        _daemonize(["slurmdbd"])
    _wait_for(lambda: _port_open("127.0.0.1", DBD_PORT), f"slurmdbd on port {DBD_PORT}",
              ["slurmdbd"], [LOG_DIR / "slurmdbd.log"])


def _wait_for(condition, what: str, daemons: list[str], logs: list[Path]) -> None:
    """Poll ``condition``; RuntimeError with the logs' tails when it stays false for
    READY_TIMEOUT or one of ``daemons`` exits."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not condition():
        dead = [name for name in daemons if not _pids(name)]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}\n"
                               f"{_log_tail(logs)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {READY_TIMEOUT:.0f} s waiting for {what} "
                               f"(node state {_node_state()!r}; sinfo -R: "
                               f"{_command(['sinfo', '-h', '-R']).stdout.strip()!r})\n"
                               f"{_log_tail(logs)}")
        time.sleep(0.05)


def _log_tail(logs: list[Path], lines: int = 15) -> str:
    parts = []
    for log in logs:
        try:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            tail = ["(no log)"]
        parts.append(f"--- last lines of {log}:\n" + "\n".join(tail))
    return "\n".join(parts)


def _daemonize(argv: list[str]) -> None:
    """Run a daemon's start command, which returns once it has forked off. Our fds
    (the lock's included) are not passed on: munged, mariadbd and slurmdbd would keep
    them for as long as they run."""
    # stderr to a file, not a pipe: a daemon that keeps it (mariadbd) would leave the
    # pipe open, and run() would wait for its end
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=err, close_fds=True, start_new_session=True,
                              timeout=READY_TIMEOUT)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): "
                               f"{err.read().strip()}")


def _stop(name: str, timeout: float = 10) -> None:
    """SIGTERM every ``name`` process and wait until they are gone; SIGKILL after
    ``timeout``."""
    kill_and_wait(_pids(name), signal.SIGTERM, timeout)


def _pids(name: str) -> list[int]:
    """The live (not zombie) processes whose command name is ``name``."""
    return [pid for pid, _, command, state in processes() if command == name and state != "Z"]


# ------------------------------------------------------------------ small helpers
def _packages(accounting: bool) -> dict[str, list[str]]:
    # --no-install-recommends: recommends would add ~25 -dev and plugin packages
    return {**PACKAGES, **(ACCOUNTING_PACKAGES if accounting else {})}


def _command(argv: list[str], user: str | None = None, cwd: Path | str | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess:
    """``argv`` (as ``user`` when given), its output captured; never raises on failure."""
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------ command line
def _describe(cluster: SlurmCluster) -> str:
    daemons = ", ".join(f"{name} {_pids(name)}" for name in _daemons(cluster.accounting))
    return "\n".join([f"node {NODE}: {_node_state() or 'unknown'}, {cluster.cpus} CPUs, "
                      f"MaxArraySize={cluster.max_array_size}, "
                      f"accounting {'slurmdbd' if cluster.accounting else 'none'}",
                      f"daemons   {daemons}",
                      f"config    {cluster.slurm_conf}",
                      f"logs      {' '.join(map(str, cluster.logs))}",
                      "try:      sbatch --wrap hostname; squeue -t all"])


def _current() -> SlurmCluster | None:
    """The cluster as last started (from its recorded config), or None."""
    conf = _started_with()
    if conf is None:
        return None
    values = dict(line.split("=", 1) for line in conf.splitlines()
                  if "=" in line and not line.startswith(("#", "NodeName", "PartitionName")))
    return SlurmCluster(conf_dir=CONF_DIR, max_array_size=int(values["MaxArraySize"]),
                        cpus=CPUS,
                        accounting=values["AccountingStorageType"].endswith("slurmdbd"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--max-array-size", type=int, default=1001,
                        help="MaxArraySize (default 1001: indexes up to 1000)")
    parser.add_argument("--accounting", action="store_true",
                        help="also run slurmdbd and MariaDB, so that sacct works")
    args = parser.parse_args(argv)
    if args.action == "start":
        try:
            print(_describe(ensure_cluster(args.max_array_size, args.accounting)))
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    cluster = _current()
    if args.action == "stop":
        # stop() ends every daemon of the cluster, whatever its config
        (cluster or SlurmCluster(CONF_DIR, args.max_array_size, CPUS, False)).stop()
        print("stopped")
        return 0
    if cluster is None or not cluster.running():
        print("not running")
        return 1
    print(_describe(cluster))
    return 0


if __name__ == "__main__":
    sys.exit(main())
