#!/bin/sh
# Run before nginx starts: serve 443 when exactly one certificate lives in
# /etc/letsencrypt/live (bound from the host), and only port 80 otherwise.
set -eu
conf=/etc/nginx/conf.d/coldfront-tls.conf
set -- /etc/letsencrypt/live/*/fullchain.pem
if [ "$#" -ne 1 ] || [ ! -s "$1" ]; then
    rm -f "$conf"
    exit 0
fi
dir=$(dirname "$1")
cat >"$conf" <<CONF
server {
    listen 443 ssl default_server;
    listen [::]:443 ssl default_server;
    server_name _;
    ssl_certificate $dir/fullchain.pem;
    ssl_certificate_key $dir/privkey.pem;
    client_max_body_size 10m;
    location /static/ { alias /srv/coldfront/static/; }
    location / {
        proxy_set_header Host \$host;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto https;
        proxy_pass http://coldfront;
    }
}
CONF
