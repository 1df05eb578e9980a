"""Background daemons that ``up`` starts and ``down`` stops (stdlib only).

A part (k8s, oidc) keeps one :class:`Daemons` for its folder: each daemon it starts is
recorded in ``<run>/<name>.json`` (pid, argv, a digest of the files it reads, log path)
and counts as running only while that pid is alive with the same command line, so a pid
reused by another program is never taken for ours nor killed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tools.infra import ROOT, read_state


def cmdline(pid: int) -> list[str] | None:
    """The live process ``pid``'s argv, None when it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
        return None  # a zombie is dead
    return raw.decode(errors="replace").split("\0")[:-1]


def files_digest(paths: list[Path]) -> str:
    """Hash of the files a daemon reads at start that its command line does not show."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def keep_build(part: str, state: dict) -> dict:
    """``state`` with the build record of ``part``'s last recorded state: stopping or
    checking a part does not forget what was built."""
    previous = read_state(part)
    if "build" in previous:
        state["build"] = previous["build"]
    return state


class Daemons:
    """The daemons of one part: pid files under ``run``, logs under ``logs``, started in
    ``cwd`` as session leaders (they outlive the shell that ran ``up``); ``log`` prints
    in the part's voice."""

    def __init__(self, run: Path, logs: Path, cwd: Path, log: Callable[[str], None]):
        self.run, self.logs, self.cwd, self.log = run, logs, cwd, log

    def _pidfile(self, name: str) -> Path:
        return self.run / f"{name}.json"

    def running(self, name: str) -> dict | None:
        """The pid-file record of a live process that is the one we started, else None."""
        try:
            record = json.loads(self._pidfile(name).read_text())
        except (OSError, ValueError):
            return None
        argv = cmdline(int(record.get("pid", 0)))
        if argv is None or argv != record.get("argv"):
            return None
        return record

    def pids(self, names) -> dict[str, int | None]:
        return {name: (self.running(name) or {}).get("pid") for name in names}

    def stop(self, name: str, timeout: float = 15.0) -> bool:
        """SIGTERM the daemon's process group, SIGKILL after ``timeout``. -> was running"""
        record = self.running(name)
        self._pidfile(name).unlink(missing_ok=True)
        if record is None:
            return False
        pid = int(record["pid"])
        try:
            os.killpg(pid, signal.SIGTERM)  # a session leader: pgid == pid
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cmdline(pid) is None:
                return True
            time.sleep(0.2)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return True

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        digest: str = "",
        env: dict | None = None,
        restart: bool = False,
    ) -> tuple[dict, bool]:
        """Start ``name`` unless the same command with the same ``digest`` runs already
        (``restart`` restarts it anyway). -> (record, started)"""
        record = self.running(name)
        same = record is not None and record["argv"] == argv and record.get("config") == digest
        if same and not restart:
            return record, False
        if record is not None:
            why = "its server restarted" if same else "its command or configuration changed"
            self.log(f"restarting {name} ({why})")
            self.stop(name)
        self.run.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        logfile = self.logs / f"{name}.log"
        with logfile.open("a") as out:
            out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n")
            out.flush()
            proc = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        record = {
            "pid": proc.pid,
            "argv": argv,
            "config": digest,
            "started": time.time(),
            "log": str(logfile),
        }
        self._pidfile(name).write_text(json.dumps(record, indent=2))
        shown = logfile.relative_to(ROOT) if logfile.is_relative_to(ROOT) else logfile
        self.log(f"started {name} (pid {proc.pid}, log {shown})")
        return record, True
