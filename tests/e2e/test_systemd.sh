#!/usr/bin/env bash
# The systemd units: `systemd-analyze verify` accepts them (with ExecStart pointing at the
# binary under test, since `cutoff` is not installed here), the service's exposure score stays
# low (its hardening is really there), and `cmake --install` puts both where systemd looks.
. "$(dirname "$0")/lib.sh"
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze is missing (apt-get install systemd)"; exit 77; }
U=$SRC/systemd
mkdir -p "$T/units"
sed "s|^ExecStart=cutoff |ExecStart=$CUTOFF_BIN |" "$U/cutoff.service" >"$T/units/cutoff.service"
cp "$U/cutoff.timer" "$T/units/cutoff.timer"
grep -q '^ExecStart=cutoff run$' "$U/cutoff.service"; check $? 0 "the service runs cutoff run"

systemd-analyze verify --man=no "$T/units/cutoff.service" "$T/units/cutoff.timer" >"$OUT" 2>"$ERR"
RC=$?
expect_rc 0 "systemd-analyze verify accepts both units"
check "$(cat "$ERR")" "" "and has nothing to say about them"

# A unit that verify would refuse, so that the check above can fail.
printf '[Service]\nType=oneshot\nExecStart=%s run\nProtectSystem=sideways\n' "$CUTOFF_BIN" \
    >"$T/units/broken.service"
systemd-analyze verify --man=no "$T/units/broken.service" >"$OUT" 2>"$ERR"
expect_err "broken.service:4:" "a bad setting is reported with its line"

# Exposure 0-10 (0 best): the hardening must keep it under 2.0 (the threshold is in tenths).
systemd-analyze security --offline=yes --threshold=20 "$T/units/cutoff.service" >"$OUT" 2>"$ERR"
RC=$?
expect_rc 0 "systemd-analyze security: exposure at most 2.0"
expect_out "Overall exposure level for cutoff.service" "the score is printed"
for key in Type=oneshot User=cutoff StateDirectory=cutoff ConfigurationDirectory=cutoff \
    ProtectSystem=strict ProtectHome=yes PrivateTmp=yes PrivateDevices=yes NoNewPrivileges=yes \
    'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' SystemCallFilter=@system-service; do
    grep -qxF "$key" "$U/cutoff.service"; check $? 0 "cutoff.service has $key"
done
for key in OnCalendar=daily Persistent=true RandomizedDelaySec=30min WantedBy=timers.target; do
    grep -qxF "$key" "$U/cutoff.timer"; check $? 0 "cutoff.timer has $key"
done

# cutoff serve's units: verified, hardened like the daily run, and wired to each other.
sed "s|^ExecStart=cutoff |ExecStart=$CUTOFF_BIN |" "$U/cutoff-serve.service" >"$T/units/cutoff-serve.service"
cp "$U/cutoff-serve.socket" "$T/units/cutoff-serve.socket"
grep -q '^ExecStart=cutoff serve$' "$U/cutoff-serve.service"; check $? 0 "the service runs cutoff serve"
systemd-analyze verify --man=no "$T/units/cutoff-serve.service" "$T/units/cutoff-serve.socket" >"$OUT" 2>"$ERR"
RC=$?
expect_rc 0 "systemd-analyze verify accepts cutoff-serve.service and .socket"
check "$(cat "$ERR")" "" "and has nothing to say about them"
systemd-analyze security --offline=yes --threshold=20 "$T/units/cutoff-serve.service" >"$OUT" 2>"$ERR"
RC=$?
expect_rc 0 "cutoff-serve.service: exposure at most 2.0"
for key in User=cutoff StateDirectory=cutoff ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
    PrivateDevices=yes NoNewPrivileges=yes 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
    SystemCallFilter=@system-service MemoryDenyWriteExecute=yes \
    LoadCredential=cutoff-serve-token:/etc/cutoff/serve-token KillSignal=SIGTERM; do
    grep -qxF "$key" "$U/cutoff-serve.service"; check $? 0 "cutoff-serve.service has $key"
done
for key in ListenStream=127.0.0.1:8625 WantedBy=sockets.target; do
    grep -qxF "$key" "$U/cutoff-serve.socket"; check $? 0 "cutoff-serve.socket has $key"
done
check "$(grep -c '^ListenStream=' "$U/cutoff-serve.socket")" "1" "one socket: cutoff serve takes one"
# SCHED_BATCH for the HTTP threads and the checkpointer, a short time slice for the decider,
# SCHED_FIFO 1 for the syncer (serve.c): sched_setscheduler and sched_setattr are in
# @resources, which the unit denies; they are given back after the deny list, and only they.
check "$(grep '^SystemCallFilter=' "$U/cutoff-serve.service" | tail -1)" \
    "SystemCallFilter=sched_setscheduler sched_setattr" \
    "cutoff-serve.service allows sched_setscheduler and sched_setattr after its deny list"
grep -qxF 'SystemCallFilter=~@privileged @resources' "$U/cutoff-serve.service"; check $? 0 "the rest of @resources stays denied"
# The WAL's syncer may take SCHED_FIFO 1 and no higher (serve.c, thread_realtime).
grep -qxF 'RestrictRealtime=no' "$U/cutoff-serve.service"; check $? 0 "cutoff-serve.service lets the syncer be realtime"
grep -qxF 'LimitRTPRIO=1' "$U/cutoff-serve.service"; check $? 0 "at priority 1 at most (LimitRTPRIO=1)"
check "$(grep -c '^RestrictRealtime=' "$U/cutoff-serve.service")" "1" "and says so once"
grep -qxF 'RestrictRealtime=yes' "$U/cutoff.service"; check $? 0 "the daily run stays without realtime"

# cmake --install puts them where systemd finds units.
if [ -n "${CUTOFF_BUILD_DIR:-}" ] && command -v cmake >/dev/null; then
    cmake --install "$CUTOFF_BUILD_DIR" --prefix "$T/prefix" >"$OUT" 2>"$ERR"
    RC=$?
    expect_rc 0 "cmake --install"
    check "$(cd "$T/prefix/lib/systemd/system" 2>/dev/null && ls cutoff.service cutoff.timer | tr '\n' ' ')" \
        "cutoff.service cutoff.timer " "both units installed under lib/systemd/system"
    check "$(cd "$T/prefix/lib/systemd/system" 2>/dev/null && ls cutoff-serve.service cutoff-serve.socket | tr '\n' ' ')" \
        "cutoff-serve.service cutoff-serve.socket " "and cutoff serve's"
fi
finish
