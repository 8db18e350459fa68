"""ColdFront for production (issue 16), with the real Apptainer, ColdFront, systemd, nginx,
Redis and django-q2: one boot in `bridge` mode with every [coldfront] setting a site would
give, and every assertion sharing it; then site TLS refused before start, without a boot."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.host.harness import WORK, Sandbox, TestHost
from tests.integration.conftest import STATE_ROOT, instance_config
from tests.jsonschemas import valid

pytestmark = pytest.mark.integration

NAME = "prod"
CENTER = "Example Research Computing"
# Secrets, each only in a file: the test greps for them everywhere cf-launch speaks.
MAIL_SECRET = "mail-pw-7f3a9c1e-never-shown"
TOKEN_SECRET = "slurm-token-0d5b2e88-never-shown"
ADMIN_PASSWORD = "admin-pw-c4e1f0aa-never-shown"
# systemd's EnvironmentFile= and django-environ both read this back unchanged.
ODD_VALUE = 'a$b"c`d\\e f'
TLS_DIR = f"{WORK}/prod-tls"
LOGIN = r"""
set -eu
url=$1; ca=$2; jar=$(mktemp); page=$(mktemp)
curl -s --cacert "$ca" -c "$jar" -b "$jar" -o "$page" "$url/user/login"
token=$(sed -n 's/.*name="csrfmiddlewaretoken" value="\([^"]*\)".*/\1/p' "$page" | head -1)
echo "token ${#token}"
curl -s --cacert "$ca" -c "$jar" -b "$jar" -e "$url/user/login" \
  --data-urlencode "csrfmiddlewaretoken=$token" --data-urlencode "username=$3" \
  --data-urlencode "password@$4" -o /dev/null -w "login %{http_code} %{redirect_url}\n" \
  "$url/user/login"
curl -s --cacert "$ca" -b "$jar" -o /dev/null -w "home %{http_code}\n" "$url/"
curl -s --cacert "$ca" -b "$jar" -o "$page" -w "profile %{http_code}\n" "$url/user/user-profile/"
grep -c "$3" "$page" | sed 's/^/mentions /' || true
rm -f "$jar" "$page"
"""
CA_CONF = """[ca]
default_ca = own
[own]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = any
[any]
commonName = supplied
"""


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True)


def make_pki(folder: Path, address: str) -> None:
    """A CA; a server certificate for ``address`` signed by it; an expired one; a key that
    belongs to neither."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "rsa:2048", "-nodes"]
    openssl("req", "-x509", *key, "-days", "2", "-subj", "/CN=cf-launch test CA",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=folder)
    (folder / "san.ext").write_text(f"subjectAltName=IP:{address}\n")
    openssl("req", *key, "-subj", f"/CN={address}", "-keyout", "site.key", "-out", "site.csr",
            cwd=folder)
    openssl("x509", "-req", "-in", "site.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "site.crt",
            cwd=folder)
    (folder / "index.txt").write_text("")
    (folder / "serial").write_text("1000\n")
    (folder / "ca.cnf").write_text(CA_CONF.format(dir=folder))
    openssl("req", *key, "-subj", "/CN=old", "-keyout", "old.key", "-out", "old.csr",
            cwd=folder)
    openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.crt", "-keyfile", "ca.key",
            "-in", "old.csr", "-out", "old.crt", "-notext", "-startdate", "20200101000000Z",
            "-enddate", "20200102000000Z", cwd=folder)
    openssl("req", *key, "-subj", "/CN=other", "-keyout", "other.key", "-out", "other.csr",
            cwd=folder)
    for path in folder.iterdir():
        path.chmod(0o600)


@dataclass
class Prod:
    box: Sandbox
    config: str
    started: dict[str, object]
    start_output: str
    ca: str


def body(address: str, cert: str = "site.crt", key: str = "site.key") -> str:
    return f"""
        [coldfront]
        center_name = "{CENTER}"
        allowed_hosts = ["{address}"]
        time_zone = "UTC"
        [coldfront.email]
        enabled = false
        host = "smtp.invalid"
        port = 587
        sender = "coldfront@example.org"
        user = "coldfront"
        password_file = "{TLS_DIR}/mail.secret"
        [coldfront.extra_env]
        CF_LAUNCH_ODD = '{ODD_VALUE}'
        [coldfront.extra_env_files]
        SLURM_TOKEN_FOR_TEST = "{TLS_DIR}/token.secret"
        [coldfront.tls]
        certificate = "{TLS_DIR}/{cert}"
        key = "{TLS_DIR}/{key}"
        hsts = true
    """


@pytest.fixture(scope="module")
def prod(testhost: TestHost, coldfront_image: str) -> Iterator[Prod]:
    box = Sandbox.create(net=21)
    pki = testhost.path(TLS_DIR)
    make_pki(pki, box.host_addr)
    (pki / "mail.secret").write_text(MAIL_SECRET + "\n")
    (pki / "token.secret").write_text(TOKEN_SECRET + "\n")
    (pki / "other.secret").write_text("other-" + MAIL_SECRET + "\n")
    (pki / "admin.pw").write_text(ADMIN_PASSWORD)  # no line break: curl posts it as it is
    config = instance_config(testhost, NAME, coldfront_image, body(box.host_addr))
    try:
        result = testhost.cf(["start", "--json"], config, box.host)
        yield Prod(box, config, json.loads(result.stdout), result.stdout + result.stderr,
                   f"{TLS_DIR}/ca.crt")
    finally:
        testhost.cf(["stop"], config, box.host, check=False)
        testhost.run(["rm", "-rf", f"{STATE_ROOT}/{NAME}", TLS_DIR])
        box.destroy()


def curl(host: TestHost, prod: Prod, *args: str) -> str:
    """curl from the sandbox host's namespace: `-w` status line last."""
    return host.run(["curl", "-s", "-o", "/dev/null", "--cacert", prod.ca, *args],
                    netns=prod.box.host, check=False).stdout


def manage(host: TestHost, prod: Prod, *args: str, check: bool = True
           ) -> subprocess.CompletedProcess[str]:
    return host.cf(["manage", "--", *args], prod.config, prod.box.host, check=check)


def test_ready_through_the_redirect_with_an_allowed_host(testhost: TestHost, prod: Prod) -> None:
    """Port 80 only redirects and Django accepts one host: `start` is ready anyway."""
    assert prod.started["ready"] is True and prod.started["system_state"] == "running"
    status = json.loads(testhost.cf(["status", "--json"], prod.config, prod.box.host).stdout)
    assert status["http_status"] == 301, status
    exposure = status["security"]["exposure"]
    assert exposure["coldfront-qcluster.service"] <= 2.5, exposure
    assert exposure["coldfront-redis.service"] <= 2.5, exposure


def test_center_name_on_the_login_page_over_verified_tls(testhost: TestHost, prod: Prod) -> None:
    page = testhost.run(["curl", "-s", "--cacert", prod.ca,
                         f"https://{prod.box.host_addr}/user/login"],
                        netns=prod.box.host).stdout
    assert CENTER in page and "csrfmiddlewaretoken" in page


def test_allowed_hosts_refuses_a_foreign_host_header(testhost: TestHost, prod: Prod) -> None:
    url = f"https://{prod.box.host_addr}/user/login"
    assert curl(testhost, prod, "-w", "%{http_code}", url) == "200"
    assert curl(testhost, prod, "-w", "%{http_code}", "-H", "Host: evil.example", url) == "400"


def test_port_80_redirects_and_tls_is_modern(testhost: TestHost, prod: Prod) -> None:
    out = curl(testhost, prod, "-w", "%{http_code} %{redirect_url}",
               f"http://{prod.box.host_addr}/user/login")
    assert out == f"301 https://{prod.box.host_addr}/user/login", out
    headers = testhost.run(["curl", "-sI", "--cacert", prod.ca,
                            f"https://{prod.box.host_addr}/user/login"],
                           netns=prod.box.host).stdout
    assert "strict-transport-security: max-age=31536000" in headers.lower(), headers
    old = curl(testhost, prod, "--tlsv1.1", "--tls-max", "1.1", "-w", "%{http_code}",
               f"https://{prod.box.host_addr}/user/login")
    assert old in ("", "000"), "TLS 1.1 is refused"


def test_env_reaches_coldfront_exactly(testhost: TestHost, prod: Prod) -> None:
    """What systemd hands the service: the odd value unchanged, the secrets present (told
    by their digests, so that no secret is ever on a command line or in the journal)."""
    digest = hashlib.sha256(MAIL_SECRET.encode()).hexdigest()
    out = manage(testhost, prod, "shell", "-v", "0", "-c",
                 "import hashlib, os; from django.conf import settings as s; "
                 "print('odd', os.environ['CF_LAUNCH_ODD']); "
                 "print('mail', hashlib.sha256(s.EMAIL_HOST_PASSWORD.encode()).hexdigest()); "
                 "print('hosts', s.ALLOWED_HOSTS, s.TIME_ZONE, s.DEBUG); "
                 "print('uid', os.getuid())").stdout
    assert f"odd {ODD_VALUE}\n" in out, out
    assert f"mail {digest}" in out
    assert f"hosts ['{prod.box.host_addr}'] UTC False" in out
    assert "uid 8801" in out, "manage runs as the service account"


def test_admin_create_is_idempotent_and_logs_in(testhost: TestHost, prod: Prod) -> None:
    args = ["admin", "create", "--username", "siteadmin", "--email", "admin@example.org",
            "--password-file", f"{TLS_DIR}/admin.pw", "--json"]
    made = valid(json.loads(testhost.cf(args, prod.config, prod.box.host).stdout),
                 "admin-create")
    assert made == {"username": "siteadmin", "created": True, "superuser": True}
    again = testhost.cf(args, prod.config, prod.box.host, check=False)
    assert again.returncode == 1 and "user siteadmin already exists" in again.stderr
    assert "--exist-ok" in again.stderr
    ok = json.loads(testhost.cf([*args, "--exist-ok"], prod.config, prod.box.host).stdout)
    assert ok == {"username": "siteadmin", "created": False, "superuser": True}
    url = f"https://{prod.box.host_addr}"
    login = testhost.run(["sh", "-c", LOGIN, "login", url, prod.ca, "siteadmin",
                          f"{TLS_DIR}/admin.pw"], netns=prod.box.host).stdout
    assert "token 64" in login, login
    assert f"login 302 {url}/" in login, login
    assert "home 200" in login and "profile 200" in login, login
    assert "mentions 0" not in login, login


def test_qcluster_runs_a_scheduled_task(testhost: TestHost, prod: Prod) -> None:
    manage(testhost, prod, "shell", "-v", "0", "-c",
           "from django.utils import timezone; from django_q.models import Schedule; "
           "Schedule.objects.create(name='cf-launch-test', func='math.copysign', "
           "args='7,-1', schedule_type=Schedule.ONCE, next_run=timezone.now())")
    probe = ("import time; from django_q.models import Success\n"
             "for _ in range(60):\n"
             "    done = Success.objects.filter(func='math.copysign').first()\n"
             "    if done: print('result', done.result, done.success); break\n"
             "    time.sleep(2)\n"
             "else: print('never ran')")
    out = manage(testhost, prod, "shell", "-v", "0", "-c", probe).stdout
    assert "result -7.0 True" in out, out + testhost.cf(
        ["logs", "-n", "60"], prod.config, prod.box.host, check=False).stdout


def test_secrets_never_shown(testhost: TestHost, prod: Prod) -> None:
    state = testhost.path(f"{STATE_ROOT}/{NAME}/coldfront.env").read_text()
    assert MAIL_SECRET in state and TOKEN_SECRET in state, "the secrets are really used"
    plan = testhost.cf(["plan", "--json"], prod.config, prod.box.host, check=False)
    status = testhost.cf(["status", "--json"], prod.config, prod.box.host)
    logs = testhost.cf(["logs", "-n", "5000"], prod.config, prod.box.host)
    # An error about a secret's file: the message names the file, never its content.
    (testhost.path(TLS_DIR) / "bad.secret").write_text(MAIL_SECRET + "\nsecond line\n")
    bad = testhost.write(f"{WORK}/prod-bad.toml",
                         testhost.path(prod.config).read_text().replace(
                             "mail.secret", "bad.secret"))
    refused = testhost.cf(["plan"], bad, prod.box.host, check=False)
    assert refused.returncode == 2 and "line break" in refused.stderr
    apptainer_logs = testhost.run(["sh", "-c", "cat /root/.apptainer/instances/logs/*/root/"
                                   f"{NAME}.*"], check=False).stdout
    for where, text in {"plan": plan.stdout + plan.stderr,
                        "status": status.stdout + status.stderr,
                        "journal": logs.stdout + logs.stderr, "start": prod.start_output,
                        "error": refused.stdout + refused.stderr,
                        "apptainer logs": apptainer_logs}.items():
        for secret in (MAIL_SECRET, TOKEN_SECRET, ADMIN_PASSWORD):
            assert secret not in text, f"{secret} appears in {where}"
    assert json.loads(plan.stdout)["env"] == [], "same settings: the env file stays as it is"
    other = testhost.write(f"{WORK}/prod-other.toml", testhost.path(prod.config).read_text()
                           .replace("mail.secret", "other.secret"))
    changed = testhost.cf(["plan"], other, prod.box.host, check=False)
    assert "- EMAIL_HOST_PASSWORD: changed *** -> ***" in changed.stdout, changed.stdout
    assert "other-" + MAIL_SECRET not in changed.stdout + changed.stderr


def test_restart_is_prompt_and_keeps_the_key_and_the_data(testhost: TestHost,
                                                          prod: Prod) -> None:
    """Every unit stops well within `apptainer instance stop`'s 30 s (qcluster included);
    the env file is rendered again with the same SECRET_KEY; the admin is still there."""
    env_file = testhost.path(f"{STATE_ROOT}/{NAME}/coldfront.env")
    key = [line for line in env_file.read_text().splitlines() if line.startswith("SECRET_KEY=")]
    stopped = json.loads(testhost.cf(["stop", "--json"], prod.config, prod.box.host).stdout)
    assert stopped["timings"]["apptainer_stop"] < 20, stopped
    started = json.loads(testhost.cf(["start", "--json"], prod.config, prod.box.host).stdout)
    assert started["ready"] is True and started["system_state"] == "running"
    assert [line for line in env_file.read_text().splitlines()
            if line.startswith("SECRET_KEY=")] == key
    out = manage(testhost, prod, "shell", "-v", "0", "-c",
                 "from django.contrib.auth.models import User; "
                 "print('admins', User.objects.filter(is_superuser=True).count())").stdout
    assert "admins 1" in out, out


def test_bad_site_tls_refused_before_start(testhost: TestHost, coldfront_image: str,
                                           prod: Prod) -> None:
    """An expired certificate, and a key of another certificate: refused with the reason,
    before anything changes (no instance, no host changes)."""
    for name, cert, key, words in (("prodold", "old.crt", "old.key", "expired on 2020-01-02"),
                                   ("prodkey", "site.crt", "other.key", "does not belong")):
        config = instance_config(testhost, name, coldfront_image, body(prod.box.host_addr,
                                                                       cert, key))
        result = testhost.cf(["start"], config, prod.box.host, check=False)
        assert result.returncode == 3, result.stderr
        assert words in result.stderr, result.stderr
        listed = testhost.run(["apptainer", "instance", "list", "--json"]).stdout
        assert f'"{name}"' not in listed
        journal = testhost.path(f"{STATE_ROOT}/{name}/journal.jsonl")
        assert not journal.exists() or not journal.read_text().strip()
        testhost.run(["rm", "-rf", f"{STATE_ROOT}/{name}"])
