# Sourced by run.sh and run-msrp.sh after Kamailio was started in the background with
# its PID in $PIDFILE: wait (at most ~10 s) until it answers on the control socket
# in $KAMDIR, then print "$STARTED" and exit 0; exit 1 if it died or never answered.
i=0
while [ $i -lt 50 ]; do
    if kamcmd -s "unix:$KAMDIR/kamailio_ctl" core.version >/dev/null 2>&1; then
        echo "$STARTED"
        exit 0
    fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        echo "kamailio exited during start-up:" >&2; tail -20 "$KAMDIR/kamailio.log" >&2; exit 1
    fi
    sleep 0.2; i=$((i+1))
done
echo "kamailio did not come up in 10 s" >&2
exit 1
