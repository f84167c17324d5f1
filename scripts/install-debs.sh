#!/usr/bin/env bash
# Installs the Debian packages the tests run as real peers (one line each
# in the list below: package and why). Idempotent: packages already
# installed are left alone, and apt is asked only for missing ones. Needs
# root (CI and the development machines run as root).
set -euo pipefail

# package          what uses it
pkgs=(
	dbus-daemon      # attest/systemd: a real D-Bus daemon (systemd is not PID 1 here)
	swtpm            # attest/tpmdevid: a real software TPM 2.0 (swtpm socket, mssim protocol)
	swtpm-tools      # attest/tpmdevid: swtpm_setup for the TPM state
	podman           # attest/docker: real containers and a Docker-compatible Engine API
	runc             # attest/docker: podman's runtime here (crun refuses this host's hybrid cgroups)
	softhsm2         # ca/keymanager: a real PKCS#11 token (SoftHSM2) for the CA and JWT keys
	systemd          # deploy/systemd: systemd-analyze verify/security and systemd-sysusers on the units (not booted)
)

missing=()
for p in "${pkgs[@]}"; do
	if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]]; then
		missing+=("$p")
	fi
done
if ((${#missing[@]} == 0)); then
	exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "install-debs.sh: Debian packages ${missing[*]} are needed; run as root (or apt-get install them)" >&2
	exit 1
fi
echo "install-debs.sh: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
