#!/bin/sh
# Start Kamailio's msrp module as a peer MSRP relay (loopback only) in the background.
#   CHILDREN  TCP worker processes (default 2); PORT (default 2856)
# Writes the main PID to $KAMDIR/kamailio.pid; stop with: KAMDIR=/tmp/kamailio-msrp ./stop.sh
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
KAMDIR=${KAMDIR:-/tmp/kamailio-msrp}
CHILDREN=${CHILDREN:-2}
PORT=${PORT:-2856}
PIDFILE=$KAMDIR/kamailio.pid
mkdir -p "$KAMDIR"
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "kamailio (msrp) already running with pid $(cat "$PIDFILE")" >&2
    exit 1
fi
ARGS="-A CHILDREN=$CHILDREN -A PORT=$PORT"
kamailio -c -f "$HERE/msrp.cfg" $ARGS -A "CTLSOCK=\"unix:$KAMDIR/kamailio_ctl\"" \
    > "$KAMDIR/check.log" 2>&1 || { cat "$KAMDIR/check.log" >&2; exit 1; }
kamailio -DD -E -f "$HERE/msrp.cfg" -m 512 -M 16 $ARGS -A "CTLSOCK=\"unix:$KAMDIR/kamailio_ctl\"" \
    > "$KAMDIR/kamailio.log" 2>&1 &
echo $! > "$PIDFILE"
STARTED="kamailio msrp relay started: pid $(cat "$PIDFILE") children=$CHILDREN tcp:127.0.0.1:$PORT log=$KAMDIR/kamailio.log"
. "$HERE/wait-started.sh"
