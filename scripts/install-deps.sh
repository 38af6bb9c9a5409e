#!/bin/sh
# Installs the Debian packages moesz builds against (only those missing;
# libsimde-dev is for tests/test_kernels_x512.c only).
set -e
PKGS="build-essential pkg-config libutf8proc-dev libzstd-dev libopenblas-dev liblapacke-dev libpcre2-dev libcjson-dev libxxhash-dev libmicrohttpd-dev libsimde-dev"
[ -n "$MOESZ_FUZZ" ] && PKGS="$PKGS clang libclang-rt-14-dev"
MISSING=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || MISSING="$MISSING $p"
done
if [ -n "$MISSING" ]; then
  echo "install-deps: installing$MISSING" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $MISSING >/dev/null
fi
