#!/usr/bin/env bash
# Builds one release of Gatehouse into dist/, reproducibly: the same commit gives the same
# bytes, whoever builds it, wherever, whenever (docs/operations.md#releases).
#
#   scripts/release.sh                      everything, into dist/
#   DIST=/tmp/d scripts/release.sh          somewhere else
#   VERSION=1.2.0 scripts/release.sh        a version other than the one git describe gives
#   TARGETS="linux/amd64" scripts/release.sh   a subset of the platforms
#
# It writes, for version V:
#   gatehouse_V_{linux_amd64,linux_arm64,darwin_arm64}.tar.gz, gatehouse_V_windows_amd64.zip
#   gatehouse_V_<os>_<arch>.cdx.json        CycloneDX SBOM of each binary (cyclonedx-gomod)
#   gatehouse_V-1_{amd64,arm64}.deb, gatehouse-V-1.{x86_64,aarch64}.rpm (nfpm, with the systemd unit)
#   gatehouse_V_linux_{amd64,arm64}.oci.tar  an OCI image FROM scratch (buildah), as an oci-archive
#   SHA256SUMS                              of all of the above
#
# Why a script and not goreleaser: it is go build, tar, zip, nfpm and buildah, each
# pinned, in a script anyone can read; goreleaser would be a large module to
# compile for that, and it pulls base images through a Docker daemon this build avoids.
#
# Needs: go, git, GNU tar, gzip, zip, buildah (Debian's). Root, for buildah: its storage is
# a private vfs store in a temporary directory, so the machine's images are not touched.
set -euo pipefail
# Every file and directory made here is 0644 or 0755 unless it says otherwise, whatever the
# caller's umask: the modes are part of the bytes.
umask 022
# Name order and times are the C locale's and UTC's, whatever the caller's.
export LC_ALL=C TZ=UTC
start=$PWD
cd "$(dirname "$0")/.."
repo=$PWD

NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
CYCLONEDX=github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0
PKG=github.com/gatehouse-bff/gatehouse
DIST=${DIST:-$repo/dist}
[[ $DIST == /* ]] || DIST=$start/$DIST
TARGETS=${TARGETS:-linux/amd64 linux/arm64 darwin/arm64 windows/amd64}

die() { echo "release: $*" >&2; exit 1; }
step() { printf '\033[1m-- %s\033[0m\n' "$*" >&2; }

for tool in go git tar gzip zip buildah; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y $tool)"
done
[[ $(id -u) -eq 0 ]] || die "buildah needs root here (its storage is private to this run)"

# --- what is being built ----------------------------------------------------------------
commit=$(git rev-parse HEAD)
# Everything with a time in it takes the commit's: the archives' and packages' file times,
# the image's creation time. Two builds of one commit agree.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct "$commit")
export SOURCE_DATE_EPOCH
date_iso=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then
  echo "release: the work tree has uncommitted changes; they are not in the release, which is of $commit" >&2
fi
if [[ -z ${VERSION:-} ]]; then
  if tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
    VERSION=${tag#v}
  else
    # Not a tagged commit: a pre-release of 0.0.0 that names the commit. Semver, so the
    # package managers order it below any real release.
    VERSION=0.0.0-dev.$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S).$(git rev-parse --short=12 "$commit")
  fi
fi
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+([-.+~][0-9A-Za-z.+~-]*)?$ ]] || die "VERSION=$VERSION is not a version like 1.2.3 or 1.2.3-rc.1"
step "gatehouse $VERSION, commit $commit ($date_iso)"

# dist/ is emptied of the last release, and of nothing else.
mkdir -p "$DIST"
others=$(find "$DIST" -mindepth 1 -maxdepth 1 ! -name 'gatehouse[-_]*' ! -name SHA256SUMS -printf '%f ')
[[ -z $others ]] || die "$DIST holds files of no release ($others): give an empty DIST"
rm -f "$DIST"/gatehouse[-_]* "$DIST/SHA256SUMS"
work=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-release.XXXXXX")
# buildah run as root keeps a cache of blob digests in /var/lib/containers/cache whatever its
# --root says; when this run is what created it, it is removed again at the end.
bic=/var/lib/containers/cache
bic_new=() # the directories this run creates, innermost first
for d in "$bic" "${bic%/*}"; do [[ -e $d ]] || bic_new+=("$d"); done
cleanup() {
  # buildah's vfs store holds root-owned copies of the image; remove them with the rest.
  rm -rf "$work"
  if ((${#bic_new[@]})); then
    rm -f "$bic/blob-info-cache-v1.boltdb"
    rmdir "${bic_new[@]}" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# The release is built from a clone of the commit, in a directory whose name changes from
# run to run: nothing uncommitted gets in, and two builds in two places must agree.
git clone --quiet --no-checkout "$repo" "$work/src"
git -C "$work/src" -c advice.detachedHead=false checkout --quiet "$commit"
cd "$work/src"

# Files copied into archives, packages and images get the commit time, root ownership and
# modes that do not depend on the builder's umask.
stamp() { find "$@" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +; }

# A gzip'ed tar whose bytes depend only on the files' contents and names.
reproducible_tgz() { # out dir-to-archive (relative to cwd)
  tar --sort=name --format=ustar --mtime="@$SOURCE_DATE_EPOCH" \
    --owner=0 --group=0 --numeric-owner --mode=u+rwX,go+rX,go-w \
    -cf - "$2" | gzip -9 -n >"$1"
}

# --- tools ------------------------------------------------------------------------------
# nfpm and cyclonedx-gomod, pinned, built for this machine (go install, not go run: the SBOM
# step sets GOOS and GOARCH for the target, which go run would build the tool for).
step "tools: nfpm, cyclonedx-gomod"
for tool in "$NFPM" "$CYCLONEDX"; do
  GOBIN=$work/tools GOOS= GOARCH= GOFLAGS= go install "$tool"
done

# --- binaries ---------------------------------------------------------------------------
# CGO_ENABLED=0: static, no libc. -trimpath: no paths of the build machine. -buildid=: no
# build id (it hashes the inputs, but the linker's varies with the tool binary). -s -w: no
# symbol table or DWARF. The micro-architecture levels are pinned so that a builder's
# GOAMD64 or GOARM64 cannot change the code. The build settings and the commit (vcs.revision,
# vcs.time) are embedded by go build itself: `go version -m gatehouse` shows them.
ldflags="-s -w -buildid= -X $PKG.Version=$VERSION"
for target in $TARGETS; do
  goos=${target%/*} goarch=${target#*/}
  exe=gatehouse; [[ $goos == windows ]] && exe=gatehouse.exe
  mkdir -p "$work/bin/${goos}_$goarch"
  step "go build $goos/$goarch"
  CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch GOAMD64=v1 GOARM64=v8.0 GOFLAGS=-mod=readonly \
    go build -trimpath -buildvcs=true -ldflags "$ldflags" -o "$work/bin/${goos}_$goarch/$exe" ./cmd/gatehouse
done

# --- archives ---------------------------------------------------------------------------
for target in $TARGETS; do
  goos=${target%/*} goarch=${target#*/}
  name=gatehouse_${VERSION}_${goos}_$goarch
  dir=$work/archive/$name
  mkdir -p "$dir"
  cp "$work/bin/${goos}_$goarch/"* "$dir/"
  cp README.md "$dir/"
  [[ -f LICENSE ]] && cp LICENSE "$dir/"
  cp deploy/gatehouse.example.yaml "$dir/gatehouse.example.yaml"
  [[ $goos == linux ]] && cp deploy/gatehouse.service "$dir/"
  chmod -R u+rwX,go+rX,go-w "$dir"
  stamp "$dir"
  step "archive $name"
  if [[ $goos == windows ]]; then
    # zip stores local times: TZ=UTC makes them the same everywhere. -X: no extra
    # (uid/gid, extended time) fields. Names are given sorted, so the order is fixed.
    (cd "$work/archive" && find "$name" -print | LC_ALL=C sort | TZ=UTC zip -q -X -D -9 "$DIST/$name.zip" -@)
  else
    (cd "$work/archive" && reproducible_tgz "$DIST/$name.tar.gz" "$name")
  fi
done

# --- SBOM -------------------------------------------------------------------------------
# One per binary: the modules linked into it (golang.org/x/sys differs between platforms).
# -noserial, -notimestamp: no random serial number and no time of day; -std: the Go
# standard library is a component too (its vulnerabilities are the binary's).
for target in $TARGETS; do
  goos=${target%/*} goarch=${target#*/}
  step "SBOM $goos/$goarch"
  GOOS=$goos GOARCH=$goarch CGO_ENABLED=0 GOFLAGS=-mod=readonly \
    "$work/tools/cyclonedx-gomod" app -json -noserial -notimestamp -std -licenses -main cmd/gatehouse \
    -output "$DIST/gatehouse_${VERSION}_${goos}_$goarch.cdx.json" . 2>"$work/sbom.log" \
    || { cat "$work/sbom.log" >&2; die "cyclonedx-gomod failed"; }
done

# --- .deb and .rpm ----------------------------------------------------------------------
# The packaged unit runs the packaged binary, /usr/bin/gatehouse (a package does not write
# /usr/local). Everything else in it is deploy/gatehouse.service as it is.
mkdir -p "$work/pkg"
sed 's|/usr/local/bin/gatehouse|/usr/bin/gatehouse|g' deploy/gatehouse.service >"$work/pkg/gatehouse.service"
cp deploy/gatehouse.example.yaml "$work/pkg/gatehouse.yaml"
cp deploy/packaging/*.sh deploy/nfpm.yaml "$work/pkg/"
chmod 0644 "$work/pkg/gatehouse.service" "$work/pkg/gatehouse.yaml" "$work/pkg/nfpm.yaml"
chmod 0755 "$work/pkg/"*.sh
for target in $TARGETS; do
  if [[ ${target%/*} == linux ]]; then
    install -D -m 0755 "$work/bin/linux_${target#*/}/gatehouse" "$work/pkg/bin/${target#*/}/gatehouse"
  fi
done
stamp "$work/pkg"
for target in $TARGETS; do
  goos=${target%/*} goarch=${target#*/}
  [[ $goos == linux ]] || continue
  for packager in deb rpm; do
    step "$packager $goarch"
    (cd "$work/pkg" && VERSION=$VERSION GOARCH=$goarch \
      "$work/tools/nfpm" package --config nfpm.yaml --packager "$packager" --target "$DIST/") >"$work/nfpm.log" 2>&1 \
      || { cat "$work/nfpm.log" >&2; die "nfpm $packager $goarch failed"; }
  done
done

# --- OCI image --------------------------------------------------------------------------
# FROM scratch: the binary, the host's CA bundle, an /etc/passwd and /etc/group naming the
# runtime user (65532, as in distroless and deploy/Dockerfile), the configuration directory
# and the state volume. No registry is involved.
buildah_() {
  buildah --root "$work/containers/storage" --runroot "$work/containers/run" --storage-driver vfs "$@"
}
ca=/etc/ssl/certs/ca-certificates.crt
[[ -f $ca ]] || die "$ca is missing (apt-get install -y ca-certificates)"
for target in $TARGETS; do
  goos=${target%/*} goarch=${target#*/}
  [[ $goos == linux ]] || continue
  step "image linux/$goarch"
  rootfs=$work/rootfs_$goarch
  install -d -m 0755 "$rootfs"/{etc/ssl/certs,etc/gatehouse,usr/local/bin,var/lib}
  install -d -m 0700 -o 65532 -g 65532 "$rootfs/var/lib/gatehouse"
  install -m 0755 "$work/bin/linux_$goarch/gatehouse" "$rootfs/usr/local/bin/gatehouse"
  install -m 0644 "$ca" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/var/lib/gatehouse:/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
  chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
  stamp "$rootfs"

  ctr=$(buildah_ from --quiet --arch "$goarch" --os linux scratch)
  mnt=$(buildah_ mount "$ctr")
  cp -a "$rootfs/." "$mnt/"
  buildah_ umount "$ctr" >/dev/null
  buildah_ config \
    --arch "$goarch" --os linux \
    --user 65532:65532 \
    --workingdir /var/lib/gatehouse \
    --entrypoint '["/usr/local/bin/gatehouse"]' \
    --cmd 'serve --config /etc/gatehouse/gatehouse.yaml' \
    --port 9080/tcp --port 9090/tcp --port 9091/tcp \
    --volume /var/lib/gatehouse \
    --created-by "scripts/release.sh" \
    --label org.opencontainers.image.title=gatehouse \
    --label "org.opencontainers.image.description=Backend-for-Frontend OAuth/OpenID Connect gateway" \
    --label "org.opencontainers.image.version=$VERSION" \
    --label "org.opencontainers.image.revision=$commit" \
    --label "org.opencontainers.image.created=$date_iso" \
    --label org.opencontainers.image.source=https://github.com/gatehouse-bff/gatehouse \
    --label org.opencontainers.image.documentation=https://github.com/gatehouse-bff/gatehouse/blob/main/docs/operations.md \
    "$ctr"
  # --timestamp: the image's creation time, its history and its layer's file times are the
  # commit's. --identity-label=false: no label naming the buildah version that built it.
  # The layer is gzip'ed (a deterministic compressor: same bytes in, same bytes out).
  buildah_ commit --quiet --rm --format oci --timestamp "$SOURCE_DATE_EPOCH" --identity-label=false \
    --disable-compression=false \
    "$ctr" "oci:$work/oci_$goarch:gatehouse:$VERSION" >/dev/null
  # The oci-archive transport would stamp the archive's own entries with the time of day;
  # the same OCI layout tarred here has none.
  stamp "$work/oci_$goarch"
  (cd "$work/oci_$goarch" && tar --sort=name --format=ustar --mtime="@$SOURCE_DATE_EPOCH" \
    --owner=0 --group=0 --numeric-owner --mode=u+rwX,go+rX,go-w \
    -cf "$DIST/gatehouse_${VERSION}_linux_$goarch.oci.tar" oci-layout index.json blobs)
done

# --- checksums --------------------------------------------------------------------------
(cd "$DIST" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
step "dist: $DIST"
cat "$DIST/SHA256SUMS" >&2
