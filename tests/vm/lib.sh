# tests/vm/lib.sh — shared pieces of the real-kernel (qemu) test harness. Source it from bash.
#
# The host kernel has no device-mapper, so real dm-thin pools run in a throw-away qemu VM:
# a Debian cloud kernel (downloaded and unpacked, never installed) plus an initramfs built from
# the host's own binaries (busybox, lvm, dmsetup, thin tools, the binaries under test).
# Scenarios are plain sh scripts run one after another in ONE boot; their results come back as
# a tar stream written to a raw result disk (no filesystem, no 9p).
#
# Everything slow is cached under $VM_CACHE (apt lists/archives, kernel .deb, unpacked kernel,
# the ELF vmlinux, the base initramfs), so a rerun costs one boot plus the scenarios.
#
# Knobs (environment):
#   THINSEND_VM_CACHE  cache directory (default /var/cache/thinsend-vm)
#   VM_SKIP_APT=1      never run apt (fail if something is missing)
#   VM_ACCEL           auto|kvm|tcg (auto: KVM only with kvm_intel/kvm_amd; TCG otherwise)
#   VM_MEM, VM_SMP     guest RAM in MiB (768) and vCPUs (1)
#   VM_TIMEOUT         host-side limit for one boot in seconds (4800)
#   VM_SCENARIO_TIMEOUT guest-side limit for one scenario in seconds (1200)
#   VM_DISK_SIZE       size of each of the two sparse pool disks, vda and vdb (4G)
#   VM_OUT_SIZE        size of the sparse result disk, vdc (2G)
#   VM_PVH=0           boot the bzImage instead of the extracted ELF vmlinux

VM_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_CACHE=${THINSEND_VM_CACHE:-/var/cache/thinsend-vm}
VM_T0=${VM_T0:-$(date +%s.%N)}

vm_log() { echo "[vm $(awk -v a="$VM_T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%6.1fs", b-a}')] $*" >&2; }
vm_die() { echo "vm: error: $*" >&2; exit 2; }
vm_secs_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }

# ------------------------------------------------------------------ packages
# Host packages the harness copies binaries from or runs. qemu-system-x86 comes from
# bookworm-backports when the machine already has the backports qemu-utils (10.x), which Breaks
# bookworm's qemu-system-common 7.2. We use a private apt configuration under $VM_CACHE/apt
# (own sources, lists and archives) so /etc/apt is never modified.
VM_PKGS=(qemu-system-x86 lvm2 dmsetup thin-provisioning-tools busybox-static kmod cpio lz4 gzip tar
         dropbear-bin openssh-client)

vm_apt_setup() {
  [ -n "${VM_APTO+x}" ] && return 0
  local aptdir=$VM_CACHE/apt src=/etc/apt/sources.list.d/debian.sources uri
  mkdir -p "$aptdir/lists/partial" "$aptdir/archives/partial" "$aptdir/sources"
  if [ -f "$src" ]; then
    uri=$(awk '/^URIs:/{print $2; exit}' "$src")
    cp "$src" "$aptdir/sources/debian.sources"
  else
    uri=http://deb.debian.org/debian
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
      > "$aptdir/sources/debian.sources"
  fi
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$uri" > "$aptdir/sources/backports.sources"
  VM_APTO=(-o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts="$aptdir/sources"
           -o Dir::State::lists="$aptdir/lists" -o Dir::Cache::archives="$aptdir/archives"
           -o APT::Sandbox::User=root -o DPkg::Lock::Timeout=300)
  VM_APT_UPDATED=${VM_APT_UPDATED:-0}
}

vm_apt_update() {
  vm_apt_setup
  [ "$VM_APT_UPDATED" = 1 ] && return 0
  vm_log "apt-get update (private lists incl. bookworm-backports)"
  apt-get "${VM_APTO[@]}" -qq update
  VM_APT_UPDATED=1
}

# vm_install_pkgs PKG...: install whichever of PKG are missing (private apt config).
vm_install_pkgs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} = 0 ] && return 0
  [ "${VM_SKIP_APT:-0}" = 1 ] && vm_die "missing packages ${missing[*]} and VM_SKIP_APT=1"
  vm_apt_update
  # Only qemu comes from backports; everything else stays at bookworm's versions (lvm2 2.03.16,
  # thin-provisioning-tools 0.9.0). When the image has the backports qemu-utils (10.x), qemu-system-x86
  # is installed in a command of its own with `-t bookworm-backports`: that raises backports' priority
  # for the whole dependency closure (qemu-system-common, qemu-system-data, seabios, ...), whereas
  # `pkg/bookworm-backports` pins the named package alone and its dependencies then resolve from
  # bookworm and break against qemu-utils 10.x ("held broken packages").
  local rest=() qemu=()
  for p in "${missing[@]}"; do
    case $p in qemu-system-x86) qemu+=("$p") ;; *) rest+=("$p") ;; esac
  done
  if [ ${#qemu[@]} -gt 0 ]; then
    local target=()
    dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q bpo12 && target=(-t bookworm-backports)
    vm_log "apt-get install ${target[*]} ${qemu[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get "${VM_APTO[@]}" install -y -qq --no-install-recommends \
      "${target[@]}" "${qemu[@]}" >/dev/null
  fi
  if [ ${#rest[@]} -gt 0 ]; then
    vm_log "apt-get install ${rest[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get "${VM_APTO[@]}" install -y -qq --no-install-recommends \
      "${rest[@]}" >/dev/null
  fi
}

vm_ensure_packages() { vm_install_pkgs "${VM_PKGS[@]}" "$@"; }

# ------------------------------------------------------------------ kernel
# Sets VM_KV (kernel release), VM_KROOT (unpacked tree) and VM_KERNEL (file to boot).
vm_ensure_kernel() {
  local debs=$VM_CACHE/debs deb kpkg
  mkdir -p "$debs"
  deb=$(ls -t "$debs"/linux-image-*-cloud-amd64_*.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ] || [ "${VM_REFRESH_KERNEL:-0}" = 1 ]; then
    [ "${VM_SKIP_APT:-0}" = 1 ] && vm_die "no cached kernel .deb in $debs and VM_SKIP_APT=1"
    vm_apt_update
    kpkg=$(apt-cache "${VM_APTO[@]}" depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
    [ -n "$kpkg" ] || vm_die "cannot resolve linux-image-cloud-amd64"
    vm_log "downloading $kpkg"
    (cd "$debs" && apt-get "${VM_APTO[@]}" -qq download "$kpkg")
    deb=$(ls -t "$debs"/"$kpkg"_*.deb | head -1)
  fi
  VM_KV=$(basename "$deb" | sed 's/^linux-image-\(.*\)_\(.*\)_amd64.deb$/\1/')
  VM_KROOT=$VM_CACHE/kroot-$VM_KV
  if [ ! -f "$VM_KROOT/.done" ]; then
    vm_log "unpacking $(basename "$deb")"
    rm -rf "$VM_KROOT" && dpkg-deb -x "$deb" "$VM_KROOT" && depmod -b "$VM_KROOT" "$VM_KV"
    touch "$VM_KROOT/.done"
  fi
  VM_KERNEL=$VM_KROOT/boot/vmlinuz-$VM_KV
  # Under TCG, decompressing the bzImage costs ~0.5 s per boot: extract the ELF vmlinux once
  # and boot it through qemu's PVH entry point (the Debian kernel has CONFIG_PVH=y).
  if [ "${VM_PVH:-1}" = 1 ]; then
    local vml=$VM_CACHE/vmlinux-$VM_KV fmt magic cmd off tmp
    if [ ! -s "$vml" ]; then
      tmp=$vml.tmp.$$
      for fmt in "lz4:\x02\x21\x4c\x18:lz4 -dc" "zstd:\x28\xb5\x2f\xfd:zstd -dcq" \
                 "xz:\xfd\x37\x7a\x58\x5a\x00:xz -dcq" "gzip:\x1f\x8b\x08:gzip -dcq"; do
        IFS=: read -r _ magic cmd <<< "$fmt"
        for off in $(LC_ALL=C grep -obUaP "$magic" "$VM_KERNEL" | cut -d: -f1 | head -3); do
          tail -c +$((off + 1)) "$VM_KERNEL" | $cmd > "$tmp" 2>/dev/null || true
          if [ "$(head -c 4 "$tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then mv "$tmp" "$vml"; break 2; fi
        done
      done
      rm -f "$tmp"
    fi
    [ -s "$vml" ] && VM_KERNEL=$vml
  fi
}

vm_versions() {
  echo "kernel $VM_KV (Debian linux-image-$VM_KV $(dpkg-deb -f "$(ls -t "$VM_CACHE"/debs/linux-image-"$VM_KV"_*.deb | head -1)" Version))," \
       "lvm2 $(dpkg-query -W -f='${Version}' lvm2)," \
       "thin-provisioning-tools $(dpkg-query -W -f='${Version}' thin-provisioning-tools)," \
       "busybox $(dpkg-query -W -f='${Version}' busybox-static)," \
       "qemu $(dpkg-query -W -f='${Version}' qemu-system-x86)"
}

# ------------------------------------------------------------------ initramfs
# Copy a binary and every library ldd reports (same paths) into the tree $1.
vm_copy_with_libs() {
  local root=$1 src=$2 dst=$3 lib
  [ -e "$src" ] || vm_die "binary not found: $src"
  mkdir -p "$root$(dirname "$dst")"
  cp -L "$src" "$root$dst"
  chmod 755 "$root$dst"
  { ldd "$src" 2>/dev/null || true; } | grep -oE '/[^ ]+\.so[^ ]*' | while read -r lib; do
    [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
  done || true
}

vm_cpio() { (cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0); }

VM_MODULES="virtio_pci virtio_blk dm-thin-pool dm-snapshot crc32c_generic"

# The base initramfs (busybox, lvm2, dmsetup, thin tools, kernel modules, lvm.conf, /init and the
# guest helper library) is cached per kernel, package versions and harness source. Per run, a
# small second cpio archive (scenarios + binaries under test) is appended: the kernel unpacks
# concatenated newc archives in order. Sets VM_BASE_CPIO.
vm_build_base_initramfs() {
  local key ir a t
  key=$( { echo "$VM_KV $VM_MODULES"
           dpkg-query -W -f='${Package} ${Version}\n' lvm2 dmsetup thin-provisioning-tools busybox-static libc6 \
             dropbear-bin openssh-client 2>/dev/null
           cat "$VM_LIB_DIR/lib.sh" "$VM_LIB_DIR/guest/init" "$VM_LIB_DIR/guest/lib.sh" "$VM_LIB_DIR/guest/lvm.conf"
         } | sha256sum | cut -c1-16)
  VM_BASE_CPIO=$VM_CACHE/initramfs-base-$key.cpio
  [ -s "$VM_BASE_CPIO" ] && return 0
  vm_log "building base initramfs ($key)"
  ir=$(mktemp -d "$VM_CACHE/ir.XXXXXX")
  mkdir -p "$ir"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,usr/local/lib,etc/lvm,proc,sys,dev,run,tmp,out,scenarios,lib/modules}
  cp /usr/bin/busybox "$ir/bin/busybox"
  for a in $("$ir/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$ir/bin/$a"; done
  vm_copy_with_libs "$ir" /usr/sbin/lvm /usr/sbin/lvm
  vm_copy_with_libs "$ir" /usr/sbin/dmsetup /usr/sbin/dmsetup
  vm_copy_with_libs "$ir" "$(readlink -f /usr/sbin/thin_dump)" /usr/sbin/pdata_tools
  for t in thin_check thin_dump thin_delta thin_ls thin_restore thin_repair thin_rmap thin_metadata_size thin_trim; do
    ln -sf pdata_tools "$ir/usr/sbin/$t"
  done
  for t in pvcreate pvremove pvs vgcreate vgremove vgs vgchange lvcreate lvchange lvremove lvs \
           lvdisplay lvextend lvconvert lvrename vgdisplay pvdisplay lvscan vgscan pvscan; do
    ln -sf lvm "$ir/usr/sbin/$t"
  done
  # An ssh server (dropbear) and OpenSSH's client for the sync scenarios (vmt_sshd in guest/lib.sh).
  vm_copy_with_libs "$ir" /usr/sbin/dropbear /usr/sbin/dropbear
  vm_copy_with_libs "$ir" /usr/bin/ssh /usr/bin/ssh
  vm_copy_with_libs "$ir" /usr/bin/ssh-keygen /usr/bin/ssh-keygen
  # Kernel modules + dependencies (resolved with kmod against the unpacked tree), then depmod on
  # the initramfs tree so busybox modprobe works (LVM runs /sbin/modprobe for dm-snapshot).
  for m in $VM_MODULES; do
    modprobe -d "$VM_KROOT" -S "$VM_KV" --show-depends "$m" | awk '$1=="insmod"{print $2}'
  done | awk '!seen[$0]++' | while read -r ko; do
    local rel=${ko#"$VM_KROOT"/}
    mkdir -p "$ir/$(dirname "$rel")"
    cp "$ko" "$ir/$rel"
  done
  cp "$VM_KROOT"/lib/modules/"$VM_KV"/modules.builtin* "$VM_KROOT"/lib/modules/"$VM_KV"/modules.order \
     "$ir/lib/modules/$VM_KV/"
  depmod -b "$ir" "$VM_KV"
  echo "$VM_MODULES" > "$ir/etc/modules.want"
  ln -sf ../bin/busybox "$ir/sbin/modprobe"
  ln -sf ../bin/busybox "$ir/sbin/insmod"
  cp "$VM_LIB_DIR/guest/lvm.conf" "$ir/etc/lvm/lvm.conf"
  cp "$VM_LIB_DIR/guest/init" "$ir/init" && chmod 755 "$ir/init"
  cp "$VM_LIB_DIR/guest/lib.sh" "$ir/usr/local/lib/vmtest.sh"
  vm_cpio "$ir" > "$VM_BASE_CPIO.tmp.$$"
  mv "$VM_BASE_CPIO.tmp.$$" "$VM_BASE_CPIO"
  rm -rf "$ir"
  # keep the three newest base images (older ones belong to earlier harness versions)
  ls -t "$VM_CACHE"/initramfs-base-*.cpio | tail -n +4 | xargs -r rm -f
}

# vm_build_initrd OUT.cpio BINS_ARRAY_NAME SCENARIO_FILE...
# Writes base + overlay (scenarios in the given order, binaries with their libraries, the files
# listed in the array VM_FILES as /files/BASENAME, and every VMT_* variable of the host
# environment, exported to the scenarios). A binary named thinsend-native also gets the guest
# links thin_send and thin_recv.
vm_build_initrd() {
  local out=$1 binsvar=$2; shift 2
  local ov b n i=0 name v val
  ov=$(mktemp -d "$VM_CACHE/ov.XXXXXX")
  mkdir -p "$ov/scenarios" "$ov/usr/local/bin" "$ov/files"
  for b in ${VM_FILES+"${VM_FILES[@]}"}; do cp -L "$b" "$ov/files/"; done
  : > "$ov/scenarios/env"
  for v in $(compgen -v VMT_ || true); do
    val=${!v}
    printf "export %s='%s'\n" "$v" "${val//\'/\'\\\'\'}" >> "$ov/scenarios/env"
  done
  local -n bins=$binsvar
  for b in "${bins[@]}"; do
    n=$(basename "$b")
    vm_copy_with_libs "$ov" "$b" "/usr/local/bin/$n"
    if [ "$n" = thinsend-native ]; then
      ln -sf thinsend-native "$ov/usr/local/bin/thin_send"
      ln -sf thinsend-native "$ov/usr/local/bin/thin_recv"
    fi
  done
  : > "$ov/scenarios/list"
  for s in "$@"; do
    name=$(basename "$s"); name=${name%.sh}
    i=$((i + 1))
    cp "$s" "$ov/scenarios/$name.sh"
    echo "$name" >> "$ov/scenarios/list"
  done
  [ -n "${VM_SCENARIO_TIMEOUT:-}" ] && echo "$VM_SCENARIO_TIMEOUT" > "$ov/scenarios/timeout"
  { cat "$VM_BASE_CPIO"; vm_cpio "$ov"; } > "$out"
  rm -rf "$ov"
}

# ------------------------------------------------------------------ boot
# vm_boot INITRD WORKDIR RESULTDIR: fresh sparse disks in WORKDIR, one boot, results untarred
# into RESULTDIR (console log in RESULTDIR/console.log). Sets VM_WALL (seconds) and VM_QRC.
vm_boot() {
  local initrd=$1 work=$2 res=$3 acc tb
  mkdir -p "$work" "$res"
  rm -f "$work"/pool1.img "$work"/pool2.img "$work"/out.img
  truncate -s "${VM_DISK_SIZE:-4G}" "$work/pool1.img" "$work/pool2.img"
  truncate -s "${VM_OUT_SIZE:-2G}" "$work/out.img"
  local accel=${VM_ACCEL:-auto}
  if [ "$accel" = auto ]; then
    # /dev/kvm alone is not enough: here it may be kvm_pvm (PVM), which only runs PVM guests.
    if [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then accel=kvm; else accel=tcg; fi
  fi
  if [ "$accel" = kvm ]; then acc=(-accel kvm -cpu host); else acc=(-accel tcg -cpu max); fi
  vm_log "booting qemu (accel=$accel, mem=${VM_MEM:-768}M, smp=${VM_SMP:-1}, kernel=$(basename "$VM_KERNEL"))"
  tb=$(date +%s.%N)
  set +e
  timeout "${VM_TIMEOUT:-4800}" qemu-system-x86_64 "${acc[@]}" -m "${VM_MEM:-768}" -smp "${VM_SMP:-1}" \
    -nodefaults -no-user-config -display none -serial stdio -no-reboot \
    -kernel "$VM_KERNEL" -initrd "$initrd" \
    -append "console=ttyS0 panic=-1 loglevel=3 rdinit=/init mitigations=off" \
    -drive file="$work/pool1.img",format=raw,if=virtio,cache=unsafe,discard=unmap \
    -drive file="$work/pool2.img",format=raw,if=virtio,cache=unsafe,discard=unmap \
    -drive file="$work/out.img",format=raw,if=virtio,cache=unsafe \
    < /dev/null > "$work/console.log" 2>&1
  VM_QRC=$?
  set -e
  VM_WALL=$(vm_secs_since "$tb")
  vm_log "qemu exited rc=$VM_QRC after ${VM_WALL}s (boot to power-off)"
  tr -d '\r' < "$work/console.log" > "$res/console.log"
  tar -xf "$work/out.img" -C "$res" 2>/dev/null || true
  echo "$VM_WALL" > "$res/vm_wall_seconds"
}

# vm_run RESULTDIR BINS_ARRAY_NAME SCENARIO_FILE...: the whole thing, cached where possible.
vm_run() {
  local res=$1 binsvar=$2; shift 2
  vm_ensure_packages
  vm_ensure_kernel
  vm_build_base_initramfs
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/thinsend-vm.XXXXXX")
  vm_build_initrd "$work/initrd.cpio" "$binsvar" "$@"
  vm_boot "$work/initrd.cpio" "$work" "$res"
  if [ "${VM_KEEP_WORK:-0}" = 1 ]; then vm_log "kept disks in $work"; else rm -rf "$work"; fi
}
