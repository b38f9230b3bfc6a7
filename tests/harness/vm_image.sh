#!/usr/bin/env bash
# Build the Debian 12 node image for tests/harness/vm.py: OUT/root.raw (ext4, sparse), OUT/vmlinuz, OUT/initrd.img.
# Usage: vm_image.sh OUT PACKAGE...   (run as root; OUT must not exist yet; tests/harness/vm.py picks OUT by a hash of
# this script, the suite and the package list, so a change to any of them builds a new image).
#
# The image has no SSH host key and no authorized key: each node gets its own from a seed disk (/dev/vdb, ext4,
# label glseed) that gl-seed.service copies in before sshd starts, so no two nodes share a host key and a node
# without its seed has no sshd at all rather than a shared, unpinned one. The guest has no route to the outside:
# everything a test installs comes from the host over SSH.
set -euo pipefail
out=$1
shift
suite=bookworm
work="$out.work"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

customize=$(cat <<'HOOK'
set -eu
root=$1
# No host keys in the image: the seed disk brings each node's own.
rm -f "$root"/etc/ssh/ssh_host_*
echo 'LABEL=glroot / ext4 rw,relatime 0 1' > "$root/etc/fstab"
echo glnode > "$root/etc/hostname"
# The user-mode network's fixed addresses: no DHCP wait at boot.
mkdir -p "$root/etc/systemd/network"
printf '[Match]\nName=en* eth*\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\n' \
  > "$root/etc/systemd/network/10-user.network"
chroot "$root" systemctl enable systemd-networkd.service
# Under TCG every timer that wakes to do housekeeping costs the tests real CPU; none of it matters to a throwaway node.
chroot "$root" systemctl mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
  man-db.timer e2scrub_all.timer fstrim.timer systemd-tmpfiles-clean.timer
# Two ordinary users: the one a test restricts and the control measured beside it.
chroot "$root" useradd --create-home --shell /bin/bash --uid 1000 gltest
chroot "$root" useradd --create-home --shell /bin/bash --uid 1001 glcontrol
cat > "$root/usr/local/sbin/gl-seed" <<'SEED'
#!/bin/sh
# Copy this node's SSH host key and authorized keys from the seed disk (tests/harness/vm.py writes it).
set -eu
mkdir -p /run/glseed
mount -o ro LABEL=glseed /run/glseed
install -m 0600 -o root -g root /run/glseed/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key
install -m 0644 -o root -g root /run/glseed/ssh_host_ed25519_key.pub /etc/ssh/ssh_host_ed25519_key.pub
for file in /run/glseed/authorized/*; do
  user=$(basename "$file")
  home=$(getent passwd "$user" | cut -d: -f6)
  install -d -m 0700 -o "$user" -g "$user" "$home/.ssh"
  install -m 0600 -o "$user" -g "$user" "$file" "$home/.ssh/authorized_keys"
done
umount /run/glseed
SEED
chmod 0755 "$root/usr/local/sbin/gl-seed"
cat > "$root/etc/systemd/system/gl-seed.service" <<'UNIT'
[Unit]
Description=gpuledger test node: host key and authorized keys from the seed disk
Requires=dev-disk-by\x2dlabel-glseed.device
After=dev-disk-by\x2dlabel-glseed.device local-fs.target
Before=ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/gl-seed

[Install]
RequiredBy=ssh.service
WantedBy=multi-user.target
UNIT
chroot "$root" systemctl enable gl-seed.service
# Only the seeded ed25519 key: sshd should not warn about the others on every start.
echo 'HostKey /etc/ssh/ssh_host_ed25519_key' > "$root/etc/ssh/sshd_config.d/00-hostkey.conf"
HOOK
)

mmdebstrap --quiet --variant=apt --include="$(IFS=,; echo "$*")" \
  --customize-hook="$customize" "$suite" "$work/root"

# The image has exactly one kernel: the one linux-image-amd64 pulled in.
cp "$work"/root/boot/vmlinuz-* "$work/vmlinuz"
cp "$work"/root/boot/initrd.img-* "$work/initrd.img"
chmod 0644 "$work/vmlinuz" "$work/initrd.img"
mkfs.ext4 -q -L glroot -d "$work/root" "$work/root.raw" 4G
rm -rf "$work/root"
mv "$work" "$out"
trap - EXIT
