#!/bin/sh
# `apptainer test coldfront.sif`: checks the image without booting it, as any user, on
# its read-only file system: ColdFront's Python (imports and Django's system checks),
# nginx's configuration as coldfront-nginx-tls writes it, and the systemd units.
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
venv=/srv/coldfront/venv
fail=0
step() { printf '%s: ' "$1"; shift; if out=$("$@" 2>&1); then echo ok; else echo FAILED; printf '%s\n' "$out" | tail -n 20; fail=1; fi; }

step "python imports" "$venv/bin/python3" -c 'import coldfront, django, gunicorn, django_q, redis'
step "django checks" env $(grep -v '^#' /etc/cf-launch/coldfront-build.env) \
    DB_URL="sqlite:///$tmp/check.db" "$venv/bin/coldfront" check
nginx_conf() {
    COLDFRONT_NGINX_DIR=$tmp/nginx /usr/local/sbin/coldfront-nginx-tls >/dev/null
    for kind in client_body proxy fastcgi uwsgi scgi; do
        echo "${kind}_temp_path $tmp/$kind;"
    done >"$tmp/nginx/temp-paths.conf"
    echo "access_log $tmp/access.log;" >>"$tmp/nginx/temp-paths.conf"
    # nginx -t binds its ports: unprivileged ones on loopback for the test.
    port=$((20000 + $$ % 20000))
    sed -i -e "s/listen 80 /listen 127.0.0.1:$port /" -e "s/listen 443 /listen 127.0.0.1:$((port + 1)) /" \
        -e '/listen \[::\]:/d' "$tmp"/nginx/*.conf
    sed -e "s#include /etc/nginx/conf.d/\*.conf;#include $tmp/nginx/*.conf;#" \
        -e '/^pid /d' -e '/^user /d' -e '/^error_log /d' -e '/access_log /d' \
        /etc/nginx/nginx.conf >"$tmp/nginx.conf"
    nginx -t -q -e "$tmp/error.log" -c "$tmp/nginx.conf" -g "pid $tmp/nginx.pid;"
}
step "nginx configuration" nginx_conf
# The user manager's verify: the system one needs a writable /run.
step "systemd units" env XDG_RUNTIME_DIR="$tmp" SYSTEMD_UNIT_PATH=/etc/systemd/system: \
    systemd-analyze --user verify --man=no /etc/systemd/system/coldfront-*.service
exit "$fail"
