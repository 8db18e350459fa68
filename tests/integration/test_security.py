"""Least privilege inside the container, with the real Apptainer, ColdFront and systemd
(issue: least privilege). One boot per network mode; every assertion shares it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.host.harness import Sandbox, TestHost
from tests.integration.conftest import STATE_ROOT, instance_config, self_signed_certificate

pytestmark = pytest.mark.integration

CAP = {"CAP_MKNOD": 27, "CAP_SYS_MODULE": 16, "CAP_SYS_PTRACE": 19, "CAP_SYS_TIME": 25,
       "CAP_SYS_ADMIN": 21, "CAP_NET_ADMIN": 12}
LIMITS = {"coldfront-gunicorn.service": 2.5, "coldfront-setup.service": 2.5,
          "coldfront-qcluster.service": 2.5, "coldfront-redis.service": 2.5,
          "nginx.service": 5.0}
EPERM = 1
# Each line prints "<probe> <exit code>"; run as the administrator and in gunicorn's context.
PROBES = r"""
py=/srv/coldfront/venv/bin/python3
# finit_module(-1): EPERM when refused; EBADF (or ENOSYS, kernels without modules) when not.
$py -c 'import ctypes as c, sys; l = c.CDLL(None, use_errno=True); l.syscall(313, -1, b"", 0)
sys.exit(c.get_errno())' 2>/dev/null; echo "module_errno $?"
mknod /tmp/cf-probe-blk b 7 0 2>/dev/null; echo "mknod $?"; rm -f /tmp/cf-probe-blk
mkdir -p /tmp/cf-probe-mnt; mount -t tmpfs none /tmp/cf-probe-mnt 2>/dev/null; echo "mount $?"
umount /tmp/cf-probe-mnt 2>/dev/null
touch /etc/cf-probe 2>/dev/null; echo "write_etc $?"; rm -f /etc/cf-probe 2>/dev/null
ls /root >/dev/null 2>&1; echo "read_root $?"
ip link set lo mtu 1300 2>/dev/null; echo "set_link $?"
ip link set lo mtu 65536 2>/dev/null
cat /etc/coldfront/coldfront.env >/dev/null 2>&1; echo "read_env_file $?"
"""
LOGIN = r"""
set -eu
url=$1; jar=$(mktemp); page=$(mktemp)
curl -sk -c "$jar" -b "$jar" -o "$page" "$url/user/login"
token=$(sed -n 's/.*name="csrfmiddlewaretoken" value="\([^"]*\)".*/\1/p' "$page" | head -1)
curl -sk -c "$jar" -b "$jar" -e "$url/user/login" --data-urlencode "csrfmiddlewaretoken=$token" \
  --data-urlencode "username=$2" --data-urlencode "password=$3" \
  -o /dev/null -w "login %{http_code} %{redirect_url}\n" "$url/user/login"
curl -sk -o /dev/null -w "anonymous %{http_code}\n" "$url/user/user-profile/"
curl -sk -b "$jar" -o "$page" -w "profile %{http_code}\n" "$url/user/user-profile/"
grep -c "$2" "$page" | sed 's/^/mentions /' || true
rm -f "$jar" "$page"
"""


@dataclass
class Booted:
    mode: str
    name: str
    box: Sandbox
    config: str
    uid: int
    gid: int
    started: dict[str, object]


@pytest.fixture(scope="module", params=["bridge", "override"])
def booted(request: pytest.FixtureRequest, testhost: TestHost,
           coldfront_image: str) -> Iterator[Booted]:
    """One instance per mode. Override mode also uses non-default ids (re-id at boot);
    bridge mode finds root-owned data from an earlier version, to be handed over."""
    mode = request.param
    box = Sandbox.create(net=9 if mode == "bridge" else 10)
    name = f"cfsec{mode[:4]}"
    if mode == "bridge":
        uid = gid = 8801
        body = ""
        legacy = testhost.path(f"{STATE_ROOT}/{name}/data/legacy")
        legacy.mkdir(parents=True, exist_ok=True)
        (legacy / "old.txt").write_text("from an earlier cf-launch, owned by root")
    else:
        uid, gid = 8802, 8803
        body = (f'hooks = ["override"]\n[hook.override]\nnetns_path = "/run/netns/{box.host}"\n'
                f"[security]\nuid = {uid}\ngid = {gid}\n")
    config = instance_config(testhost, name, coldfront_image, body)
    # ColdFront's session cookie is Secure: the site's certificate, so a login can work.
    certs = f"{STATE_ROOT}/{name}/letsencrypt"
    self_signed_certificate(testhost, coldfront_image, certs)
    try:
        started = json.loads(testhost.cf(["start", "--json"], config, box.host).stdout)
        yield Booted(mode, name, box, config, uid, gid, started)
    finally:
        testhost.cf(["stop"], config, box.host, check=False)
        testhost.run(["rm", "-rf", f"{STATE_ROOT}/{name}"])
        box.destroy()


def inside(host: TestHost, name: str, script: str, check: bool = True) -> str:
    """A shell script run by the administrator (`apptainer exec instance://`)."""
    return host.run(["apptainer", "exec", f"instance://{name}", "sh", "-c", script],
                    check=check).stdout


def results(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"^(\w+) (\d+)$", text, re.M)}


def test_boots_running_and_pid1_bounding_set(testhost: TestHost, booted: Booted) -> None:
    assert booted.started["ready"] is True
    assert booted.started["system_state"] == "running", booted.started["failed_units"]
    capbnd = int(inside(testhost, booted.name, "grep CapBnd /proc/1/status").split()[1], 16)
    for cap in ("CAP_SYS_MODULE", "CAP_SYS_TIME", "CAP_SYS_PTRACE", "CAP_MKNOD"):
        assert not capbnd & (1 << CAP[cap]), f"PID 1 keeps {cap}: {capbnd:016x}"
    assert capbnd & (1 << CAP["CAP_SYS_ADMIN"]), "PID 1 keeps CAP_SYS_ADMIN for sandboxing"
    net_admin = bool(capbnd & (1 << CAP["CAP_NET_ADMIN"]))
    assert net_admin is (booted.mode == "bridge"), "both drop-ins apply (ANDed ~ lists)"


def test_exposure_scores(testhost: TestHost, booted: Booted) -> None:
    out = inside(testhost, booted.name, "systemd-analyze security --no-pager "
                 + " ".join(LIMITS) + " | grep 'Overall exposure'")
    scores = {u: float(s) for u, s in re.findall(r"level for (\S+): ([0-9.]+)", out)}
    assert set(scores) == set(LIMITS), out
    for unit, limit in LIMITS.items():
        assert scores[unit] <= limit, f"{unit}: {scores[unit]} > {limit}"
    status = json.loads(testhost.cf(["status", "--json"], booted.config, booted.box.host).stdout)
    assert status["security"]["exposure"] == scores
    assert status["security"]["gunicorn_as_root"] is False
    assert status["security"]["gunicorn_users"] == ["coldfront"]


def test_nothing_of_coldfront_runs_as_root(testhost: TestHost, booted: Booted) -> None:
    ps = inside(testhost, booted.name, "ps -eo user:32=,args=")
    coldfront = [line.split(None, 1) for line in ps.splitlines() if "/srv/coldfront" in line]
    assert len(coldfront) >= 3, ps  # the gunicorn master and two workers
    assert {user for user, _args in coldfront} == {"coldfront"}, ps
    workers = [line.split()[0] for line in ps.splitlines() if "nginx: worker" in line]
    assert workers and "root" not in workers, ps
    ids = inside(testhost, booted.name, "id -u coldfront; id -g coldfront").split()
    assert ids == [str(booted.uid), str(booted.gid)]


def test_gunicorn_process_is_confined(testhost: TestHost, booted: Booted) -> None:
    status = inside(testhost, booted.name, "main=$(systemctl show -p MainPID --value "
                    "coldfront-gunicorn); for p in $main $(pgrep -P $main); do "
                    "cat /proc/$p/status; echo ==; done")
    procs = [p for p in status.split("==") if "CapBnd" in p]
    assert len(procs) >= 3, status
    for proc in procs:
        fields = dict(re.findall(r"^(\w+):\s+(.*)$", proc, re.M))
        assert fields["CapBnd"] == "0000000000000000" and fields["CapEff"] == "0000000000000000"
        assert fields["NoNewPrivs"] == "1" and fields["Seccomp"] == "2"
        assert fields["Uid"].split() == [str(booted.uid)] * 4


def test_files_have_narrow_owners_and_modes(testhost: TestHost, booted: Booted) -> None:
    state = testhost.path(f"{STATE_ROOT}/{booted.name}")
    env = (state / "coldfront.env").stat()
    assert (env.st_uid, env.st_mode & 0o777) == (0, 0o600), "the secret stays root 0600"
    data = (state / "data").stat()
    assert (data.st_uid, data.st_gid, data.st_mode & 0o777) == (booted.uid, booted.gid, 0o700)
    for path in (state / "data").rglob("*"):
        assert (path.stat().st_uid, path.stat().st_gid) == (booted.uid, booted.gid), path
    if booted.mode == "bridge":
        assert (state / "data/legacy/old.txt").stat().st_uid == booted.uid
    run = inside(testhost, booted.name, "stat -c '%U:%G %a' /run/coldfront "
                 "/run/coldfront/gunicorn.sock")
    assert run.split("\n")[:2] == ["coldfront:coldfront 750", "coldfront:coldfront 770"]


def test_attacks_fail_in_gunicorns_context_while_coldfront_serves(
        testhost: TestHost, booted: Booted) -> None:
    admin = results(inside(testhost, booted.name, PROBES))
    # The administrator (apptainer exec) keeps full capabilities on purpose, and the probes
    # can tell: none of these was refused to root outside the sandbox.
    assert admin["module_errno"] != EPERM and admin["write_etc"] == 0
    assert admin["read_root"] == 0 and admin["mknod"] == 0 and admin["mount"] == 0
    sandboxed = results(testhost.run(
        ["apptainer", "exec", f"instance://{booted.name}", "coldfront-sandboxed", "/bin/sh",
         "-c", PROBES]).stdout)
    assert sandboxed["module_errno"] == EPERM, "finit_module refused (seccomp, no caps)"
    for probe in ("mknod", "mount", "write_etc", "read_root", "set_link", "read_env_file"):
        assert sandboxed[probe] != 0, f"{probe} succeeded in gunicorn's context"
    assert "mtu 65536" in testhost.run(["ip", "link", "show", "lo"], netns=booted.box.host).stdout

    made = testhost.run(["apptainer", "exec", f"instance://{booted.name}", "coldfront-manage",
                         "shell", "-c", "from django.contrib.auth.models import User; "
                         "User.objects.create_user('mallory', password='e2e-only-pw'); "
                         "print('created', User.objects.count())"])
    assert "created" in made.stdout
    url = f"https://{booted.box.host_addr}"
    login = testhost.run(["sh", "-c", LOGIN, "login", url, "mallory", "e2e-only-pw"],
                         netns=booted.box.host).stdout
    assert f"login 302 {url}/" in login, login
    assert "anonymous 302" in login, "the profile page needs a login"
    assert "profile 200" in login and "mentions 0" not in login, login


def test_doctor_reports_a_confined_instance(testhost: TestHost, booted: Booted) -> None:
    doctor = testhost.cf(["doctor", "--json"], booted.config, booted.box.host, check=False)
    report = json.loads(doctor.stdout)
    if booted.mode == "bridge":  # override: ports 80/443 are busy, by this very instance
        assert report["ok"] is True, doctor.stdout
    assert not [p for p in report["problems"] if p["check"].startswith("security")]


def test_login_page_from_outside(booted: Booted) -> None:
    code, body = booted.box.client_get(f"http://{booted.box.host_addr}/user/login")
    assert code == 200 and "ColdFront" in body
