#!/usr/bin/env bash
# Builds the Debian package, installs it with dpkg, checks that what it ships works (the binary, a man
# page, the bash completion, the unit, the bcs user), then removes it and checks that none of its files
# is left. Needs root (dpkg -i), cargo-deb (installed here when missing), man-db and bash-completion.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null 2>&1; then
    cargo install cargo-deb --locked
fi

deb=$(packaging/build-deb.sh | tail -n 1)
echo "check-deb: built ${deb}"
test -f "$deb"

dpkg -i "$deb"
listed=$(mktemp)
trap 'rm -f "$listed"' EXIT
dpkg-query -L bcs >"$listed"

test "$(command -v bcs)" = /usr/bin/bcs
bcs --version
man -w bcs-serve
man -w bcs-status
bash -c 'source /usr/share/bash-completion/completions/bcs && complete -p bcs'
getent passwd bcs
unit=$(grep -E '/bcs\.service$' "$listed")
grep -q '^ExecStart=/usr/bin/bcs serve --state /var/lib/bcs$' "$unit"
grep -q '^User=bcs$' "$unit"
if command -v systemd-analyze >/dev/null 2>&1; then
    systemd-analyze verify "$unit"
fi

dpkg -r bcs
if dpkg-query -W -f='${Status}\n' bcs 2>/dev/null | grep -q ' installed$'; then
    echo "check-deb: bcs is still installed after dpkg -r" >&2
    exit 1
fi
left=0
while IFS= read -r path; do
    # Directories such as /usr/bin are shared with other packages; the package's files must be gone.
    if [ -e "$path" ] && [ ! -d "$path" ]; then
        echo "check-deb: left after dpkg -r: $path" >&2
        left=1
    fi
done <"$listed"
if [ "$left" -ne 0 ]; then
    exit 1
fi

# Purged, not even the unit's enablement (kept by dpkg -r, as for every Debian service) remains. The
# bcs user does, as Debian leaves system users.
dpkg -P bcs
if [ -e /etc/systemd/system/multi-user.target.wants/bcs.service ] ||
    [ -L /etc/systemd/system/multi-user.target.wants/bcs.service ]; then
    echo "check-deb: the unit is still enabled after dpkg -P" >&2
    exit 1
fi
if dpkg-query -W bcs >/dev/null 2>&1; then
    echo "check-deb: dpkg still knows bcs after dpkg -P" >&2
    exit 1
fi
echo "check-deb: ok"
