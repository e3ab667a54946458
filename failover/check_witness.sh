#!/bin/sh
# keepalived track script against split brain: a node that reaches neither its peer nor the
# witness must not hold the VIP.
# usage: check_witness.sh PORT HOST [HOST ...]   (the peer's and the witness's addresses)
# - "Reaches" is a TCP connection to PORT (their Sentinel, which every host of the pair and
#   the witness runs) within 0.5 s.  Any one answering is enough.
# - Cut off from both, this node cannot tell "the others died" from "I am isolated", while
#   the others (peer + witness) can still see each other: it gives up (FAULT) and the side
#   with the witness keeps or takes the VIP.  A node alone with its clients therefore serves
#   nobody: that is the price of never having two VIP holders.
# - Two rounds per run: one lost SYN is forgiven.
port=$1
shift
reach() {
    timeout 0.5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$port" 2>/dev/null
}
for round in 1 2; do
    for host in "$@"; do
        reach "$host" && exit 0
    done
    [ "$round" = 1 ] && sleep 0.1
done
exit 1
