"""A "database host" for tests: the real PostgreSQL (Debian's package) in a network
namespace of its own, beyond the sandbox's external client, as a site's database server
on another machine would be. Traffic from the instance leaves the sandbox host through
its external interface (masqueraded by the bridge hook) and the client routes it on.

Debian's package must not start a cluster in this machine's own namespace when it is
installed: tests/run.sh installs it under a ``policy-rc.d`` that exits 101. Here
``initdb`` makes a cluster in a folder of the test's, and ``pg_ctl`` runs it under
``nsenter`` in the database namespace only.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.host.harness import Sandbox

PORT = 5432
USER = DATABASE = "coldfront"


def _bin(tool: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    if not found:
        raise FileNotFoundError(f"PostgreSQL's {tool} (install the postgresql package)")
    return found[-1]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class DatabaseHost:
    """PostgreSQL at ``addr``:5432 in namespace ``ns``; ``password`` is the coldfront role's."""

    ns: str
    addr: str
    folder: Path
    password: str
    client: str

    @classmethod
    def attach(cls, sandbox: Sandbox) -> DatabaseHost:
        ns = sandbox.client[:-1] + "d"
        net = sandbox.net
        addr, gateway = f"198.20.{net}.2", f"198.20.{net}.1"
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", sandbox.client, "link", "add", "db0", "type", "veth", "peer", "name", "db0",
            "netns", ns)
        _ip("-n", sandbox.client, "addr", "add", f"{gateway}/24", "dev", "db0")
        _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "db0")
        for where in (sandbox.client, ns):
            _ip("-n", where, "link", "set", "db0", "up")
        _ip("-n", ns, "route", "add", "default", "via", gateway)
        subprocess.run(["nsenter", f"--net=/run/netns/{sandbox.client}", "sysctl", "-qw",
                        "net.ipv4.ip_forward=1"], check=True)  # the client routes to it
        folder = Path(tempfile.mkdtemp(prefix="cfl-pg-", dir="/var/tmp"))
        shutil.chown(folder, "postgres", "postgres")
        made = cls(ns, addr, folder, "pg-" + folder.name[-8:], sandbox.client)
        try:
            made._start()
        except BaseException:
            made.destroy()
            raise
        return made

    def _as_postgres(self, argv: list[str], check: bool = True
                     ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.ns}", "runuser", "-u",
                               "postgres", "--", *argv], capture_output=True, text=True,
                              check=check, timeout=120, cwd="/")

    def _start(self) -> None:
        data = self.folder / "data"
        self._as_postgres([_bin("initdb"), "-D", str(data), "-A", "peer", "-U", "postgres",
                           "--no-sync"])
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 0.0.0.0/0 scram-sha-256\n")
        self._as_postgres([_bin("pg_ctl"), "-D", str(data), "-l", str(self.folder / "log"),
                           "-w", "-o", f"-c listen_addresses={self.addr} -p {PORT} "
                           f"-c unix_socket_directories={self.folder}", "start"])
        self.sql(f"CREATE ROLE {USER} LOGIN PASSWORD '{self.password}'", database="postgres")
        self.sql(f"CREATE DATABASE {DATABASE} OWNER {USER}", database="postgres")

    @property
    def url(self) -> str:
        """The django-environ URL ColdFront is given."""
        return f"psql://{USER}:{self.password}@{self.addr}:{PORT}/{DATABASE}"

    def sql(self, statement: str, database: str = DATABASE) -> str:
        """Run one statement over the local socket; its rows, one a line."""
        return self._as_postgres([_bin("psql"), "-h", str(self.folder), "-p", str(PORT),
                                  "-d", database, "-Atc", statement]).stdout.strip()

    def stop(self) -> None:
        """Shut the server down (the database becomes unreachable); the data stays."""
        self._as_postgres([_bin("pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast",
                           "-w", "stop"], check=False)

    def destroy(self) -> None:
        self.stop()
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)
        subprocess.run(["ip", "-n", self.client, "link", "del", "db0"], capture_output=True,
                       check=False)
        shutil.rmtree(self.folder, ignore_errors=True)
