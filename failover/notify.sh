#!/bin/sh
# keepalived notify script: log the transition and tell the daemon its role.
# keepalived calls: notify.sh ROLE_FILE INSTANCE|GROUP NAME STATE PRIORITY
# The daemon reads ROLE_FILE for /metrics (sambertd_vrrp_role) and its systemd STATUS line.
# keepalived runs this as root: the role file lives in a directory only root can write
# (default /run/sambertd-vrrp), never in one the daemon owns, where a compromised daemon
# could plant a symlink and have root overwrite any file.
role_file=$1
state=$4
case "$state" in
    MASTER|BACKUP|FAULT|STOP) ;;
    *) state=UNKNOWN ;;
esac
log() {
    if command -v logger >/dev/null 2>&1; then logger -t sambertd-vrrp -p "daemon.$1" "$2"; fi
}
dir=$(dirname "$role_file")
mkdir -p -m 0755 "$dir"
perms=$(stat -c '%u 0%a' "$dir") || exit 1
if [ -L "$dir" ] || [ "${perms% *}" != 0 ] || [ $(( ${perms#* } & 022 )) -ne 0 ]; then
    log err "refusing to write $role_file: $dir must be owned by root and writable by root only"
    exit 1
fi
tmp=$(mktemp "$dir/.role.XXXXXX") || exit 1
printf '%s\n' "$state" > "$tmp" && chmod 0644 "$tmp" && mv -f "$tmp" "$role_file"
log notice "VRRP instance $3 is now $state (priority $5)"
exit 0
