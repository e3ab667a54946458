#!/bin/bash
# keepalived track script against split brain: a node that reaches neither its peer nor the
# witness must not hold the VIP.
# usage: check_witness.sh PORT HOST [HOST ...]   (the peer's and the witness's addresses)
# - "Reaches" is a TCP connection to PORT (their Sentinel, which every host of the pair and
#   the witness runs) within 0.5 s.  Any one answering is enough.
# - Cut off from both, this node cannot tell "the others died" from "I am isolated", while
#   the others (peer + witness) can still see each other: it gives up (FAULT) and the side
#   with the witness keeps or takes the VIP.  A node alone with its clients therefore serves
#   nobody: that is the price of never having two VIP holders.
# - It must fail before VRRP's master-down timer (3 adverts + skew, about 3 s) makes a cut-off
#   standby MASTER, so a run takes at most about 1.1 s however many hosts are silent: all
#   hosts are tried at once, and a second round (one lost SYN is forgiven) follows 0.1 s
#   later.  keepalived runs it every second with fall 1 (failover/keepalived.conf.j2).
port=$1
shift

reach_any() {
    local pids=() pid host ok=1
    for host in "$@"; do
        timeout 0.5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null &
        pids+=("$!")
    done
    for pid in "${pids[@]}"; do
        wait "$pid" && ok=0
    done
    return "$ok"
}

reach_any "$@" && exit 0
sleep 0.1
reach_any "$@"
