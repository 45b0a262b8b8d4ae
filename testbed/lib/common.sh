# shellcheck shell=bash
# Shared helpers for the testbed scripts. Source it; it defines functions only.

# The repository root, whatever directory the caller runs from.
XVS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export XVS_ROOT

# Namespace names: every namespace of the testbed is "$XVS_NS_PREFIX-ROLE"
# (xvs-client, xvs-director, xvs-rs1...), so that two clusters with different
# prefixes can run side by side on one machine. The default state directory
# follows the prefix (see xvs_default_state).
XVS_NS_PREFIX=${XVS_NS_PREFIX:-xvs}
export XVS_NS_PREFIX

# ns_of ROLE: the namespace of a role (client, director, switch, router, rsK).
ns_of() { printf '%s-%s\n' "$XVS_NS_PREFIX" "$1"; }

# The state directory a script uses when XVS_TESTBED_STATE is not set:
# /run/xvs-testbed for the default prefix, /run/xvs-testbed-PREFIX for any
# other (two clusters must not share pid files and configs).
xvs_default_state() {
    if [ "$XVS_NS_PREFIX" = xvs ]; then echo /run/xvs-testbed; else echo "/run/xvs-testbed-$XVS_NS_PREFIX"; fi
}

# poll DESCRIPTION SECONDS CMD...: runs CMD every 0.1 s until it succeeds;
# fails (returns 1, says what it waited for) after SECONDS.
poll() {
    local what=$1 secs=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "timed out after ${secs} s waiting for: $what" >&2
    return 1
}

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# skip_missing NAME NEED: the one way a test script skips. Exits 0 saying
# that NAME cannot run because it needs NEED, which this machine lacks
# (root, a kernel feature, a tool: never an error of the code under test,
# which fails);
# with XVS_REQUIRE_ALL=1 (testbed/test.sh exports it) exits 1 instead, so
# that a run that says "all tests passed" has run them all.
skip_missing() {
    if [ "${XVS_REQUIRE_ALL:-0}" = 1 ]; then
        echo "FAIL $1: it needs $2, and XVS_REQUIRE_ALL=1 forbids skipping (provide it, or unset XVS_REQUIRE_ALL)"
        exit 1
    fi
    echo "SKIP $1: it needs $2"
    exit 0
}

# check_ns_prefix: dies unless XVS_NS_PREFIX is a short name of lower-case
# letters, digits and dashes (it becomes part of namespace names and paths).
check_ns_prefix() {
    [[ "$XVS_NS_PREFIX" =~ ^[a-z0-9][a-z0-9-]{0,11}$ ]] ||
        die "XVS_NS_PREFIX: '$XVS_NS_PREFIX' is not 1 to 12 lower-case letters, digits or dashes"
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "$1 needs root (it installs packages and creates network namespaces): run it with sudo"
}

# System packages every build and test of xvs needs, in one list so that
# demo.sh and test.sh agree. Installed only when missing: quiet and quick
# on a machine that has them already.
# shellcheck disable=SC2034 # used by the scripts that source this file
XVS_PACKAGES=(
    build-essential   # cc and c++: -sys crates and libFuzzer (fuzz smoke run)
    clang llvm        # the director's XDP program, and libxdp's own BPF objects
    m4 libelf-dev zlib1g-dev libpcap-dev pkg-config make  # libxdp/libbpf, built by xsk-rs
    iproute2          # ip: namespaces, veths, bridge of the testbed (cluster.sh)
    ethtool           # cluster.sh --offload-off: transmit checksum offload off on the endpoints
    nftables          # the kernel's NAT load balancing, the testbed's peer balancer
    nginx-light       # the real servers' web server
    curl              # HTTP checks of the end-to-end suite
    wrk               # HTTP load from the client (demo, benchmarks)
    iputils-ping      # reachability checks
    tcpdump           # the DR suite's capture of what a real server receives and sends
    keepalived        # VRRP only: the adverts packet/tests/vrrp_captures.rs decodes, the HA interop drill
    tshark            # decodes the director's own VRRP adverts (packet/tests/vrrp_captures.rs)
    python3           # UDP echo server and client, stats file reader
    systemd           # systemd-analyze: the agent's test verifies xvs-agent.service
    haproxy           # the agent's HAProxy agent-check face, tested against HAProxy itself (e2e/agent.sh)
)

# What testbed/bench.sh needs beyond XVS_PACKAGES: the peer balancers it
# measures xvs against (nftables is already there).
# shellcheck disable=SC2034 # used by bench.sh
XVS_BENCH_PACKAGES=(
    haproxy           # HAProxy in mode tcp, the userspace peer
)

# ensure_packages PKG...: installs the ones dpkg does not know as installed.
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_rust: cargo with rustfmt and clippy.
ensure_rust() {
    if [ -f "$HOME/.cargo/env" ]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null || die "cargo is not installed: install Rust with rustup (https://rustup.rs), then run this again"
    local c
    for c in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" >/dev/null
    done
}
