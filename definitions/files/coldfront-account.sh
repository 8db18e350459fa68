#!/bin/sh
# Give the coldfront account and group the ids in $1 (COLDFRONT_UID=, COLDFRONT_GID=),
# bound in by cf-launch ([security] uid/gid). There is no user namespace: these are host
# ids, and the data folder on the host belongs to them. /etc is writable through
# --writable-tmpfs; the image keeps the default ids when they already match.
set -eu
uid=$(sed -n 's/^COLDFRONT_UID=\([0-9][0-9]*\)$/\1/p' "$1")
gid=$(sed -n 's/^COLDFRONT_GID=\([0-9][0-9]*\)$/\1/p' "$1")
[ -n "$uid" ] && [ -n "$gid" ] || { echo "coldfront-account: no ids in $1" >&2; exit 1; }
if [ "$(id -g coldfront)" != "$gid" ]; then
    other=$(getent group "$gid" | cut -d: -f1 || true)
    [ -z "$other" ] || { echo "coldfront-account: gid $gid is the image's group $other" >&2; exit 1; }
    groupmod -g "$gid" coldfront
fi
if [ "$(id -u coldfront)" != "$uid" ] || [ "$(id -g coldfront)" != "$gid" ]; then
    other=$(getent passwd "$uid" | cut -d: -f1 || true)
    [ -z "$other" ] || [ "$other" = coldfront ] || {
        echo "coldfront-account: uid $uid is the image's account $other" >&2; exit 1; }
    usermod -u "$uid" -g "$gid" coldfront
fi
echo "coldfront-account: coldfront is $(id coldfront)"
