# nginx's upstream file from stdin (the nginx role's template, rendered by switch.yml),
# then `nginx -t` and a graceful reload, in one command per web host. An unchanged file
# prints "unchanged" and reloads nothing; a file nginx refuses is put back.
set -euo pipefail
file=/etc/nginx/knowledgetree/upstream.conf
new=$(mktemp "$file.XXXXXX")
trap 'rm -f "$new"' EXIT
cat >"$new"
if cmp -s "$new" "$file"; then
  echo unchanged
  exit 0
fi
chmod 0644 "$new"
cp -p "$file" "$file.previous"
mv "$new" "$file"
if ! nginx -t -q; then
  mv "$file.previous" "$file"
  exit 1
fi
rm -f "$file.previous"
# `systemctl reload` only signals nginx. The old workers keep their open requests and
# streams but must take no new ones before the old color is told to stop: wait until
# each of them is "shutting down" or gone.
old=$(ps -C nginx -o pid=,args= | awk '/worker process$/ {print $1}')
systemctl reload nginx
for _ in $(seq 300); do
  left=0
  for pid in $old; do
    case $(ps -o args= -p "$pid" 2>/dev/null || true) in
      *"worker process") left=1 ;;
    esac
  done
  [ "$left" = 0 ] && exit 0
  sleep 0.1
done
echo "nginx still runs its old workers 30 s after the reload" >&2
exit 1
