#!/bin/bash
# Builds the Debian packages into target/debian/ (or $1) with dpkg-deb alone: no cargo-deb, no
# debhelper, nothing beyond what a Debian machine with cargo already has.
#   thinsend-native_<version>_amd64.deb: the binary, one manual page per subcommand, bash/zsh/fish
#     completions (all generated from the clap definitions by the binary itself), the README, and
#     the systemd units (*.service, *.timer) in contrib/ or contrib/*/ when the tree has them.
#   thinsend-native-linbit-compat_<version>_all.deb: /usr/bin/thin_send and thin_recv as symlinks to
#     the binary (it takes thin-send-recv 1.1.3's options under those names). A separate package
#     because installing them over LINBIT's thin-send-recv must be a choice: it Conflicts/Replaces
#     thin-send-recv, so apt swaps one for the other only when asked to.
# Usage: bash scripts/package.sh [OUT_DIR]     (THINSEND_BIN=path skips the cargo build)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/debian}
bin=${THINSEND_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked --quiet --bin thinsend-native
  bin=target/release/thinsend-native
fi
version=$("$bin" --version | awk '{print $2}')
[[ $version =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || { echo "package.sh: odd version '$version'" >&2; exit 1; }
arch=$(dpkg --print-architecture)
pkg=thinsend-native
maint="thinsend-native maintainers <thinsend-native@users.noreply.github.com>"

rm -rf "$out"
mkdir -p "$out"
stage=$(mktemp -d "${TMPDIR:-/tmp}/thinsend-pkg.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# --- the main package -------------------------------------------------------------------------
root=$stage/$pkg
install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/man/man1" "$root/usr/share/doc/$pkg" \
  "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d"
install -m 0755 "$bin" "$root/usr/bin/$pkg"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/$pkg"

"$root/usr/bin/$pkg" manpages "$stage/man" >/dev/null
for page in "$stage"/man/*.1; do
  gzip -9n < "$page" > "$root/usr/share/man/man1/$(basename "$page").gz"
done
"$root/usr/bin/$pkg" completions bash > "$root/usr/share/bash-completion/completions/$pkg"
"$root/usr/bin/$pkg" completions zsh > "$root/usr/share/zsh/vendor-completions/_$pkg"
"$root/usr/bin/$pkg" completions fish > "$root/usr/share/fish/vendor_completions.d/$pkg.fish"

install -m 0644 README.md "$root/usr/share/doc/$pkg/README.md"
gzip -9n "$root/usr/share/doc/$pkg/README.md"
install -m 0644 docs/STREAM.md "$root/usr/share/doc/$pkg/STREAM.md"
gzip -9n "$root/usr/share/doc/$pkg/STREAM.md"
cat > "$root/usr/share/doc/$pkg/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: $pkg

Files: *
License: MIT or Apache-2.0
 On Debian systems the Apache License 2.0 is in /usr/share/common-licenses/Apache-2.0.
EOF
# contrib/ systemd units, when the tree has them at build time.
units=()
if [ -d contrib ]; then
  mapfile -t units < <(find contrib -maxdepth 2 -type f \( -name '*.service' -o -name '*.timer' \) | sort)
fi
if [ ${#units[@]} -gt 0 ]; then
  install -d "$root/lib/systemd/system"
  install -m 0644 "${units[@]}" "$root/lib/systemd/system/"
fi
find "$root" -type d -exec chmod 0755 {} +
find "$root/usr/share" -type f -exec chmod 0644 {} +

# Shared-library dependencies from the binary itself: the newest glibc symbol version it uses.
glibc=$(objdump -T "$root/usr/bin/$pkg" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: $pkg
Version: $version
Architecture: $arch
Maintainer: $maint
Installed-Size: $size
Depends: libc6 (>= $glibc), libgcc-s1, lvm2, dmsetup
Suggests: openssh-client, zstd
Section: admin
Priority: optional
Description: send and receive LVM thin volumes and their differences
 zfs send | zfs recv for LVM thin volumes: sends a thin volume, or only what
 changed between two thin snapshots, as a checksummed stream through a pipe
 (ssh, socat, zstd), and receives it atomically into a thin LV, a file or a
 block device. It reads the pool's dm-thin metadata itself, so
 thin-provisioning-tools are not needed at run time. Also dump, ls, diff and
 check of dm-thin metadata, compatible with thin_dump, thin_ls and thin_delta.
EOF
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
  > "$root/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out/${pkg}_${version}_${arch}.deb" >/dev/null

# --- the LINBIT-compatible names --------------------------------------------------------------
compat=$stage/$pkg-linbit-compat
install -d "$compat/DEBIAN" "$compat/usr/bin" "$compat/usr/share/doc/$pkg-linbit-compat"
ln -s "$pkg" "$compat/usr/bin/thin_send"
ln -s "$pkg" "$compat/usr/bin/thin_recv"
cp "$root/usr/share/doc/$pkg/copyright" "$compat/usr/share/doc/$pkg-linbit-compat/copyright"
chmod 0644 "$compat/usr/share/doc/$pkg-linbit-compat/copyright"
cat > "$compat/DEBIAN/control" <<EOF
Package: $pkg-linbit-compat
Version: $version
Architecture: all
Maintainer: $maint
Installed-Size: $(du -sk --exclude=DEBIAN "$compat" | cut -f1)
Depends: $pkg (= $version)
Conflicts: thin-send-recv
Replaces: thin-send-recv
Section: admin
Priority: optional
Description: thin_send and thin_recv commands provided by thinsend-native
 Installs /usr/bin/thin_send and /usr/bin/thin_recv as links to thinsend-native,
 which under those names takes LINBIT thin-send-recv 1.1.3's options, writes and
 reads its stream format and exits with its codes (what LINSTOR runs). Replaces
 the thin-send-recv package.
EOF
dpkg-deb --root-owner-group -Zxz --build "$compat" "$out/${pkg}-linbit-compat_${version}_all.deb" >/dev/null

for deb in "$out"/*.deb; do
  echo "$deb"
done
