#!/bin/sh
# tests/tools/check-install.sh: installs into a temporary DESTDIR and checks
# the result: both binaries run, the man pages render without a warning, the
# systemd unit points at the installed daemon and passes systemd-analyze
# verify without a single complaint, the installed binaries are stripped (the
# build's keep their debug info), the bash and zsh completions are there and
# name every command `cutoverctl help` lists, and uninstall leaves nothing
# behind.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
dest=$(mktemp -d "${TMPDIR:-/tmp}/cutover-install.XXXXXX")
trap 'rm -rf "$dest"' EXIT INT TERM
prefix=/usr
fail() { echo "check-install: $*" >&2; exit 1; }

make --no-print-directory -s install DESTDIR="$dest" PREFIX="$prefix" >/dev/null
for f in sbin/cutoverd bin/cutoverctl share/man/man8/cutoverd.8 share/man/man8/cutoverctl.8 \
         lib/systemd/system/cutover.service share/doc/cutover/examples/example.json \
         lib/sysusers.d/cutover.conf lib/tmpfiles.d/cutover.conf \
         share/cutover/monitoring/cutover-alerts.yml share/cutover/monitoring/cutover-dashboard.json; do
    [ -f "$dest$prefix/$f" ] || fail "$prefix/$f was not installed"
done
for f in /etc/cutover/cutover.json /etc/logrotate.d/cutover; do
    [ -f "$dest$f" ] || fail "$f was not installed"
done
"$dest$prefix/sbin/cutoverd" -t -c "$dest/etc/cutover/cutover.json" >/dev/null \
    || fail "the installed cutoverd rejects /etc/cutover/cutover.json"
# the user the unit runs as is the one sysusers.d creates, and the
# directories tmpfiles.d makes are the ones the config and logrotate use
grep -q '^User=cutover$' "$dest$prefix/lib/systemd/system/cutover.service" || fail "unit: User"
grep -q '^u cutover ' "$dest$prefix/lib/sysusers.d/cutover.conf" || fail "sysusers: no user cutover"
for d in /var/lib/cutover /var/log/cutover /run/cutover; do
    grep -q "^d $d " "$dest$prefix/lib/tmpfiles.d/cutover.conf" || fail "tmpfiles: no $d"
done
grep -q '"/var/log/cutover/access.log"' "$dest/etc/cutover/cutover.json" || fail "config: access log"
grep -q '^/var/log/cutover/\*.log {' "$dest/etc/logrotate.d/cutover" || fail "logrotate: path"
# the operator's config survives a second install
echo '# edited' >>"$dest/etc/cutover/cutover.json"
make --no-print-directory -s install DESTDIR="$dest" PREFIX="$prefix" >/dev/null
grep -q '^# edited$' "$dest/etc/cutover/cutover.json" || fail "install overwrote /etc/cutover/cutover.json"
[ -x "$dest$prefix/sbin/cutoverd" ] || fail "cutoverd is not executable"
"$dest$prefix/sbin/cutoverd" -t -c "$dest$prefix/share/doc/cutover/examples/example.json" \
    >/dev/null || fail "the installed cutoverd rejects the installed example config"
"$dest$prefix/bin/cutoverctl" help >/dev/null || fail "the installed cutoverctl does not run"

for f in share/bash-completion/completions/cutoverctl share/bash-completion/completions/cutoverd \
         share/zsh/vendor-completions/_cutoverctl; do
    [ -f "$dest$prefix/$f" ] || fail "$prefix/$f was not installed"
done
for b in sbin/cutoverd bin/cutoverctl; do
    ! readelf -S "$dest$prefix/$b" | grep -q '\.debug_info\|\.symtab' || fail "$b is not stripped"
    readelf -S "$root/build/$(basename $b)" | grep -q '\.debug_info' \
        || fail "build/$(basename $b) has no debug info"
done
bash -n "$dest$prefix/share/bash-completion/completions/cutoverctl" || fail "bash completion: syntax"
# every command of `cutoverctl help` is completed, by bash and by zsh
cmds=$("$dest$prefix/bin/cutoverctl" help | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z]*\).*/\1/p')
[ -n "$cmds" ] || fail "cutoverctl help lists no command"
for c in $cmds; do
    grep -q "commands=\".*\\b$c\\b" "$dest$prefix/share/bash-completion/completions/cutoverctl" \
        || fail "bash completion lacks the command $c"
    grep -q "^        '$c:" "$dest$prefix/share/zsh/vendor-completions/_cutoverctl" \
        || fail "zsh completion lacks the command $c"
done

for m in cutoverd cutoverctl; do
    out=$(groff -man -ww -z "$dest$prefix/share/man/man8/$m.8" 2>&1) || fail "$m.8: groff failed"
    [ -z "$out" ] || fail "$m.8: $out"
done

unit="$dest$prefix/lib/systemd/system/cutover.service"
grep -q "^ExecStart=$prefix/sbin/cutoverd -c " "$unit" || fail "unit: ExecStart is not $prefix/sbin/cutoverd"
! grep -q '@[A-Z]*@' "$unit" || fail "unit: a placeholder was left: $(grep '@[A-Z]*@' "$unit")"
# verify resolves ExecStart: point a copy at the binary in DESTDIR
mkdir -p "$dest/verify"
sed "s|$prefix/sbin/|$dest$prefix/sbin/|g" "$unit" >"$dest/verify/cutover.service"
out=$(systemd-analyze verify --man=no "$dest/verify/cutover.service" 2>&1) || fail "unit: $out"
[ -z "$out" ] || fail "unit: $out"

make --no-print-directory -s uninstall DESTDIR="$dest" PREFIX="$prefix" >/dev/null
left=$(find "$dest$prefix" -type f | head -5)
[ -z "$left" ] || fail "uninstall left: $left"
[ ! -e "$dest/etc/logrotate.d/cutover" ] || fail "uninstall left /etc/logrotate.d/cutover"
[ -f "$dest/etc/cutover/cutover.json" ] || fail "uninstall removed the operator's edited config"
echo "check-install: ok"
