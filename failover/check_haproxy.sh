#!/bin/sh
# keepalived track script in scale-out mode (HAProxy on the pair, failover/haproxy.cfg.j2):
# healthy only if the local HAProxy answers its monitor on loopback, and that says 200,
# which it does only while HAProxy sees at least one ready TTS node (monitor fail if
# nbsrv(tts) < 1).
# usage: check_haproxy.sh STATS_PORT
# The daemons themselves are HAProxy's to watch (/ready every second), not VRRP's: moving the
# VIP because one node's daemon died would reset every client connection through this HAProxy,
# also those served by the other nodes.  A dead or frozen HAProxy, or one that can reach no
# node at all, gives the VIP up (FAULT) so the peer's HAProxy takes over.
# Two quick probes per run, as check_sambertd.sh: one slow answer is forgiven.
port=${1:-8404}

probe() {
    curl -fsS -m 0.4 -o /dev/null "http://127.0.0.1:${port}/monitor" 2>/dev/null
}

probe && exit 0
sleep 0.1
probe
