#!/bin/sh
# The `frontend` one-shot service: publish this image's browser app (the release's dist/)
# into the web volume nginx serves, without touching nginx. Each release gets a folder
# releases/<release>; `current` is a symlink switched to it in one rename, and nginx
# follows the link on every request (no reload, no restart). The previous release's
# hashed assets are copied into the new folder, so a page loaded before the switch still
# finds the chunks it loads lazily. Running it again for the live release does nothing.
set -eu
web=/var/www/knowledgetree
source=/opt/knowledgetree/web
release=$(cat /opt/knowledgetree/files/RELEASE)
keep=5
target=$web/releases/$release
current=$(readlink "$web/current" 2>/dev/null || true)

if [ "$current" = "releases/$release" ] && [ -d "$target" ]; then
    echo "knowledgetree-frontend: release $release is live already"
    exit 0
fi
mkdir -p "$web/releases"
if [ ! -d "$target" ]; then
    rm -rf "$target.new"
    cp -R "$source" "$target.new"
    # This release's own assets: what the next release carries over from it.
    ls -A "$target.new/assets" >"$target.new/.release-assets"
    if [ -n "$current" ] && [ -f "$web/$current/.release-assets" ]; then
        while IFS= read -r name; do
            [ -e "$target.new/assets/$name" ] || cp -p "$web/$current/assets/$name" "$target.new/assets/"
        done <"$web/$current/.release-assets"
    fi
    mv "$target.new" "$target"
fi
ln -sfn "releases/$release" "$web/current.new"
mv -T "$web/current.new" "$web/current"
echo "knowledgetree-frontend: release $release is live${current:+ (was ${current#releases/})}"

# The newest $keep release folders stay (a rollback's is there), the live one always.
ls -1t "$web/releases" | tail -n "+$((keep + 1))" | while IFS= read -r old; do
    [ "$old" = "$release" ] || rm -rf "${web:?}/releases/$old"
done
