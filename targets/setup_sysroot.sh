#!/bin/sh
# The board sysroot: Debian 11 (bullseye)'s C and C++ runtime for aarch64 and riscv64, which the
# board runtime (targets/native) is built against so that it runs on glibc 2.31 images
# (Raspberry Pi OS Bullseye, older Debian/Ubuntu on RISC-V boards) as well as newer ones.
#
# Debian 12's cross toolchains link against glibc 2.36 and libstdc++ 12 (GLIBC_2.34,
# GLIBCXX_3.4.30). This machine's cross g++ stays the compiler; only the headers and libraries
# come from bullseye's cross packages (glibc 2.31, libstdc++ 10: GLIBCXX_3.4.28), unpacked with
# dpkg-deb into one tree: nothing is installed into the system and apt's own sources are not
# touched (apt reads bullseye's package list into a private state directory below the tree).
# Idempotent: does nothing when the tree holds the packages listed below.
set -eu

ROOT=${TINYASR_CACHE:-$HOME/.cache/tinyasr}/sysroot/bullseye
SUITE=bullseye
PACKAGES=""
for arch in arm64 riscv64; do
    PACKAGES="$PACKAGES libc6-$arch-cross libc6-dev-$arch-cross linux-libc-dev-$arch-cross
        libgcc-s1-$arch-cross libgcc-10-dev-$arch-cross libatomic1-$arch-cross
        libstdc++6-$arch-cross libstdc++-10-dev-$arch-cross"
done
WANT=$(echo $PACKAGES | tr ' ' '\n' | sort | tr '\n' ' ')

[ -f "$ROOT/packages.txt" ] && [ "$(cut -d' ' -f1 "$ROOT/packages.txt" | tr '\n' ' ')" = "$WANT" ] && exit 0

# The mirror apt already uses (bullseye is on deb.debian.org until it moves to the archive).
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb \([^ ]*\) [a-z]* main.*/\1/p' /etc/apt/sources.list 2>/dev/null | head -n 1)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian

echo "setup: the glibc 2.31 board sysroot from Debian $SUITE's cross packages into $ROOT"
work=$(mktemp -d "${TMPDIR:-/tmp}/tinyasr-sysroot.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
touch "$work/status"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
apt_in_private() {
    "$@" -q -o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" \
        -o Dir::State::Status="$work/status" -o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)"
}
fetch_from() {
    echo "deb [signed-by=$keyring] $1 $SUITE main" > "$work/sources.list"
    apt_in_private apt-get update >/dev/null 2>&1 &&
        (cd "$work/debs" && apt_in_private apt-get download $PACKAGES >/dev/null 2>&1)
}
fetch_from "$mirror" || fetch_from http://archive.debian.org/debian || {
    echo "setup: could not download Debian $SUITE's cross packages ($mirror, archive.debian.org)" >&2
    exit 1
}

rm -rf "$ROOT.new"
mkdir -p "$ROOT.new"
for deb in "$work"/debs/*.deb; do
    dpkg-deb -x "$deb" "$ROOT.new"
    dpkg-deb -f "$deb" Package Version | paste -sd' ' | sed 's/^Package: \([^ ]*\) Version: /\1 /'
done | sort > "$ROOT.new/packages.txt"
rm -rf "$ROOT"
mv "$ROOT.new" "$ROOT"
