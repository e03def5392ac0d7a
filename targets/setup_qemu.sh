#!/bin/sh
# qemu-user for the emulated boards, new enough to run RISC-V vector (RVV 1.0) int8 code.
#
# Debian 12's qemu 7.2 aborts translating the int8 kernels' RVV code (an assertion in
# decode_save_opc, fixed in qemu 8.1), so on Debian 12 qemu-user comes from its backports suite,
# from the same mirror apt already uses. Newer Debian releases ship a new enough qemu-user.
# Idempotent: does nothing when the installed qemu is new enough.
set -eu

NEED=8.1
version() { qemu-riscv64 --version 2>/dev/null | sed -n 's/.*version \([0-9]*\.[0-9]*\).*/\1/p'; }
new_enough() { [ -n "$1" ] && [ "$(printf '%s\n%s\n' "$NEED" "$1" | sort -V | head -n 1)" = "$NEED" ]; }

have=$(version)
new_enough "$have" && exit 0

SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
. /etc/os-release
if [ "${VERSION_CODENAME:-}" != bookworm ]; then
    echo "setup: warning: qemu-user ${have:-missing} is older than $NEED; RVV int8 code will not run under emulation" >&2
    exit 0
fi
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb \([^ ]*\) bookworm .*/\1/p' /etc/apt/sources.list 2>/dev/null | head -n 1)
if [ -z "$mirror" ]; then
    echo "setup: warning: no Debian mirror found in apt's sources for bookworm-backports; qemu-user stays ${have:-missing}" >&2
    exit 0
fi
echo "setup: qemu-user from bookworm-backports (${have:-none} cannot run RVV int8 code)"
echo "deb $mirror bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/tinyasr-backports.list >/dev/null
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports qemu-user >/dev/null
have=$(version)
new_enough "$have" || { echo "setup: qemu-user is $have after installing from backports" >&2; exit 1; }
