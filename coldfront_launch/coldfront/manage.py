"""Django management inside a running instance, as the service account, with the
instance's env: ``cf-launch manage`` and ``cf-launch admin create`` (docs/production.md).

Both go through the image's ``coldfront-manage`` (``coldfront-sandboxed``): ``systemd-run``
with the very properties of gunicorn's sandbox, so a command runs as ``coldfront`` with
ColdFront's env (read by PID 1 from the bound env file) and never as root.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from coldfront_launch import apptainer
from coldfront_launch.coldfront.env import read_secret
from coldfront_launch.errors import ConfigError, LaunchError, NotRunningError

MANAGE = "coldfront-manage"
USERNAME = re.compile(r"[\w.@+-]{1,150}")
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
MARK = "cf-launch-admin:"
# Read from stdin, so that neither the password nor the names are on a command line.
CREATE_ADMIN = f"""
import json, sys
from django.contrib.auth import get_user_model
data = json.loads(sys.stdin.readline())
User = get_user_model()
user = User.objects.filter(username=data["username"]).first()
if user is not None:
    print("{MARK} exists", json.dumps({{"superuser": user.is_superuser}}))
else:
    User.objects.create_superuser(data["username"], data["email"], data["password"])
    print("{MARK} created")
"""


def running(name: str) -> str:
    if apptainer.find(name) is None:
        raise NotRunningError(f"instance {name} is not running",
                              "start it with `cf-launch start`")
    return name


def manage_argv(name: str, args: list[str]) -> list[str]:
    """``coldfront ARGS`` inside the instance, as the service account."""
    return apptainer.exec_argv(running(name), [MANAGE, *args])


@dataclass(frozen=True)
class AdminResult:
    """What ``admin create`` did: ``created``, or found the user ``existing``."""

    username: str
    created: bool
    superuser: bool

    def to_json(self) -> dict[str, object]:
        return {"username": self.username, "created": self.created,
                "superuser": self.superuser}


def create_admin(name: str, username: str, email: str, password_file: Path | None,
                 timeout: float = 180) -> AdminResult:
    """Create a superuser; an existing user is left as it is (``created`` False).

    Without ``password_file`` the account has no usable password (set one later with
    ``cf-launch manage -- changepassword USER``, or log in through OIDC)."""
    if not USERNAME.fullmatch(username):
        raise ConfigError("--username", f"{username!r} is not a Django user name",
                          "letters, digits and @.+-_ (at most 150)")
    if not EMAIL.fullmatch(email):
        raise ConfigError("--email", f"{email!r} is not an e-mail address",
                          "e.g. admin@example.org")
    password = read_secret("--password-file", password_file) if password_file else None
    argv = [apptainer.locate(), "exec", "--pwd", "/", f"instance://{running(name)}", MANAGE,
            "shell", "-v", "0", "-c", CREATE_ADMIN]
    payload = json.dumps({"username": username, "email": email, "password": password})
    try:
        done = subprocess.run(argv, input=payload + "\n", capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise LaunchError(f"creating {username} in {name} took longer than {timeout:.0f}s",
                          "see `cf-launch logs`") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if password:
            last = last.replace(password, "***")
        raise LaunchError(f"could not create {username} in {name}: {last}",
                          "run `cf-launch manage -- check` to see what ColdFront says")
    words = lines[-1].split(None, 2)
    if words[1] == "created":
        return AdminResult(username, True, True)
    return AdminResult(username, False, bool(json.loads(words[2])["superuser"]))
