#!/usr/bin/env bash
# Builds every release artifact into target/dist/ and prints their sizes:
#   linux-amd64/xray, linux-arm64/xray     static binaries (glibc, +crt-static; run on Amazon
#                                           Linux 2 and 2023, any distribution, FROM scratch)
#   aws-xray-daemon-linux-{amd64,arm64}-<V>.zip   xray + cfg.yaml, as the original's zips
#   aws-xray-daemon-linux-{amd64,arm64}-<V>.rpm   package `xray`, epoch 1 (upgrades the original)
#   aws-xray-daemon-linux-{amd64,arm64}-<V>.deb   package `xray`, version 1:<V> (upgrades the original)
#   image-amd64/                            the Docker build context (Dockerfile at the root)
#   the image xray-daemon-rs:<V> (and :latest), linux/amd64, in the local Docker engine
# <V> is the package version in Cargo.toml.
#
# Needs what scripts/packaging-setup.sh installs (run it once as root), and for the image a
# running Docker engine (e.g. `dockerd --iptables=false --bridge=none &`).
# Options: --no-image  skip `docker build` (the context is still staged)
#          --arch A    only amd64 or only arm64 (the image needs amd64)
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
for tool in cargo-generate-rpm cargo-deb zip file; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [[ " ${arches[*]} " == *" arm64 "* ]]; then
    command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(aarch64-linux-gnu-gcc)
    rustup target list --installed | grep -qx aarch64-unknown-linux-gnu ||
        missing+=("rust target aarch64-unknown-linux-gnu")
fi
if ((${#missing[@]})); then
    echo "release.sh: missing ${missing[*]}: run scripts/packaging-setup.sh (as root) first" >&2
    exit 1
fi

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
dist="target/dist"
mkdir -p "$dist"

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
    (cd "$stage" && zip -q -X "../$name.zip" xray cfg.yaml)
    rm -rf "$stage"
    cargo generate-rpm --target "$triple" -o "$dist/$name.rpm"
    cargo deb --target "$triple" --no-build --no-strip --deb-version "1:$version" \
        --output "$dist/$name.deb" >/dev/null
done

if [[ " ${arches[*]} " == *" amd64 "* ]]; then
    context="$dist/image-amd64"
    echo "==> image context $context"
    rm -rf "$context"
    mkdir -p "$context/usr/bin"
    cp "$dist/linux-amd64/xray" "$context/xray"
    ln -s /xray "$context/usr/bin/xray"
    cp cfg.yaml "$context/cfg.yaml"
    # The CA bundle rustls trusts for TLS to AWS (Debian's ca-certificates).
    cp /etc/ssl/certs/ca-certificates.crt "$context/ca-certificates.crt"
    # uid and home as in the original image, so credentials mounted at /home/xray/.aws work.
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
        'xray:x:10001:10001:AWS X-Ray daemon:/home/xray:/sbin/nologin' >"$context/passwd"
    printf '%s\n' 'root:x:0:' 'xray:x:10001:' >"$context/group"
    if ((image)); then
        echo "==> docker build xray-daemon-rs:$version"
        docker build --quiet -f Dockerfile -t "xray-daemon-rs:$version" -t xray-daemon-rs:latest \
            "$context" >/dev/null
    fi
fi

echo "==> artifacts (bytes)"
(cd "$dist" && find . -maxdepth 2 -type f \( -name '*.zip' -o -name '*.rpm' -o -name '*.deb' \
    -o -path './linux-*/xray' \) -printf '%10s  %P\n' | sort -k2)
if ((image)) && [[ " ${arches[*]} " == *" amd64 "* ]]; then
    printf '%10s  image xray-daemon-rs:%s\n' \
        "$(docker image inspect -f '{{.Size}}' "xray-daemon-rs:$version")" "$version"
fi
