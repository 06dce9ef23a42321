#!/usr/bin/env bash
# Build a release of KnowledgeTree: everything a host needs to run it, without
# building anything on the host.
#
#   build/releases/<name>/
#     knowledgetree-<version>-py3-none-any.whl   the app
#     requirements.lock                         every dependency, pinned (pip -r)
#     constraints.txt                           torch==2.6.0: Debian's, never PyPI's CUDA build
#     RELEASE                                   the release name
#     dist/                                     the frontend build, when frontend/ exists
#   build/release -> releases/<name>            what ansible/deploy.yml deploys
#
# The name is <version>-g<commit>, plus -dirty-<hash of the changes> for a tree
# with uncommitted changes, so the same sources always give the same name and a
# second deploy of them changes nothing.
#
# KT_RELEASE_REF=<commit> builds that commit instead of the working tree (e.g. HEAD,
# to test the playbooks while the working tree holds unfinished changes).
# KT_RELEASE_SUFFIX=<text> appends "-<text>" to the name: a second release of the same
# sources (the blue-green tests deploy one to switch between two releases).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
# One build at a time (parallel test lanes build the same release): the second finds
# it built, and two `npm ci` never rewrite frontend/node_modules together.
mkdir -p "$repo/build"
exec 9>>"$repo/build/.lock"
flock 9
python=${PYTHON:-$repo/.venv/bin/python}
# Debian 13's python3-torch; the app's venv on the host reuses it. The lock is
# resolved here against the development torch, so the pins that torch itself
# dictates are replaced by what Debian's torch requires (its metadata pins sympy).
debian_torch=${DEBIAN_TORCH_VERSION:-2.6.0}
debian_torch_pins=(sympy==1.13.1)

log() { echo "build_release: $*" >&2; }
die() { echo "build_release: $*" >&2; exit 1; }

[[ -f requirements.lock ]] || die "requirements.lock is missing: run scripts/lock.sh (make lock)"
ref=${KT_RELEASE_REF:-}
sources=(app pyproject.toml requirements.lock README.md frontend)
if [[ -n $ref ]]; then
  # A commit: its files, exported into a folder of their own.
  git rev-parse --verify --quiet "$ref^{commit}" >/dev/null || die "KT_RELEASE_REF=$ref is not a commit"
  src=$(mktemp -d)
  trap 'rm -rf "$src"' EXIT
  mapfile -t present < <(git ls-tree --name-only "$ref" -- "${sources[@]}")
  git archive "$ref" -- "${present[@]}" | tar -x -C "$src"
  cd "$src"
else
  src=$repo
fi
version=$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
name="$version-g$(git -C "$repo" rev-parse --short=10 "${ref:-HEAD}")"
# Files that go into the release: tracked plus new, not ignored (all of them for a commit).
if [[ -n $ref ]]; then
  mapfile -t files < <(find "${present[@]}" -type f -not -path 'frontend/node_modules/*' | sort)
else
  mapfile -t files < <(git ls-files --cached --others --exclude-standard -- "${sources[@]}" | sort -u)
fi
if [[ -z $ref && -n $(git status --porcelain -- "${files[@]}" 2>/dev/null) ]]; then
  changes=$( { git diff HEAD -- "${files[@]}"; git ls-files --others --exclude-standard -- "${files[@]}" \
    | while read -r f; do echo "$f"; cat "$f"; done; } | sha256sum | cut -c1-10)
  name="$name-dirty-$changes"
fi

suffix=${KT_RELEASE_SUFFIX:-}
if [[ -n $suffix ]]; then
  [[ $suffix =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]] || die "KT_RELEASE_SUFFIX=$suffix: letters, digits and ._+- only"
  name="$name-$suffix"
fi

out="$repo/build/releases/$name"
if [[ -f $out/RELEASE ]]; then
  log "release $name exists: $out"
else
  log "building release $name"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp" ${ref:+"$src"}' EXIT
  # Build from a clean copy so no stale build/ or egg-info leftovers leak in.
  mkdir "$tmp/src" "$tmp/release"
  for f in "${files[@]}"; do
    [[ -f $f && $f != frontend/* ]] && install -D -m 0644 "$f" "$tmp/src/$f"
  done
  touch "$tmp/src/README.md"
  "$python" -m pip wheel --quiet --no-deps --disable-pip-version-check \
    --wheel-dir "$tmp/release" "$tmp/src" || die "building the wheel failed"

  # The lock without torch (the host's comes from Debian), without the app itself
  # and without the pins Debian's torch dictates (they go into the constraints).
  skip="torch|knowledgetree"
  for pin in "${debian_torch_pins[@]}"; do skip="$skip|${pin%%==*}"; done
  grep -viE "^($skip)==" requirements.lock >"$tmp/release/requirements.lock"
  {
    echo "# Debian 13's torch (python3-torch): never PyPI's CUDA build."
    echo "torch==$debian_torch"
    echo "# Required exactly by Debian's torch $debian_torch."
    printf '%s\n' "${debian_torch_pins[@]}"
  } >"$tmp/release/constraints.txt"

  if [[ -f frontend/package.json ]]; then
    log "building the frontend"
    # npm's output goes to stderr: stdout is this script's answer (the release folder).
    (cd frontend && npm ci --no-audit --no-fund && npm run build) >&2 || die "the frontend build failed"
    cp -a frontend/dist "$tmp/release/dist"
    # The release's name in its index.html: which frontend is published shows in the page
    # source, and two releases of the same sources differ (a rollback puts its own back).
    sed -i "s|</head>|  <meta name=\"knowledgetree-release\" content=\"$name\" />\n  </head>|" \
      "$tmp/release/dist/index.html"
    grep -q "content=\"$name\"" "$tmp/release/dist/index.html" || die "dist/index.html has no </head>"
  fi
  echo "$name" >"$tmp/release/RELEASE"
  mkdir -p "$repo/build/releases"
  rm -rf "$out"
  mv "$tmp/release" "$out"
fi
ln -sfn "releases/$name" "$repo/build/release"
echo "$out"
