"""ColdFront on an external PostgreSQL: the real server (Debian's package) on a "database
host" namespace beyond the sandbox's external client, reached from a bridge-mode instance
through the host's external interface (issue: ColdFront for production)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from tests.host.database import DatabaseHost
from tests.host.harness import Sandbox, TestHost
from tests.integration.conftest import STATE_ROOT, WORK, instance_config
from tests.integration.test_bridge_e2e import coldfront_python

pytestmark = pytest.mark.integration

NAME = "cfpg"


@pytest.fixture
def database(sandbox: Sandbox) -> Iterator[DatabaseHost]:
    made = DatabaseHost.attach(sandbox)
    yield made
    made.destroy()


def test_coldfront_on_an_external_postgresql(testhost: TestHost, coldfront_image: str,
                                             sandbox: Sandbox, database: DatabaseHost) -> None:
    url_file = testhost.write(f"{WORK}/{NAME}-db-url", database.url + "\n")
    os.chmod(testhost.path(url_file), 0o600)
    section = f'[coldfront]\ndatabase_url_file = "{url_file}"\n'
    config = instance_config(testhost, NAME, coldfront_image, section)
    data = testhost.path(f"{STATE_ROOT}/{NAME}/data")
    try:
        started = json.loads(testhost.cf(["start", "--json"], config, sandbox.host).stdout)
        assert started["ready"] is True
        coldfront_python(testhost, NAME, "from django.contrib.auth.models import User; "
                         "User.objects.create_user('pguser', password='x'); print(1)")
        assert database.sql("SELECT username FROM auth_user WHERE username = 'pguser'") \
            == "pguser", "the user is in PostgreSQL"
        restarted = json.loads(testhost.cf(["restart", "--json"], config, sandbox.host).stdout)
        assert restarted["ready"] is True
        assert coldfront_python(testhost, NAME, "from django.contrib.auth.models import User; "
                                "print(User.objects.filter(username='pguser').exists())") \
            == "True", "the user is still there after a restart"
        code, body = sandbox.client_get(f"http://{sandbox.host_addr}/user/login")
        assert code == 200 and "ColdFront" in body
        status = testhost.cf(["status", "--json"], config, sandbox.host, check=False).stdout
        plan = testhost.cf(["plan", "--json"], config, sandbox.host, check=False).stdout
        assert database.password not in status + plan, "the database password stays secret"
    finally:
        testhost.cf(["stop"], config, sandbox.host, check=False)
    # No SQLite file: only the record of the migrations this database last saw.
    assert [p.name for p in data.iterdir()] == [".cf-launch-migrations"], \
        "the SQLite data folder stays unused"

    database.stop()  # the database host is down: start says so, and never with the password
    short = testhost.write(f"{WORK}/{NAME}-short.toml", f'name = "{NAME}"\n'
                           f'image = "{coldfront_image}"\nstate_root = "{STATE_ROOT}"\n'
                           f"ready_timeout = 45\n{section}")
    try:
        failed = testhost.cf(["start"], short, sandbox.host, check=False)
    finally:
        testhost.cf(["stop"], short, sandbox.host, check=False)
    assert failed.returncode == 5, failed.stderr
    assert f"ColdFront's database at {database.addr}:5432 is unreachable" in failed.stderr
    assert database.password not in failed.stdout + failed.stderr
