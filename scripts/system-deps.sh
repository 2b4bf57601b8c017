#!/usr/bin/env bash
# Install the Debian packages the test suite needs, when running as root and missing:
# sshd and unshare for the test fleet (tests/fleet), iotop for the iotop profiler,
# chromium for the report's browser test (tests/integration/test_report_chromium.py),
# strace, tcpdump and prometheus-node-exporter for those profilers' tests.
# Without root the tests that need them are skipped with that reason.
set -euo pipefail
needed=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || needed+=(openssh-server)
command -v ssh >/dev/null 2>&1 || needed+=(openssh-client)
command -v unshare >/dev/null 2>&1 || needed+=(util-linux)
command -v ssh-keygen >/dev/null 2>&1 || needed+=(openssh-client)
command -v pgrep >/dev/null 2>&1 || needed+=(procps)
command -v iotop >/dev/null 2>&1 || [ -x /usr/sbin/iotop ] || needed+=(iotop)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || needed+=(chromium)
# strace for the strace profiler; node_exporter (not started: the tests run it themselves)
# for the Prometheus scraper's test against a real exporter.
command -v strace >/dev/null 2>&1 || needed+=(strace)
# tcpdump for the packet capture's test (it captures loopback as root).
command -v tcpdump >/dev/null 2>&1 || [ -x /usr/bin/tcpdump ] || needed+=(tcpdump)
[ -x /usr/bin/prometheus-node-exporter ] || needed+=(prometheus-node-exporter)
# The shell-completion tests drive real zsh and fish.
command -v zsh >/dev/null 2>&1 || needed+=(zsh)
command -v fish >/dev/null 2>&1 || needed+=(fish)
[ ${#needed[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "not root or no apt-get: tests needing ${needed[*]} will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $(printf "%s\n" "${needed[@]}" | sort -u)
