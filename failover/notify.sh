#!/bin/sh
# keepalived notify script: log the transition and tell the daemon its role.
# keepalived calls: notify.sh ROLE_FILE INSTANCE|GROUP NAME STATE PRIORITY
# The daemon reads ROLE_FILE for /metrics (sambertd_vrrp_role) and its systemd STATUS line.
role_file=$1
state=$4
case "$state" in
    MASTER|BACKUP|FAULT|STOP) ;;
    *) state=UNKNOWN ;;
esac
tmp="${role_file}.tmp.$$"
printf '%s\n' "$state" > "$tmp" && mv -f "$tmp" "$role_file"
if command -v logger >/dev/null 2>&1; then
    logger -t sambertd-vrrp -p daemon.notice "VRRP instance $3 is now $state (priority $5)"
fi
exit 0
