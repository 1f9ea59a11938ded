#!/usr/bin/env bash
# Builds every release artifact into target/dist/ and prints their sizes:
#   linux-amd64/xray, linux-arm64/xray     static binaries (glibc, +crt-static; run on Amazon
#                                           Linux 2 and 2023, any distribution, FROM scratch)
#   THIRD-PARTY-LICENSES                    the licences of the crates in `xray`, written by
#                                           cargo-about (about.toml, about.hbs); shipped with
#                                           LICENSE in every artifact below
#   aws-xray-daemon-linux-{amd64,arm64}-<V>.zip   xray, cfg.yaml, LICENSE, THIRD-PARTY-LICENSES
#   aws-xray-daemon-linux-{amd64,arm64}-<V>.rpm   package `xray`, epoch 1 (upgrades the original)
#   aws-xray-daemon-linux-{amd64,arm64}-<V>.deb   package `xray`, version 1:<V> (upgrades the original)
#   image-amd64/, image-arm64/              the image build contexts (Dockerfile at the root)
#   xray-daemon-rs-<V>.oci.tar              both images in one OCI archive: an index with
#                                           linux/amd64 and linux/arm64 (buildah; no registry)
#   the image xray-daemon-rs:<V> (and :latest), linux/amd64, in the local Docker engine
# <V> is the package version in Cargo.toml.
#
# Needs what scripts/packaging-setup.sh installs (run it once as root), and for the Docker image
# a running Docker engine (e.g. `dockerd --iptables=false --bridge=none &`). The OCI archive
# needs no engine: buildah builds it as root in a storage of its own (target/buildah).
# Options: --no-image  skip `docker build` (the contexts and the OCI archive are still made)
#          --arch A    only amd64 or only arm64 (the Docker image needs amd64, the OCI archive
#                      both)
# Works from any directory. Builds use target/ like cargo does, so a second run is quick.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

image=1
arches=(amd64 arm64)
while (($#)); do
    case "$1" in
    --no-image) image=0 ;;
    --arch)
        shift
        arches=("${1:?--arch needs amd64 or arm64}")
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '/^set -euo/d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "release.sh: unknown argument $1 (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done

missing=()
for tool in cargo-generate-rpm cargo-deb cargo-about zip file; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [[ " ${arches[*]} " == *" arm64 "* ]]; then
    command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(aarch64-linux-gnu-gcc)
    rustup target list --installed | grep -qx aarch64-unknown-linux-gnu ||
        missing+=("rust target aarch64-unknown-linux-gnu")
fi
both=0
[[ " ${arches[*]} " == *" amd64 "* && " ${arches[*]} " == *" arm64 "* ]] && both=1
if ((both)); then
    command -v buildah >/dev/null 2>&1 || missing+=(buildah)
fi
if ((${#missing[@]})); then
    echo "release.sh: missing ${missing[*]}: run scripts/packaging-setup.sh (as root) first" >&2
    exit 1
fi

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
dist="target/dist"
mkdir -p "$dist"

# The third-party notices, from Cargo.lock: every crate linked into `xray` for the targets we
# ship, with its licence's text. --frozen: no network (cargo-about would otherwise ask
# clearlydefined.io about each crate); the crates themselves are fetched first. --fail: a crate
# whose licence cannot be read, or is not accepted in about.toml, fails the release.
# It takes minutes of CPU (it reads every crate's licence files), so it is redone only when
# its inputs change: the stamp beside the file records them.
notices="$dist/THIRD-PARTY-LICENSES"
stamp="$(cat Cargo.lock about.toml about.hbs | sha256sum | cut -d' ' -f1) $(cargo about --version)"
if [[ -f "$notices" && "$(cat "$notices.stamp" 2>/dev/null)" == "$stamp" ]]; then
    echo "==> $notices (cargo about): unchanged inputs, kept"
else
    echo "==> $notices (cargo about)"
    rm -f "$notices" "$notices.stamp"
    cargo fetch --locked --quiet
    cargo about generate --frozen --fail -c about.toml -o "$notices" about.hbs \
        2>"$dist/cargo-about.log" || {
        cat "$dist/cargo-about.log" >&2
        echo "release.sh: cargo about generate failed (see above; accepted licences: about.toml)" >&2
        exit 1
    }
    printf '%s\n' "$stamp" >"$notices.stamp"
fi

# The deb's /usr/share/doc/xray/copyright, in Debian's machine-readable format (DEP-5): a
# header, the files paragraph, and the licence's text as a stand-alone paragraph (each line
# indented by one space, an empty line written " .").
mkdir -p "$dist/deb"
{
    printf '%s\n' \
        'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' \
        'Upstream-Name: xray-daemon-rs' \
        'Comment: The crates linked into /usr/bin/xray and their licences are listed in' \
        ' /usr/share/doc/xray/THIRD-PARTY-LICENSES.' \
        '' \
        'Files: *' \
        'Copyright: xray-daemon-rs authors' \
        'License: Apache-2.0' \
        '' \
        'License: Apache-2.0'
    sed 's/^$/./; s/^/ /' LICENSE
} >"$dist/deb/copyright"

triple_of() {
    case "$1" in
    amd64) echo x86_64-unknown-linux-gnu ;;
    arm64) echo aarch64-unknown-linux-gnu ;;
    esac
}

for arch in "${arches[@]}"; do
    triple="$(triple_of "$arch")"
    echo "==> static binary for $arch ($triple)"
    # An explicit --target keeps +crt-static off build scripts and proc-macros.
    if [[ "$arch" == arm64 ]]; then
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
        export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
        export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
    fi
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --target "$triple" --bin xray
    bin="target/$triple/release/xray"
    if ! file "$bin" | grep -Eq 'statically linked|static-pie linked'; then
        echo "release.sh: $bin is not statically linked: $(file -b "$bin")" >&2
        exit 1
    fi
    mkdir -p "$dist/linux-$arch"
    cp "$bin" "$dist/linux-$arch/xray"

    name="aws-xray-daemon-linux-$arch-$version"
    echo "==> $name.{zip,rpm,deb}"
    stage="$dist/zip-$arch"
    rm -rf "$stage" "$dist/$name.zip"
    mkdir -p "$stage"
    cp "$bin" "$stage/xray"
    cp cfg.yaml "$stage/cfg.yaml"
    cp LICENSE "$dist/THIRD-PARTY-LICENSES" "$stage/"
    (cd "$stage" && zip -q -X "../$name.zip" xray cfg.yaml LICENSE THIRD-PARTY-LICENSES)
    rm -rf "$stage"
    cargo generate-rpm --target "$triple" -o "$dist/$name.rpm"
    cargo deb --target "$triple" --no-build --no-strip --deb-version "1:$version" \
        --output "$dist/$name.deb" >/dev/null
done

for arch in "${arches[@]}"; do
    context="$dist/image-$arch"
    echo "==> image context $context"
    rm -rf "$context"
    mkdir -p "$context/usr/bin"
    cp "$dist/linux-$arch/xray" "$context/xray"
    ln -s /xray "$context/usr/bin/xray"
    cp cfg.yaml "$context/cfg.yaml"
    cp LICENSE "$dist/THIRD-PARTY-LICENSES" "$context/"
    # The CA bundle rustls trusts for TLS to AWS (Debian's ca-certificates).
    cp /etc/ssl/certs/ca-certificates.crt "$context/ca-certificates.crt"
    # uid and home as in the original image, so credentials mounted at /home/xray/.aws work.
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
        'xray:x:10001:10001:AWS X-Ray daemon:/home/xray:/sbin/nologin' >"$context/passwd"
    printf '%s\n' 'root:x:0:' 'xray:x:10001:' >"$context/group"
done

if ((image)) && [[ " ${arches[*]} " == *" amd64 "* ]]; then
    echo "==> docker build xray-daemon-rs:$version"
    docker build --quiet -f Dockerfile -t "xray-daemon-rs:$version" -t xray-daemon-rs:latest \
        "$dist/image-amd64" >/dev/null
fi

# Both images in one OCI archive whose index names linux/amd64 and linux/arm64, for
# `skopeo copy --all oci-archive:FILE docker://REGISTRY/xray-daemon-rs:<V>` (or `podman load`).
# Debian 12 has no `docker buildx`, and `docker manifest` needs a registry; buildah builds
# either architecture without emulation because the Dockerfile only COPYs (no RUN). What works
# as root on a machine with no container runtime set up:
#   - a storage of its own under target/buildah (--root/--runroot), so nothing lands in
#     /var/lib/containers and a rerun starts clean;
#   - --storage-driver vfs: overlay needs kernel overlayfs (or fuse-overlayfs) mounts that a
#     sandbox may refuse; vfs copies layers, cheap for an image of a dozen MB;
#   - --isolation chroot: no runc/crun needed (nothing is run anyway);
#   - OCI format (buildah's default): its image config has no HEALTHCHECK field, so buildah
#     warns and leaves the Dockerfile's HEALTHCHECK out of these images; the task definition and
#     the compose file set their own health check (packaging/README.md). The Docker-built image
#     above keeps it.
if ((both)); then
    oci="$dist/xray-daemon-rs-$version.oci.tar"
    echo "==> $oci (buildah: linux/amd64 + linux/arm64)"
    store="target/buildah"
    rm -rf "$store" "$oci"
    bh() {
        buildah --root "$root/$store/root" --runroot "$root/$store/run" --storage-driver vfs "$@"
    }
    list="localhost/xray-daemon-rs:$version"
    bh manifest create "$list" >/dev/null
    for arch in amd64 arm64; do
        bh bud --quiet --isolation chroot --os linux --arch "$arch" -f Dockerfile \
            -t "$list-$arch" "$dist/image-$arch" >/dev/null 2>"$store.log" || {
            cat "$store.log" >&2
            exit 1
        }
        bh manifest add "$list" "containers-storage:$list-$arch" >/dev/null
    done
    bh manifest push --quiet --all --format oci "$list" \
        "oci-archive:$root/$oci:xray-daemon-rs:$version"
    rm -rf "$store" "$store.log"
fi

echo "==> artifacts (bytes)"
(cd "$dist" && find . -maxdepth 2 -type f \( -name '*.zip' -o -name '*.rpm' -o -name '*.deb' \
    -o -name '*.oci.tar' -o -path './linux-*/xray' -o -path ./THIRD-PARTY-LICENSES \) \
    -printf '%10s  %P\n' | sort -k2)
if ((image)) && [[ " ${arches[*]} " == *" amd64 "* ]]; then
    printf '%10s  image xray-daemon-rs:%s\n' \
        "$(docker image inspect -f '{{.Size}}' "xray-daemon-rs:$version")" "$version"
fi
