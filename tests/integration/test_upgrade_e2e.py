"""`cf-launch upgrade` with the real Apptainer, ColdFront from PyPI and a bridge-mode
instance in its own sandbox (issue 16, item 6).

The site's settings name no image: cf-launch builds it from [build], with a site layer of
the test's own on top (so the image this test boots is published under its own name and
never replaces the one the other tests boot). The ColdFront 1.1.10 layer is the one the
session's ``coldfront_image`` fixture built (same key), so only the 1.1.9 layer, the site
layers and the failing layer are built here."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.host.harness import WORK, Sandbox, TestHost, network_snapshot
from tests.integration.conftest import CACHE_DIR, COLDFRONT_VERSION, STATE_ROOT
from tests.jsonschemas import valid

pytestmark = pytest.mark.integration

NAME = "upgr"
OLD = "1.1.9"
STATE = f"{STATE_ROOT}/{NAME}"
SITE_LAYER = f"{WORK}/upgrade/site.def"
MARKER = "written-by-failed-upgrade"
MARKER_CODE = f"from django.contrib.auth.models import User; User.objects.create_user('{MARKER}')"

SITE_V1 = """\
# The site's own layer (here: a label), as sites put their settings on top of ColdFront.
Bootstrap: localimage
From: {{ parent }}

%arguments
    parent=coldfront.sif

%labels
    org.example.site upgrade-test
"""

# The site layer, edited badly: an nginx file nginx refuses (ColdFront never answers:
# nginx.service fails, which the readiness wait sees at once), and a unit that writes a user
# into the database once gunicorn's migrations have run, so the rollback has data to take
# back.
SITE_BROKEN = SITE_V1 + textwrap.dedent(f"""
    %post
        echo "this is not nginx;" >/etc/nginx/conf.d/site-typo.conf
        install -d /etc/systemd/system/upgrade-marker.service.d
        ln -s /etc/cf-launch/coldfront-sandbox.conf \\
            /etc/systemd/system/upgrade-marker.service.d/cf-launch-sandbox.conf
        cat >/etc/systemd/system/upgrade-marker.service <<'UNIT'
    [Unit]
    After=coldfront-gunicorn.service
    Requires=coldfront-gunicorn.service
    [Service]
    Type=oneshot
    WorkingDirectory=/srv/coldfront
    ExecStart=/srv/coldfront/venv/bin/coldfront shell -c "{MARKER_CODE}"
    [Install]
    WantedBy=multi-user.target
    UNIT
        systemctl enable upgrade-marker.service
    """)


@dataclass
class Site:
    box: Sandbox
    config: str


def write_config(host: TestHost, pinned: str | None) -> str:
    version = f'coldfront_version = "{pinned}"\n' if pinned else ""
    file = f"{NAME}-{pinned or 'newest'}.toml"
    return host.write(f"{WORK}/upgrade/{file}", textwrap.dedent(f"""\
        name = "{NAME}"
        state_root = "{STATE_ROOT}"
        ready_timeout = 240

        [build]
        layers = ["debian-base", "coldfront", "{SITE_LAYER}"]
        fakeroot = true
        ca_bundle = "/etc/cf-testhost-ca.crt"
        cache_dir = "{CACHE_DIR}"
        """) + version)


@pytest.fixture(scope="module")
def site(testhost: TestHost, coldfront_image: str) -> Iterator[Site]:
    del coldfront_image  # built first: its ColdFront layer is the upgrade's target
    box = Sandbox.create(net=23)
    testhost.run(["rm", "-rf", STATE, f"{WORK}/upgrade"])
    testhost.write(SITE_LAYER, SITE_V1)
    config = write_config(testhost, OLD)
    try:
        yield Site(box, config)
    finally:
        testhost.cf(["stop"], config, box.host, check=False)
        testhost.run(["rm", "-rf", STATE, f"{WORK}/upgrade",
                      f"{CACHE_DIR}/images/site.sif"])
        box.destroy()


def python_in(host: TestHost, code: str) -> str:
    """Python in ColdFront's shell, as the service account (the last line it prints)."""
    out = host.run(["apptainer", "exec", f"instance://{NAME}", "coldfront-manage", "shell",
                    "-c", "from django.contrib.auth.models import User\n" + code]).stdout
    return out.strip().splitlines()[-1] if out.strip() else ""


def users(host: TestHost) -> set[str]:
    return set(json.loads(python_in(
        host, "import json; print(json.dumps([u.username for u in User.objects.all()]))")))


def version(host: TestHost) -> str:
    return python_in(host, "import importlib.metadata as m; print(m.version('coldfront'))")


def login_page(site: Site) -> int:
    return site.box.client_get(f"http://{site.box.host_addr}/user/login")[0]


def release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3])


def pin(host: TestHost) -> dict[str, object]:
    data: dict[str, object] = json.loads(host.path(f"{STATE}/image.json").read_text())
    return data


def test_upgrade_to_the_next_version_then_a_failing_one_rolls_back(testhost: TestHost,
                                                                    site: Site) -> None:
    before_start = network_snapshot(site.box.host)
    built = json.loads(testhost.cf(["build", "--json"], site.config, timeout=1800).stdout)
    assert built["image"] == f"{CACHE_DIR}/images/site.sif"
    started = json.loads(testhost.cf(["start", "--json"], site.config, site.box.host).stdout)
    assert started["ready"] is True
    assert version(testhost) == OLD
    python_in(testhost, "User.objects.create_user('before-upgrade')")

    # 0. `upgrade --check` asks the package index (PyPI, through the image's pip) and
    # changes nothing. It starts nothing, so it runs in this machine's namespace: the
    # sandbox has no way out to PyPI (the upgrades below need none: their ColdFront layers
    # are cached).
    checked = json.loads(testhost.cf(["upgrade", "--check", "--json"],
                                     write_config(testhost, None)).stdout)
    newest = checked["to"]["coldfront_version"]
    assert checked["from"]["coldfront_version"] == OLD and checked["available"] is True
    assert release(newest) >= release(COLDFRONT_VERSION), newest
    assert not testhost.path(f"{STATE}/image.json").exists()

    # 1. To the next version: built, backed up, booted, migrated, pinned.
    result = testhost.cf(["upgrade", "--coldfront-version", COLDFRONT_VERSION, "--json"],
                         site.config, site.box.host, timeout=1800)
    done = valid(json.loads(result.stdout), "upgrade")
    assert done["upgraded"] is True, result.stderr
    assert (done["from"]["coldfront_version"], done["to"]["coldfront_version"]) == \
        (OLD, COLDFRONT_VERSION)
    assert "copying data/coldfront.db" in result.stderr, "the backup, with progress"
    assert [e["event"] for e in done["layers"] if e["layer"] != "site"] == \
        ["cached", "cached"], "only the site layer is built: ColdFront 1.1.10's is the session's"
    assert version(testhost) == COLDFRONT_VERSION
    assert "before-upgrade" in users(testhost)
    unapplied = python_in(testhost, "from django.db.migrations.executor import "
                          "MigrationExecutor; from django.db import connection; "
                          "print(len(MigrationExecutor(connection).migration_plan("
                          "MigrationExecutor(connection).loader.graph.leaf_nodes())))")
    assert unapplied == "0", "gunicorn's ExecStartPre migrated the database at boot"
    assert login_page(site) == 200
    upgraded = pin(testhost)
    assert upgraded["current"] == done["to"] and upgraded["previous"] == done["from"]
    assert upgraded["configured"] == f"{CACHE_DIR}/images/site.sif"
    backup = testhost.path(str(done["backup"]))
    assert backup.stat().st_mode & 0o777 == 0o600
    old_image = testhost.path(done["from"]["image"])
    assert old_image.is_file(), "the previous image is kept until the next upgrade"
    status = json.loads(testhost.cf(["status", "--json"], site.config, site.box.host).stdout)
    assert status["instance"]["image"] == done["to"]["image"]
    assert status["upgrade"]["previous"] == done["from"]
    shown = testhost.cf(["status"], site.config, site.box.host).stdout
    assert f"ColdFront {COLDFRONT_VERSION} since the upgrade of" in shown

    rebuilt = testhost.cf(["build", "--json"], site.config, timeout=1800)
    assert json.loads(rebuilt.stdout)["held_back"] == {NAME: done["to"]["image"]}
    assert f"`cf-launch upgrade --name {NAME}` moves it" in rebuilt.stderr

    # 2. Back to the older version is refused, with nothing changed.
    pid = status["instance"]["pid"]
    back = testhost.cf(["upgrade", "--coldfront-version", OLD], site.config, site.box.host,
                       check=False, timeout=1800)
    assert back.returncode == 2, back.stderr
    assert "never goes back" in back.stderr and "Traceback" not in back.stderr
    again = json.loads(testhost.cf(["status", "--json"], site.config, site.box.host).stdout)
    assert again["instance"]["pid"] == pid

    # 3. A site layer that breaks ColdFront: the new image never answers; rolled back.
    python_in(testhost, "User.objects.create_user('between-upgrades')")
    testhost.write(SITE_LAYER, SITE_BROKEN)
    failed = testhost.cf(["upgrade", "--coldfront-version", COLDFRONT_VERSION,
                          "--ready-timeout", "200", "--json"], site.config, site.box.host,
                         check=False, timeout=1800)
    assert failed.returncode == 13, failed.stderr
    last = failed.stderr.strip().splitlines()
    assert any("rolled back" in line and "nginx.service failed" in line for line in last), \
        failed.stderr
    assert "not ready after 200s" not in failed.stderr, "the failed unit ends the wait"
    assert "Traceback" not in failed.stderr
    assert login_page(site) == 200
    assert version(testhost) == COLDFRONT_VERSION
    after = users(testhost)
    assert {"before-upgrade", "between-upgrades"} <= after and MARKER not in after
    rolled = json.loads(testhost.cf(["status", "--json"], site.config, site.box.host).stdout)
    assert rolled["instance"]["image"] == done["to"]["image"]
    assert pin(testhost) == upgraded, "a failed upgrade leaves the pin as it was"
    assert old_image.is_file()
    # The data the failing image wrote is kept beside the restored data, not lost.
    touched = [p for p in testhost.path(STATE).iterdir() if p.name.startswith("data.replaced-")]
    assert len(touched) == 1
    con = sqlite3.connect(f"file:{touched[0] / 'coldfront.db'}?mode=ro", uri=True)
    try:
        kept = {row[0] for row in con.execute("SELECT username FROM auth_user")}
    finally:
        con.close()
    assert MARKER in kept, "the failing image did write (the rollback had data to undo)"

    # 4. The admin goes back by hand: the image and the data from before the upgrade; what
    # was written since (between-upgrades) is kept beside it, not lost.
    back = testhost.cf(["upgrade", "--rollback", "--json"], site.config, site.box.host,
                       timeout=1800)
    undone = json.loads(back.stdout)
    assert undone["rolled_back"] is True and undone["to"] == done["from"], back.stderr
    assert version(testhost) == OLD and login_page(site) == 200
    now = users(testhost)
    assert "before-upgrade" in now and "between-upgrades" not in now
    aside = testhost.path(undone["kept"]["data"])
    con = sqlite3.connect(f"file:{aside / 'coldfront.db'}?mode=ro", uri=True)
    try:
        assert ("between-upgrades",) in con.execute("SELECT username FROM auth_user").fetchall()
    finally:
        con.close()
    assert pin(testhost)["current"] == done["from"] and pin(testhost)["previous"] is None

    testhost.cf(["stop"], site.config, site.box.host)
    assert network_snapshot(site.box.host) == before_start
    assert not Path(testhost.path(f"{STATE}/launch.json")).exists()
