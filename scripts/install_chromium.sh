#!/usr/bin/env bash
# The browser the demo page's tests drive: Debian's chromium package (Playwright's own browser
# download is not reachable from the build machines). Does nothing when it is installed;
# needs root (CI runs as root) or passwordless sudo.
set -euo pipefail
CHROMIUM=${EKYC_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "install_chromium: $CHROMIUM is missing and this user cannot apt-get install chromium" >&2
    exit 1
fi
echo "install_chromium: installing Debian's chromium" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null
"$CHROMIUM" --version >&2
