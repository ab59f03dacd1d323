#!/usr/bin/env bash
# Builds the sandbox images: a Debian base (pulled where a registry answers, else made with
# debootstrap and loaded with `docker import`); on it the runtime layer (images/runtime/: the
# sandbox user, /workspace, install-packages, se-run), which every language image builds on; then the
# image of every language, from the images/<name>/ folder its spec in sandbox_engine/languages.py
# names, a few at a time. Each language's version command (its spec's version_command) is run in
# the new image; its output becomes the image's `sandbox-engine.version.<language>` label.
# Idempotent: an image is rebuilt only when its folder, or what it builds on, changed; a language
# image also when its version commands did.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=sandbox-engine/base:bookworm
RUNTIME=sandbox-engine/runtime:bookworm
# The images' own user (executor.py's SANDBOX_USER), which every language image ends as. Sandboxes
# run as host uids of their own instead (sandbox_engine/uids.py); version commands run as this one.
SANDBOX_USER=10001:10001
# The specs are read by the package itself, in the venv scripts/setup.sh makes before it runs this.
PYTHON=.venv/bin/python
MIRROR=${SANDBOX_ENGINE_MIRROR:-http://deb.debian.org/debian}
JOBS=${SANDBOX_ENGINE_BUILD_JOBS:-3}
# The classic builder: it takes an image ID in FROM and writes --iidfile, which the steps rely on.
export DOCKER_BUILDKIT=0

if [ ! -x "$PYTHON" ]; then
  echo "build-images: $PYTHON is missing; scripts/setup.sh (make setup) makes it" >&2
  exit 1
fi
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  if timeout 60 docker pull debian:bookworm-slim >/dev/null 2>&1; then
    docker tag debian:bookworm-slim "$BASE"
  else
    echo "build-images: no registry; building the base with debootstrap (a few minutes, once)"
    root=$(mktemp -d /var/tmp/sandbox-base.XXXXXX)
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" >/var/tmp/sandbox-debootstrap.log 2>&1 \
      || { tail -20 /var/tmp/sandbox-debootstrap.log; exit 1; }
    # Same trimming as the official slim image: no caches, no docs, an apt that keeps nothing.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
      "$root"/usr/share/man/* "$root"/usr/share/locale/*
    tar -C "$root" -c . | docker import \
      -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      -c 'CMD ["bash"]' - "$BASE" >/dev/null
    rm -rf "$root"; trap - EXIT
  fi
fi
base_id=$(docker image inspect -f '{{ .Id }}' "$BASE")

work=$(mktemp -d /var/tmp/sandbox-images.XXXXXX)
trap 'rm -rf "$work"' EXIT

# What an image is built from: the image it builds on ($1), every file of its folder ($2), names
# included, and for a language image its languages' version commands (the file $3).
source_sum() {
  { echo "$1"; cat "${3:-/dev/null}"; (cd "$2" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); } \
    | sha256sum | cut -c1-16
}

label() {
  docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

failed_log() {
  echo "build-images: FAILED to build $1; the end of its log:" >&2
  tail -n 30 "$2" | sed 's/^/  | /' >&2
}

# The runtime layer, before any language image, which are keyed on its id. Labelled with its
# source in the same build, so an interrupted build is not taken for a finished one.
runtime_sum=$(source_sum "$base_id" images/runtime)
old_runtime=$(docker image inspect -f '{{ .Id }}' "$RUNTIME" 2>/dev/null || true)
if [ "$(label "$RUNTIME" sandbox-engine.source)" != "$runtime_sum" ]; then
  echo "build-images: building $RUNTIME"
  start=$SECONDS
  docker build --force-rm --label "sandbox-engine.source=$runtime_sum" -t "$RUNTIME" images/runtime \
    >"$work/runtime.log" 2>&1 || { failed_log "$RUNTIME" "$work/runtime.log"; exit 1; }
  # The image of its build stage (a compiler, for se-run) is left untagged: not kept.
  docker image prune -f --filter label=sandbox-engine.stage=build >/dev/null || true
  echo "build-images: built $RUNTIME in $((SECONDS - start))s"
fi
runtime_id=$(docker image inspect -f '{{ .Id }}' "$RUNTIME")

# Builds one image, then runs its version commands and labels it with their output. The source
# label is added last, with the versions, so an image interrupted half-way is rebuilt next time.
build_image() {
  local name=$1 sum=$2 tag="sandbox-engine/$1:latest" log="$work/$1.log" start=$SECONDS
  local id old language cmd version summary=""
  local labels=(--label "sandbox-engine.source=$sum")
  # --force-rm: a failed step leaves no stopped container behind.
  docker build --force-rm --iidfile "$work/$name.iid" "images/$name" >"$log" 2>&1 || return 1
  id=$(cat "$work/$name.iid")
  # Programs run as the sandbox user anyway; an image that ends as root would only mislead.
  if [ "$(docker image inspect -f '{{ .Config.User }}' "$id")" != "$SANDBOX_USER" ]; then
    echo "images/$name/Dockerfile must end as USER $SANDBOX_USER" >>"$log"
    return 1
  fi
  while IFS='=' read -r language cmd; do
    version=$(docker run --rm --network none --user "$SANDBOX_USER" "$id" sh -c "$cmd" </dev/null 2>>"$log") \
      || { echo "the version command of $language failed: $cmd" >>"$log"; return 1; }
    version=$(echo "$version" | tr -d '[:space:]')
    [ -n "$version" ] || { echo "the version command of $language printed nothing: $cmd" >>"$log"; return 1; }
    labels+=(--label "sandbox-engine.version.$language=$version")
    summary+=" $language $version"
  done <"$work/$name.versions"
  old=$(docker image inspect -f '{{ .Id }}' "$tag" 2>/dev/null || true)
  printf 'FROM %s\n' "$id" | docker build -q "${labels[@]}" -t "$tag" - >>"$log" 2>&1 || return 1
  # The image this one replaces, unless a container still uses it or it has another tag.
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{ .Id }}' "$tag")" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
  fi
  echo "build-images: built $tag in $((SECONDS - start))s:$summary"
}

# The images the languages name; a folder none names (but the runtime layer's) is not built,
# which is said, as a spec may be missing.
images=$("$PYTHON" -m sandbox_engine.languages images)
for name in $images; do
  if [ ! -f "images/$name/Dockerfile" ]; then
    echo "build-images: images/$name/Dockerfile is missing, and sandbox_engine/languages.py uses it" >&2
    exit 1
  fi
done
for dir in images/*/; do
  [ "$dir" != images/runtime/ ] || continue
  grep -qx "$(basename "$dir")" <<<"$images" \
    || echo "build-images: no language in sandbox_engine/languages.py uses $dir; not built"
done

start=$SECONDS
names=()
for name in $images; do
  dir=images/$name
  "$PYTHON" -m sandbox_engine.languages version-commands "$name" >"$work/$name.versions"
  sum=$(source_sum "$runtime_id" "$dir" "$work/$name.versions")
  [ "$(label "sandbox-engine/$name:latest" sandbox-engine.source)" != "$sum" ] || continue
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  echo "build-images: building sandbox-engine/$name:latest"
  names+=("$name")
  { build_image "$name" "$sum" && rc=0 || rc=$?; echo "$rc" >"$work/$name.rc"; } &
done
wait
# The runtime layer this build replaced, unless an image still builds on it (one that failed).
if [ -n "$old_runtime" ] && [ "$old_runtime" != "$runtime_id" ]; then
  docker rmi "$old_runtime" >/dev/null 2>&1 || true
fi

failed=()
for name in "${names[@]}"; do
  if [ "$(cat "$work/$name.rc" 2>/dev/null)" != 0 ]; then
    failed+=("$name")
    failed_log "sandbox-engine/$name:latest" "$work/$name.log"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "build-images: ${#failed[@]} of ${#names[@]} images failed: ${failed[*]}" >&2
  exit 1
fi
[ ${#names[@]} -eq 0 ] || echo "build-images: done in $((SECONDS - start))s (${#names[@]} built)"
