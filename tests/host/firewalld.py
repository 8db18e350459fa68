"""The real firewalld (Debian's package) in a sandbox network namespace, on a private system
D-Bus of its own (../shared/notes/firewalld-in-a-sandbox.md has the recipe).

Both run on the machine's side, never in its own network namespace: firewalld under
``nsenter --net`` and a private mount namespace (its /run/firewalld on a tmpfs). The bus
socket lives in a folder of the test host's root file system, so cf-launch inside the
test host reaches the same bus through ``DBUS_SYSTEM_BUS_ADDRESS``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

RUN_DIR = Path("/run/firewalld")

BUS_CONFIG = """\
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <!-- firewalld's own policy: root owns org.fedoraproject.FirewallD1 and calls it -->
  <includedir>/usr/share/dbus-1/system.d</includedir>
  <includedir>/etc/dbus-1/system.d</includedir>
</busconfig>
"""


def installed() -> bool:
    return all(shutil.which(tool) for tool in ("firewalld", "firewall-cmd", "dbus-daemon"))


class Firewalld:
    """A private system bus in ``folder`` (a machine path) and firewalld in ``netns``."""

    def __init__(self, netns: str, folder: Path) -> None:
        self.netns = netns
        self.folder = folder
        self.socket = folder / "socket"
        self.bus: subprocess.Popen[str] | None = None
        self.daemon: subprocess.Popen[str] | None = None
        self.made_run_dir = False

    @property
    def environ(self) -> dict[str, str]:
        return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={self.socket}"}

    def start(self) -> Firewalld:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.made_run_dir = not RUN_DIR.exists()  # the mount point of its private tmpfs
        config = self.folder / "bus.conf"
        config.write_text(BUS_CONFIG.format(socket=self.socket))
        self.bus = subprocess.Popen(["dbus-daemon", f"--config-file={config}", "--nofork",
                                     "--nopidfile", "--print-address"],
                                    stdout=subprocess.PIPE, text=True)
        assert self.bus.stdout is not None and self.bus.stdout.readline(), "the bus is up"
        self.daemon = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             "mkdir -p /run/firewalld && mount -t tmpfs tmpfs /run/firewalld && exec "
             f"nsenter --net=/run/netns/{self.netns} firewalld --nofork --nopid "
             "--log-target console"],
            env=self.environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if self.cmd("--state", check=False).stdout.strip() == "running":
                return self
            time.sleep(0.3)
        raise AssertionError(f"firewalld did not start: {self.stop()}")

    def cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """firewall-cmd in the sandbox, on the private bus."""
        result = subprocess.run(["nsenter", f"--net=/run/netns/{self.netns}", "firewall-cmd",
                                 *args], env=self.environ, capture_output=True, text=True,
                                check=False, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"firewall-cmd {' '.join(args)}: {result.stderr}")
        return result

    def stop(self) -> str:
        """End firewalld, then the bus (by their pids); return firewalld's log."""
        log = ""
        if self.daemon is not None:
            self.daemon.terminate()
            try:
                _out, log = self.daemon.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                _out, log = self.daemon.communicate()
            self.daemon = None
        if self.bus is not None:
            self.bus.terminate()
            self.bus.wait(timeout=10)
            self.bus = None
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.made_run_dir:
            with contextlib.suppress(OSError):
                RUN_DIR.rmdir()
        return log or ""
