# shellcheck shell=bash
# Shared set-up for scripts/demo, scripts/test and scripts/bench: installs what
# a fresh Debian machine lacks (libzmq3-dev, pkg-config, Go modules) and puts
# Go on PATH. Source it from the repository root.
set -euo pipefail

export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

say() { printf '==> %s\n' "$*" >&2; }

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
		say "need root (or sudo) to run: $*"; return 1; fi
}

# ensure_packages installs libzmq3-dev, pkg-config and any packages named.
ensure_packages() {
	local missing=()
	for p in libzmq3-dev pkg-config "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		say "installing ${missing[*]}"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
	pkg-config --exists libzmq || { say "libzmq not found by pkg-config after install"; return 1; }
}

ensure_go() {
	if ! command -v go >/dev/null; then
		say "Go is not installed: expected at /usr/local/go (Go 1.26 or newer)"; return 1
	fi
	go mod download
}

# setup installs what every script needs, plus the packages named.
setup() {
	ensure_packages "$@"
	ensure_go
}
