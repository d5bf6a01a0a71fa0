#!/bin/sh
# Installs the Debian packages the test suite drives (an independent SCEP client,
# openssl for CMS checks, chromium for browser tests) when they are missing.
set -e
missing=""
command -v scepclient >/dev/null 2>&1 || missing="$missing scep"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages:$missing"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
else
  echo "note: missing Debian packages:$missing (tests that need them are skipped)" >&2
fi
