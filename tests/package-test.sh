#!/bin/bash
# The Debian package, installed for real: builds it with scripts/package.sh, installs it with
# apt-get, then checks what an administrator reaches for: `man thinsend-native-send`, bash
# completion of subcommands and flags (through bash-completion's own loader), `--version`, the
# LINBIT-compat package's thin_send/thin_recv, and that `apt-get remove` leaves none of the
# package's files behind. Needs root and apt; run by scripts/test.sh (THINSEND_SKIP_PACKAGE=1 skips).
# Leaves the machine as it found it: a thinsend-native package installed before is refused, not
# replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
fail() { echo "package-test: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (apt-get install)"
for p in thinsend-native thinsend-native-linbit-compat; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -qE 'ok (installed|config-files|half)'; then
    fail "$p is already installed on this machine; remove it first (this test installs and purges it)"
  fi
done
if grep -rqs 'path-exclude.*/usr/share/man' /etc/dpkg/dpkg.cfg.d/; then
  fail "dpkg excludes /usr/share/man on this machine (/etc/dpkg/dpkg.cfg.d): man pages cannot be installed"
fi

out=$(mktemp -d "${TMPDIR:-/tmp}/thinsend-pkgtest.XXXXXX")
apt_opts=(-y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
cleanup() {
  dpkg --purge thinsend-native-linbit-compat thinsend-native >/dev/null 2>&1 || true
  rm -rf "$out"
}
trap cleanup EXIT

# 1. Build.
bash scripts/package.sh "$out" >/dev/null
deb=$(ls "$out"/thinsend-native_*_amd64.deb)
compat=$(ls "$out"/thinsend-native-linbit-compat_*_all.deb)
version=$(dpkg-deb -f "$deb" Version)
echo "package-test: built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB) and $(basename "$compat")"
[ "$(dpkg-deb -f "$deb" Depends)" = "$(dpkg-deb -f "$deb" Depends | grep -v thin-provisioning)" ] ||
  fail "Depends names thin-provisioning-tools"
dpkg-deb -f "$deb" Depends | grep -q 'lvm2' || fail "Depends lacks lvm2"
dpkg-deb -f "$deb" Depends | grep -q 'dmsetup' || fail "Depends lacks dmsetup"

# 2. Install the way the README says.
DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "$deb" >"$out/install.log" 2>&1 ||
  { cat "$out/install.log" >&2; fail "apt-get install $deb"; }
dpkg -L thinsend-native | sort > "$out/files"
echo "package-test: installed, $(wc -l < "$out/files") paths"
while read -r unit; do
  grep -qx "/lib/systemd/system/$(basename "$unit")" "$out/files" || fail "contrib unit $unit is not in the package"
done < <(find contrib -maxdepth 2 -type f \( -name '*.service' -o -name '*.timer' \) 2>/dev/null)

# 3. --version, and -V on a subcommand, from the installed binary.
[ "$(/usr/bin/thinsend-native --version)" = "thinsend-native $version" ] || fail "--version: $(/usr/bin/thinsend-native --version)"
/usr/bin/thinsend-native send -V | grep -qx "thinsend-native-send $version" || fail "send -V"

# 4. man: the page is where man looks, and shows the subcommand's options and examples.
page=$(man -w thinsend-native-send) || fail "man -w thinsend-native-send finds no page"
[ "$page" = /usr/share/man/man1/thinsend-native-send.1.gz ] || fail "man -w: $page"
text=$(MANWIDTH=100 man -P cat thinsend-native-send 2>/dev/null | tr -s ' ')
for want in 'NAME' 'thinsend-native-send - Write a thin volume' '--dry-run' 'EXAMPLES' \
  'thinsend-native send vg/snap1 vg/snap2 | ssh backup thinsend-native recv vg/replica'; do
  grep -qF -- "$want" <<<"$text" || fail "man thinsend-native-send lacks '$want'"
done
for sub in dump ls diff check recv inspect completions manpages; do
  man -w "thinsend-native-$sub" >/dev/null || fail "no man page for $sub"
done
man -w thinsend-native >/dev/null || fail "no man page thinsend-native(1)"
echo "package-test: man pages OK ($page)"

# 5. bash completion, loaded by bash-completion's loader from the standard directory: complete the
#    subcommands after `thinsend-native `, and `send --dr` to `--dry-run`.
[ -f /usr/share/bash-completion/bash_completion ] || fail "bash-completion is not installed (scripts/install-deps.sh)"
complete_words() {
  # $@: the words typed so far, the last one the word being completed.
  HOME=$out bash --norc --noprofile -ic '
    source /usr/share/bash-completion/bash_completion
    _completion_loader thinsend-native 2>/dev/null || __load_completion thinsend-native
    spec=$(complete -p thinsend-native) || exit 3
    fn=$(sed -n "s/.*-F \([^ ]*\) .*/\1/p" <<<"$spec")
    COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    "$fn" thinsend-native "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    printf "%s\n" "${COMPREPLY[@]}"' complete-test "$@" 2>/dev/null
}
subs=$(complete_words thinsend-native '')
for want in send recv dump ls diff check inspect completions manpages; do
  grep -qx "$want" <<<"$subs" || fail "bash completion of 'thinsend-native ' lacks $want (got: $(echo $subs))"
done
grep -qx -- '--dry-run' <<<"$(complete_words thinsend-native send --dr)" || fail "bash: 'send --dr' does not complete to --dry-run"
grep -qx -- '--rollback' <<<"$(complete_words thinsend-native recv --roll)" || fail "bash: 'recv --roll' does not complete to --rollback"
[ -f /usr/share/zsh/vendor-completions/_thinsend-native ] || fail "no zsh completion"
[ -f /usr/share/fish/vendor_completions.d/thinsend-native.fish ] || fail "no fish completion"
echo "package-test: bash completion OK (subcommands: $(echo $subs))"

# 6. The LINBIT-compatible names are a separate, optional package.
[ ! -e /usr/bin/thin_send ] || [ -L /usr/bin/thin_send ] || fail "/usr/bin/thin_send exists before the compat package"
DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "$compat" >"$out/install-compat.log" 2>&1 ||
  { cat "$out/install-compat.log" >&2; fail "apt-get install $compat"; }
thin_send -v | grep -q '^1\.1\.3 (thinsend-native' || fail "thin_send -v: $(thin_send -v 2>&1)"
[ "$(readlink -f /usr/bin/thin_recv)" = /usr/bin/thinsend-native ] || fail "thin_recv is not the binary"
dpkg -L thinsend-native-linbit-compat | sort > "$out/files-compat"
echo "package-test: linbit-compat OK ($(thin_send -v))"

# 7. `apt-get remove` alone leaves nothing: no file, no directory of ours, and no config-files state
#    for a purge to clean up (the package has no conffiles and no maintainer scripts).
DEBIAN_FRONTEND=noninteractive apt-get remove "${apt_opts[@]}" thinsend-native-linbit-compat thinsend-native \
  >"$out/remove.log" 2>&1 || { cat "$out/remove.log" >&2; fail "apt-get remove"; }
left=()
while read -r f; do
  # Shared directories (/usr/bin, /usr/share/man/man1, ...) stay; our files and our own
  # directories must not. /lib, /bin, /sbin are the merged-/usr aliases (symlinks owned by the
  # base system) that the units' path /lib/systemd/system goes through: not ours.
  case $f in /lib | /lib64 | /bin | /sbin) continue ;; esac
  if [ -L "$f" ] || [ -f "$f" ]; then left+=("$f"); fi
  case $f in */doc/thinsend-native*) [ ! -e "$f" ] || left+=("$f") ;; esac
done < <(cat "$out/files" "$out/files-compat")
[ ${#left[@]} -eq 0 ] || fail "left after apt-get remove: ${left[*]}"
for p in thinsend-native thinsend-native-linbit-compat; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ -z "$st" ] || [ "$st" = "unknown ok not-installed" ] || fail "dpkg still has $p after apt-get remove: $st"
done
echo "package-test: removed, $(cat "$out/files" "$out/files-compat" | wc -l) paths checked gone"
echo "package-test: OK in $(( $(date +%s) - T0 )) s"
