#!/usr/bin/env bash
# Crash test: `kill -9` the sender at random points, at least 20 times during one 5,000-message
# campaign, restarting each time. At the end every recipient has been accepted by the server
# at least once, none is missing, and the duplicates are at most the deliveries that were in
# flight (recorded 'sending', not yet settled) at the kills.
. "$(dirname "$0")/lib.sh"
start_smtpd --delay-ms 10
CONF=$T/cutoff.conf DB=$T/cutoff.db
write_config "$CONF" "$SMTP_PORT"
copy_campaign
gen_users 5000 5 "$T/users.csv"
load_campaign "$CONF" "$T/users.csv"
NOW=2003-08-26T17:00:00Z
kills=0 inflight_sum=0 max_inflight=0 rounds=0
while [ $kills -lt 20 ] && [ $rounds -lt 200 ]; do
    rounds=$((rounds + 1))
    # Its own process group, so that SIGKILL takes the run and its workers at once,
    # as systemd does with a unit's cgroup.
    setsid "$CUTOFF_BIN" --config "$CONF" --now $NOW send $C >>"$T/runs.log" 2>&1 &
    pid=$!
    sleep "0.$(( (RANDOM % 30) + 5 ))"
    if kill -9 -- -$pid 2>/dev/null; then
        wait $pid 2>/dev/null
        while pgrep -g $pid >/dev/null; do sleep 0.05; done
        kills=$((kills + 1))
        n=$(sql "$DB" "SELECT count(*) FROM delivery WHERE state = 'sending'")
        inflight_sum=$((inflight_sum + n))
        [ "$n" -gt $max_inflight ] && max_inflight=$n
    else
        wait $pid 2>/dev/null
        break # it finished before the kill
    fi
done
run --config "$CONF" --now $NOW send $C
expect_rc 0 "the last run completes"
accepted=$(wc -l <"$SMTP_OUT")
unique=$(/usr/bin/python3 -c 'import json,sys; print(len({tuple(json.loads(l)["rcpt"]) for l in open(sys.argv[1])}))' "$SMTP_OUT")
dups=$((accepted - unique))
recovered=$(sql "$DB" "SELECT count(*) FROM delivery WHERE possibly_duplicated = 1")
echo "crash test: $kills kills, $accepted messages accepted, $unique distinct recipients," \
     "$dups duplicates; in flight at the kills: $inflight_sum in all, at most $max_inflight at once;" \
     "$recovered deliveries marked possibly duplicated"
[ $kills -ge 20 ]; check $? 0 "at least 20 kills during the campaign"
check "$unique" "5000" "every recipient was accepted at least once"
check "$(sql "$DB" "SELECT count(*) FROM delivery WHERE state = 'sent'")" "5000" "the ledger says all 5,000 sent"
[ $dups -le $inflight_sum ]; check $? 0 "duplicates ($dups) <= deliveries in flight at the kills ($inflight_sum)"
[ $dups -le $recovered ]; check $? 0 "every duplicate is among those marked possibly duplicated"
finish
