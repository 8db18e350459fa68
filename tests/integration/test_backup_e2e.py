"""Backup and restore with the real Apptainer and ColdFront (issue 14, items 4-5).

One ColdFront boot for the module (instance ``bkup``, bridge mode, in its own sandbox);
restores that need no running instance go into a second, never-started instance
(``bkupcopy``), so only the user round trip stops and starts ``bkup`` again."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.host.harness import WORK, Sandbox, TestHost
from tests.integration.conftest import STATE_ROOT, instance_config, self_signed_certificate
from tests.jsonschemas import valid

pytestmark = pytest.mark.integration

NAME, COPY = "bkup", "bkupcopy"
WRITES = 200
ADMIN, PASSWORD = "bkadmin", "e2e-only-pw"

# 200 concurrent Django admin "add group" POSTs from the client namespace, after one login
# over HTTPS (the session cookie is Secure). Each acknowledged write (HTTP 302 back to the
# list) appends its group's name to ACKS, flushed, only after the response arrived. About a
# third get HTTP 500 "database is locked" from ColdFront itself (Django's deferred SQLite
# transactions, two gunicorn workers), with or without a backup running (a control run
# without one: 72 of 200); those were never acknowledged, so they need not be restored.
LOAD = r"""
import re, ssl, sys, threading, urllib.error, urllib.parse, urllib.request
from http.cookiejar import CookieJar
base, acks_path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
jar = CookieJar()

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

def opener():
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx),
                                       urllib.request.HTTPCookieProcessor(jar), NoRedirect())

def call(path, data=None, referer=None):
    req = urllib.request.Request(base + path, data=urllib.parse.urlencode(data).encode()
                                 if data is not None else None)
    if referer:
        req.add_header("Referer", base + referer)
    try:
        with opener().open(req, timeout=120) as resp:
            return resp.status, resp.headers.get("Location", ""), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Location", ""), ""

def token(page):
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

_, _, page = call("/user/login")
code, where, _ = call("/user/login", {"csrfmiddlewaretoken": token(page), "username": sys.argv[4],
                      "password": sys.argv[5]}, "/user/login")
assert code == 302, ("login", code, where)
code, _, page = call("/admin/auth/group/add/")
assert code == 200, ("add page", code)
csrf = token(page)
lock = threading.Lock()
acks = open(acks_path, "a")
failed = []
start = threading.Barrier(count)

def write(i):
    name = f"bk-{i:03d}"
    start.wait()
    code, where, _ = call("/admin/auth/group/add/", {"csrfmiddlewaretoken": csrf, "name": name,
                          "_save": "Save"}, "/admin/auth/group/add/")
    with lock:
        if code == 302 and where.endswith("/admin/auth/group/"):
            acks.write(name + "\n"); acks.flush()
        else:
            failed.append((name, code))

threads = [threading.Thread(target=write, args=(i,)) for i in range(count)]
for t in threads: t.start()
for t in threads: t.join()
print({"failed": failed[:5], "failures": len(failed)})
"""


@dataclass
class Site:
    box: Sandbox
    config: str
    copy_config: str


def state(name: str) -> str:
    return f"{STATE_ROOT}/{name}"


@pytest.fixture(scope="module")
def site(testhost: TestHost, coldfront_image: str) -> Iterator[Site]:
    box = Sandbox.create(net=12)
    config = instance_config(testhost, NAME, coldfront_image)
    copy_config = instance_config(testhost, COPY, coldfront_image)
    certs = f"{state(NAME)}/letsencrypt"
    testhost.run(["rm", "-rf", state(NAME), state(COPY)])
    self_signed_certificate(testhost, coldfront_image, certs)
    try:
        started = json.loads(testhost.cf(["start", "--json"], config, box.host).stdout)
        assert started["ready"] is True
        yield Site(box, config, copy_config)
    finally:
        testhost.cf(["stop"], config, box.host, check=False)
        testhost.run(["rm", "-rf", state(NAME), state(COPY), f"{WORK}/backups-e2e"])
        box.destroy()


def manage(host: TestHost, code: str) -> str:
    """Python in ColdFront's shell, as the service account in gunicorn's sandbox."""
    out = host.run(["apptainer", "exec", f"instance://{NAME}", "coldfront-manage", "shell",
                    "-c", "from django.contrib.auth.models import User, Group\n" + code])
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def backup(host: TestHost, site: Site, output: str) -> dict[str, object]:
    host.run(["mkdir", "-p", f"{WORK}/backups-e2e"])
    result = host.cf(["backup", "--output", output, "--json"], site.config, site.box.host)
    data: dict[str, object] = json.loads(result.stdout)
    valid(data, "backup")
    assert "copying data/coldfront.db" in result.stderr, "progress for the user"
    return data


def test_backup_during_200_concurrent_writes_keeps_every_acknowledged_one(
        testhost: TestHost, site: Site, tmp_path: Path) -> None:
    manage(testhost, f"User.objects.create_superuser('{ADMIN}', password='{PASSWORD}')")
    acks = tmp_path / "acks.txt"
    acks.touch()
    load = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{site.box.client}", sys.executable, "-c", LOAD,
         f"https://{site.box.host_addr}", str(acks), str(WRITES), ADMIN, PASSWORD],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while len(acks.read_text().splitlines()) < 10:
            assert load.poll() is None, load.communicate()
            assert time.monotonic() < deadline, "no write was acknowledged in 300 s"
            time.sleep(0.05)
        text = acks.read_text()
        before = set(text[:text.rfind("\n") + 1].splitlines())  # complete lines only
        output = f"{WORK}/backups-e2e/during-load.tar.gz"
        made = backup(testhost, site, output)
        during = len(acks.read_text().splitlines())
        out, err = load.communicate(timeout=600)
    finally:
        if load.poll() is None:
            load.kill()
    assert load.returncode == 0, err
    acked = set(acks.read_text().splitlines())
    print(f"acknowledged before the backup: {len(before)}, by its end: {during}, "
          f"in all: {len(acked)}; load: {out.strip()}")
    locked = testhost.run(["apptainer", "exec", f"instance://{NAME}", "sh", "-c",
                           "journalctl -u coldfront-gunicorn --no-pager | "
                           "grep -c 'database is locked' || true"]).stdout.strip()
    print(f"ColdFront's own 'database is locked' errors (SQLite under 200 writers): {locked}")
    assert len(before) < WRITES, "the backup started while writes were still going on"
    assert len(acked) > len(before)
    manifest = made["manifest"]
    assert isinstance(manifest, dict) and manifest["online"] is True
    assert manifest["coldfront_version"] and manifest["image"]["key"]
    archive = testhost.path(output)
    assert archive.stat().st_mode & 0o777 == 0o600 and archive.stat().st_uid == 0

    restored = json.loads(testhost.cf(["restore", output, "--json"], site.copy_config,
                                      site.box.host).stdout)
    valid(restored, "restore")
    assert restored["integrity_check"] == "ok" and restored["replaced"] == {}
    db = testhost.path(f"{state(COPY)}/data/coldfront.db")
    assert (db.stat().st_uid, db.stat().st_gid) == (8801, 8801)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        groups = {row[0] for row in con.execute("SELECT name FROM auth_group")}
    finally:
        con.close()
    assert before <= groups, f"acknowledged before the backup but lost: {before - groups}"
    assert groups <= {f"bk-{i:03d}" for i in range(WRITES)}


def test_user_deleted_after_a_backup_is_back_after_restore(testhost: TestHost,
                                                          site: Site) -> None:
    manage(testhost, "User.objects.create_user('bkuser', password='e2e-only-pw')")
    output = f"{WORK}/backups-e2e/user.tar.gz"
    backup(testhost, site, output)
    assert manage(testhost, "User.objects.filter(username='bkuser').delete(); "
                  "print(User.objects.filter(username='bkuser').count())") == "0"

    refused = testhost.cf(["restore", output, "--force"], site.config, site.box.host,
                          check=False)
    assert refused.returncode == 10, refused.stderr
    assert "is running" in refused.stderr and "cf-launch stop" in refused.stderr

    testhost.cf(["stop"], site.config, site.box.host)
    offline = backup(testhost, site, f"{WORK}/backups-e2e/stopped.tar.gz")
    assert offline["manifest"]["online"] is False  # type: ignore[index]
    assert offline["manifest"]["database"]["integrity_check"] == "ok"  # type: ignore[index]
    kept = testhost.cf(["restore", output], site.config, site.box.host, check=False)
    assert kept.returncode == 12 and "--force" in kept.stderr, kept.stderr
    restored = json.loads(testhost.cf(["restore", output, "--force", "--json"], site.config,
                                      site.box.host).stdout)
    assert set(restored["replaced"]) == {"data", "letsencrypt", "coldfront.env"}
    aside = testhost.path(restored["replaced"]["data"])
    assert aside.name.startswith("data.replaced-") and (aside / "coldfront.db").is_file()
    started = json.loads(testhost.cf(["start", "--json"], site.config, site.box.host).stdout)
    assert started["ready"] is True
    assert manage(testhost, "print(User.objects.filter(username='bkuser').count())") == "1"
    code, body = site.box.client_get(f"http://{site.box.host_addr}/user/login")
    assert code == 200 and "ColdFront" in body


def tree_hash(root: Path) -> dict[str, str]:
    """Every path under ``root``: type, mode, owner, and content (or link target)."""
    found = {}
    for path in sorted([root, *root.rglob("*")]):
        info = path.lstat()
        if path.is_symlink():
            what = "link " + os.readlink(path)
        elif path.is_file():
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            what = "dir"
        found[str(path.relative_to(root))] = f"{info.st_mode:o} {info.st_uid}:{info.st_gid} " \
                                             f"{info.st_mtime_ns} {what}"
    return found


def repack(source: Path, target: Path, change: dict[str, bytes | None],
           extra: list[tarfile.TarInfo] | None = None) -> None:
    """Copy an archive, replacing members' contents (None: drop) and adding ``extra``."""
    with tarfile.open(source, "r:gz") as old, tarfile.open(target, "w:gz") as new:
        for member in old.getmembers():
            data = old.extractfile(member).read() if member.isreg() else None  # type: ignore[union-attr]
            if member.name in change:
                data = change[member.name]
                if data is None:
                    continue
                member.size = len(data)
            new.addfile(member, io.BytesIO(data) if data is not None else None)
        for member in extra or []:
            new.addfile(member, io.BytesIO(b"x" * member.size) if member.isreg() else None)


def test_damaged_archives_are_refused_and_nothing_changes(testhost: TestHost, site: Site,
                                                          tmp_path: Path) -> None:
    good = f"{WORK}/backups-e2e/good.tar.gz"
    backup(testhost, site, good)
    testhost.cf(["restore", good, "--force"], site.copy_config, site.box.host)
    source = testhost.path(good)
    with tarfile.open(source, "r:gz") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        db = tar.extractfile("data/coldfront.db").read()  # type: ignore[union-attr]
    flipped = bytearray(db)
    for offset in (1000, 5000, 9000):
        flipped[offset] ^= 0xFF
    bad_sum = json.loads(json.dumps(manifest))
    bad_sum["members"]["coldfront.env"]["sha256"] = "0" * 64
    traversal = tarfile.TarInfo("letsencrypt/../../../etc/cron.d/evil")
    traversal.size = 1
    link = tarfile.TarInfo("letsencrypt/live/site/fullchain.pem")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"

    variants = {
        "flipped.tar.gz": ({"data/coldfront.db": bytes(flipped)}, None,
                           "data/coldfront.db does not match its checksum"),
        "badsum.tar.gz": ({"manifest.json": json.dumps(bad_sum).encode()}, None,
                          "coldfront.env does not match its checksum"),
        "traversal.tar.gz": ({}, [traversal], "unsafe member"),
        "symlink.tar.gz": ({"letsencrypt/live/site/fullchain.pem": None}, [link],
                           "holds a link member"),
        "missing.tar.gz": ({"coldfront.env": None}, None, "coldfront.env is missing"),
    }
    folder = testhost.path(f"{WORK}/backups-e2e")
    for name, (change, extra, _message) in variants.items():
        repack(source, folder / name, change, extra)
    raw = bytearray(source.read_bytes())
    for offset in range(len(raw) // 2, len(raw) // 2 + 16):
        raw[offset] ^= 0x55
    (folder / "rawflip.tar.gz").write_bytes(bytes(raw))
    expected = {name: (message,) for name, (_c, _e, message) in variants.items()}
    # gzip's CRC, or first the checksum of the member the flipped bytes fall in
    expected["rawflip.tar.gz"] = ("is not a readable .tar.gz archive",
                                  "does not match its checksum")

    copy_state = testhost.path(state(COPY))
    before = tree_hash(copy_state)
    for name, messages in expected.items():
        result = testhost.cf(["restore", f"{WORK}/backups-e2e/{name}", "--force"],
                             site.copy_config, site.box.host, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 11, (name, result.stderr)
        assert "Traceback" not in result.stderr
        error = [line for line in lines if line.startswith("cf-launch: error: ")]
        assert len(error) == 1 and any(m in error[0] for m in messages), (name, result.stderr)
        assert lines[-1].startswith("hint: nothing was changed")
    assert tree_hash(copy_state) == before, "a refused restore changed the state folder"
