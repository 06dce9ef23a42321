#!/bin/sh
# Obtain the certificate (retrying until nginx answers the challenge and DNS points
# here), then try a renewal every 12 hours; nginx notices a new certificate itself.
set -eu
: "${KT_DOMAIN:?KT_DOMAIN is not set: put it in the compose env file}"
server=${KT_ACME_SERVER:-https://acme-v02.api.letsencrypt.org/directory}
retry=${KT_CERTBOT_RETRY_SECONDS:-60}
trap 'exit 0' TERM INT
if [ -n "${KT_ACME_EMAIL:-}" ]; then
    set -- --email "$KT_ACME_EMAIL" --no-eff-email
else
    set -- --register-unsafely-without-email
fi
while [ ! -e "/etc/letsencrypt/live/$KT_DOMAIN/fullchain.pem" ]; do
    if ! certbot certonly --non-interactive --agree-tos --webroot --webroot-path /var/www/acme \
        --server "$server" --cert-name "$KT_DOMAIN" --domain "$KT_DOMAIN" "$@"; then
        echo "knowledgetree-certbot: no certificate yet; trying again in $retry s" >&2
        sleep "$retry" &
        wait $! || true
    fi
done
while :; do
    sleep 43200 &
    wait $! || true
    certbot renew --non-interactive --webroot --webroot-path /var/www/acme --server "$server" || true
done
