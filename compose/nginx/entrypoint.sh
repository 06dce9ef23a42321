#!/bin/sh
# Render the configuration, start nginx, and switch the HTTPS server on (or reload it)
# whenever certbot's certificate appears or is renewed (checked every 10 s): certbot
# runs in its own container and cannot signal this one.
set -eu
: "${KT_DOMAIN:?KT_DOMAIN is not set: put it in the compose env file}"
conf=/run/knowledgetree-nginx
python3 /opt/knowledgetree-nginx/render.py /opt/knowledgetree-nginx "$conf"
cert=/etc/letsencrypt/live/$KT_DOMAIN/fullchain.pem
key=/etc/letsencrypt/live/$KT_DOMAIN/privkey.pem

certificate_state() {
    if [ -r "$cert" ] && [ -r "$key" ]; then
        stat -L -c %Y:%s "$cert" "$key" | tr '\n' ' '
    else
        echo none
    fi
}

write_site() {
    cat "$conf/site-http.conf" >"$conf/site.conf.new"
    if [ "$1" != none ]; then
        cat "$conf/site-tls.conf" >>"$conf/site.conf.new"
    fi
    mv "$conf/site.conf.new" "$conf/site.conf"
}

current=$(certificate_state)
write_site "$current"
nginx -t -q
nginx -g 'daemon off;' &
pid=$!
trap 'kill -QUIT "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT
while kill -0 "$pid" 2>/dev/null; do
    sleep 10 &
    wait $! || true
    state=$(certificate_state)
    if [ "$state" != "$current" ]; then
        write_site "$state"
        if nginx -t -q; then
            echo "knowledgetree-nginx: certificate for $KT_DOMAIN changed: reloading" >&2
            kill -HUP "$pid"
            current=$state
        fi
    fi
done
wait "$pid"
