#!/bin/sh
# keepalived track script: healthy only if the local sambertd says it is ready.
# usage: check_sambertd.sh PORT [http|https]
# - /ready is 200 only when the engine is warm, no worker is hung and the daemon is not
#   draining (see README); a SIGSTOP'd or hung daemon does not answer within the timeout.
# - Two quick probes per run (keepalived runs this every second with fall 1): one slow answer
#   is forgiven, a dead or frozen daemon is noticed within about 1.8 s.
# - Where systemd runs, the unit must also be active (a daemon started by hand does not count).
port=${1:-8080}
scheme=${2:-http}
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl is-active --quiet sambertd || exit 1
fi
probe() {
    # -k: with TLS on, the local check needs no certificate name validation.
    curl -fsSk -o /dev/null -m 0.4 "${scheme}://127.0.0.1:${port}/ready" 2>/dev/null
}
probe && exit 0
sleep 0.1
probe
