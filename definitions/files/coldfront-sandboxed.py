#!/usr/bin/python3
"""Run a command as the coldfront account, in gunicorn's sandbox, with ColdFront's env.

The properties are the lines of /etc/cf-launch/coldfront-sandbox.conf, the drop-in every
ColdFront unit uses, passed to ``systemd-run``. Run as root (``cf-launch exec``):

    coldfront-sandboxed /srv/coldfront/venv/bin/coldfront check
    coldfront-manage createsuperuser        # = coldfront-sandboxed .../coldfront ARGS
"""
import os
import sys

CONF = "/etc/cf-launch/coldfront-sandbox.conf"
COLDFRONT = "/srv/coldfront/venv/bin/coldfront"

argv = sys.argv[1:]
if os.path.basename(sys.argv[0]) == "coldfront-manage":
    argv = [COLDFRONT, *argv]
if not argv:
    sys.exit("usage: coldfront-sandboxed COMMAND [ARG...]")
with open(CONF) as fh:
    props = [line.strip() for line in fh if line[:1].isalpha() and "=" in line]
tty = sys.stdin.isatty() and sys.stdout.isatty()
cmd = ["systemd-run", "--quiet", "--wait", "--collect", "--pty" if tty else "--pipe",
       "--working-directory=/srv/coldfront"]
for prop in props:
    cmd += ["-p", prop]
os.execvp(cmd[0], cmd + argv)
