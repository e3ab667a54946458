#!/bin/sh
# keepalived track script: healthy only if the local sambertd says it is ready.
# usage: check_sambertd.sh PORT [http|https] [PROBE_SOCKET]
# Exit 0 keeps (or lets this node take) the VIP; anything else puts the node in FAULT, which
# gives the VIP up at once.  Each check below is a function run in order; the first that
# fails decides.  Add a check as one more function and one more line in "main".
# - /ready is 200 only when the engine is warm, no worker is hung and the daemon is not
#   draining (see README); a SIGSTOP'd or hung daemon does not answer within the timeout.
# - Two quick probes per run (keepalived runs this every second with fall 1): one slow answer
#   is forgiven, a dead or frozen daemon is noticed within about 1.8 s.
# - Where systemd runs, the unit must also be active (a daemon started by hand does not
#   count), or stopping while it still drains (below).
# - Draining (SIGTERM, systemctl stop): /ready is 503 at once, but while requests that came
#   through the VIP are still in flight the daemon's answer says "hold_vip": true, and this
#   script keeps the VIP here: moving it would reset their connections (the peer's kernel
#   knows none of them).  New requests meanwhile wait in the daemon and get 503 with
#   Retry-After when the drain ends.  Then "hold_vip" turns false (or the daemon has exited),
#   the next run fails and the peer takes the VIP within about a second, before the clients
#   retry.  The daemon holds at most server.drain_timeout_s, only as VRRP master, and only
#   while it answers: a draining daemon that freezes or dies loses the VIP as above.
# - The probe goes to the daemon's local probe socket (PROBE_SOCKET, default
#   /run/sambertd/probe.sock, made from systemd's RuntimeDirectory=) when it exists: it needs
#   no client certificate when tls.client_ca_file is set.  Without it, to 127.0.0.1:PORT;
#   loopback may always call /ready, whatever auth.allow says.
port=${1:-8080}
scheme=${2:-http}
probe_socket=${3:-/run/sambertd/probe.sock}

check_unit() {
    [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 || return 0
    case "$(systemctl is-active sambertd 2>/dev/null)" in
        # deactivating: `systemctl stop` has sent SIGTERM and the daemon drains; /ready decides.
        active|reloading|deactivating) return 0 ;;
        *) return 1 ;;
    esac
}

probe() {
    # Prints the body of /ready and then " HTTP<status>"; fails when no answer came in time.
    # -k: with TLS on, the local check needs no certificate name validation.
    if [ -S "$probe_socket" ]; then
        curl -sS -m 0.4 --unix-socket "$probe_socket" -w ' HTTP%{http_code}' \
            http://localhost/ready 2>/dev/null
    else
        curl -sSk -m 0.4 -w ' HTTP%{http_code}' "${scheme}://127.0.0.1:${port}/ready" 2>/dev/null
    fi
}

verdict() {
    case "$1" in
        *' HTTP200') return 0 ;;
        *'"hold_vip": true'*' HTTP503') return 0 ;;  # draining, requests still in flight
        *) return 1 ;;
    esac
}

check_ready() {
    answer=$(probe) && verdict "$answer" && return 0
    sleep 0.1
    answer=$(probe) && verdict "$answer"
}

check_unit || exit 1
check_ready || exit 1
exit 0
