#!/usr/bin/env bash
# Installs what the release build (scripts/release.sh) and the packaging tests
# (tests/packaging/main.rs) need, skipping whatever is already there. Run as root on Debian 12:
#   - Debian: docker.io (dockerd), rpm, qemu-user-static (qemu-aarch64-static),
#     gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (the arm64 C compiler, linker and libc),
#     file, zip/unzip, openssl, systemd (systemd-analyze), ca-certificates (the CA bundle the
#     image ships), buildah (the arm64 image and the multi-arch OCI archive) and skopeo (the
#     tests read that archive with it);
#   - rustup: the aarch64-unknown-linux-gnu standard library;
#   - cargo: cargo-generate-rpm 0.21.1, cargo-deb 3.8.0 and cargo-about 0.9.3 (the third-party
#     licence notices), pinned, --locked.
# It does not start dockerd: the tests start it when it is not running and stop what they started.
set -euo pipefail

need_apt=()
want() { # want COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 || need_apt+=("$2")
}
want dockerd docker.io
want rpm rpm
want rpmbuild rpm
want qemu-aarch64-static qemu-user-static
want aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
want file file
want zip zip
want unzip unzip
want openssl openssl
want systemd-analyze systemd
want buildah buildah
want skopeo skopeo
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || need_apt+=(ca-certificates)
# The arm64 C library for the cross compiler (only recommended by gcc-aarch64-linux-gnu).
[[ -f /usr/aarch64-linux-gnu/include/stdio.h ]] || need_apt+=(libc6-dev-arm64-cross)

if ((${#need_apt[@]})); then
    if [[ "$(id -u)" != 0 ]]; then
        echo "packaging-setup: missing ${need_apt[*]}; run this script as root" >&2
        exit 1
    fi
    echo "==> apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
    echo "==> rustup target add aarch64-unknown-linux-gnu"
    rustup target add aarch64-unknown-linux-gnu
fi

cargo_tool() { # cargo_tool BINARY CRATE VERSION [CARGO INSTALL ARGUMENTS...]
    local binary="$1" crate="$2" version="$3"
    shift 3
    if ! "$binary" --version 2>/dev/null | grep -q "$version"; then
        echo "==> cargo install $crate --version $version --locked $*"
        cargo install "$crate" --version "$version" --locked --quiet "$@"
    fi
    if ! command -v "$binary" >/dev/null 2>&1; then
        echo "packaging-setup: cargo install $crate installed no $binary" >&2
        exit 1
    fi
}
# `cargo generate-rpm --version` prints "cargo-generate-rpm 0.21.1"; cargo-deb prints "3.8.0";
# cargo-about prints "cargo-about 0.9.3".
cargo_tool cargo-generate-rpm cargo-generate-rpm 0.21.1
cargo_tool cargo-deb cargo-deb 3.8.0
# cargo-about's command needs its `cli` feature (without it, cargo installs nothing and says so
# only as a warning).
cargo_tool cargo-about cargo-about 0.9.3 --features cli
echo "==> packaging tools ready"
