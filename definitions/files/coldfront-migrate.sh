#!/bin/sh
# ColdFront's migrations, only when they can have changed: the image's migration set
# (/etc/cf-launch/migrations.key, written at build) or the database (DB_URL) differ from
# what the data folder last saw (.cf-launch-migrations), or the SQLite file is missing.
# `cf-launch restore` removes the record. --stamp: record without migrating (after
# coldfront-setup.service's initial_setup, which migrates itself).
set -eu
stamp=/srv/coldfront/data/.cf-launch-migrations
want=$(printf '%s\n%s\n' "$(cat /etc/cf-launch/migrations.key)" "${DB_URL:-}" | sha256sum)
want=${want%% *}
db=${DB_URL:-}
db=${db#sqlite:///}
if [ "${1:-}" != --stamp ]; then
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
            { [ "$db" = "${DB_URL:-}" ] || [ -s "$db" ]; }; then
        exit 0
    fi
    /srv/coldfront/venv/bin/coldfront migrate --noinput
fi
printf '%s\n' "$want" >"$stamp.tmp"
mv -f "$stamp.tmp" "$stamp"
