# postfix.sh — a private Postfix instance on 127.0.0.1 for end-to-end tests (source after lib.sh).
# Facts from ../shared/notes/postfix-on-loopback.md: an alternate config directory listed in
# /etc/postfix/main.cf, a maillog file (no syslog here), virtual Maildirs for every .test domain
# the tests use, unknown users accepted at RCPT and bounced asynchronously as real RFC 3464 DSNs
# to the VERP mailbox. Local parts starting with "unknown" have no mailbox.
#
# start_postfix NAME: starts it; sets PF_PORT, PF_DIR, PF_MAIL (two Maildirs: inbox/ for every
# known recipient, who is named in each message's Delivered-To header, since virtual(8) allows
# no per-user substitution; bounces/ for everything sent to bounces+...@bounces.example.test).
PF_DOMAINS="users.example.test hotmail.example.test msn.example.test yahoo.example.test
 aol.example.test earthlink.example.test compuserve.example.test t-online.example.test
 wanadoo.example.test bounces.example.test"

pf_register_dir() {
    local main=/etc/postfix/main.cf
    (
        flock 9
        [ -f "$main" ] || printf 'compatibility_level = 3.6\nmaillog_file = /dev/stdout\n' >"$main"
        grep -q '^alternate_config_directories' "$main" ||
            printf 'alternate_config_directories =\n' >>"$main"
        grep -qxF "    $1" "$main" ||
            sed -i "/^alternate_config_directories/a\\    $1" "$main"
    ) 9>/etc/postfix/.cutoff-tests.lock
}

start_postfix() {
    command -v postfix >/dev/null || { echo "SKIP: postfix is not installed (tools/deps --test)"; exit 77; }
    [ "$(id -u)" -eq 0 ] || { echo "SKIP: a private Postfix needs root"; exit 77; }
    # One folder per test name and source tree: suites of two checkouts may run at once.
    local tree
    tree=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd | md5sum | cut -c1-8)
    PF_DIR=/var/tmp/cutoff-postfix-$tree-$1 PF_PORT=$(free_port) PF_MAIL=$PF_DIR/mail
    RELAY_TIMEOUT=${RELAY_TIMEOUT:-20}
    postfix -c "$PF_DIR" stop >/dev/null 2>&1 || true
    rm -rf "$PF_DIR"; mkdir -p "$PF_DIR/queue" "$PF_DIR/data" "$PF_MAIL"
    chown postfix:postfix "$PF_DIR/data" "$PF_MAIL"
    pf_register_dir "$PF_DIR"
    local uid gid
    uid=$(id -u postfix) gid=$(id -g postfix)
    cat >"$PF_DIR/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $PF_DIR/queue
data_directory = $PF_DIR/data
mail_owner = postfix
maillog_file = $PF_DIR/maillog
maillog_file_prefixes = $PF_DIR
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
myhostname = mx.example.test
mydomain = example.test
mydestination =
smtp_dns_support_level = disabled
alias_maps =
alias_database =
recipient_delimiter = +
virtual_mailbox_domains = $(echo $PF_DOMAINS | tr ' ' ',')
virtual_mailbox_base = $PF_MAIL
virtual_mailbox_maps = regexp:$PF_DIR/vmailbox
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_mailbox_limit = 0
smtpd_reject_unlisted_recipient = no
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_client_connection_count_limit = 0
smtpd_client_message_rate_limit = 0
default_process_limit = 50
bounce_queue_lifetime = 0
maximal_queue_lifetime = 1d
CF
    cat >"$PF_DIR/vmailbox" <<'MAP'
/^bounces(\+.*)?@bounces\.example\.test$/ bounces/
if !/^unknown/
/@/ inbox/
endif
MAP
    # The stock master.cf with the smtp service on our port and nothing chrooted.
    awk -v port="$PF_PORT" '
        /^smtp[ \t]+inet/ { $1 = port }
        /^[a-z0-9]/ && NF >= 8 && $5 == "y" { $5 = "n" }
        { print }' /etc/postfix/master.cf >"$PF_DIR/master.cf"
    postfix -c "$PF_DIR" check >"$PF_DIR/check.log" 2>&1 || true
    if ! postfix -c "$PF_DIR" start >"$PF_DIR/start.log" 2>&1; then
        echo "FAIL: postfix did not start:"; cat "$PF_DIR/start.log" "$PF_DIR/maillog" 2>/dev/null
        exit 1
    fi
    CLEANUP+=("postfix -c '$PF_DIR' stop")
    local i
    for i in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/"$PF_PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "FAIL: postfix is not listening on $PF_PORT"; cat "$PF_DIR/maillog"; exit 1
}

# pf_count_delivered / pf_count_bounces: messages in the inbox / the bounce Maildir.
pf_count_delivered() {
    find "$PF_MAIL/inbox/new" -type f 2>/dev/null | wc -l
}
# pf_recipients: the Delivered-To of every inbox message, one a line.
pf_recipients() {
    find "$PF_MAIL/inbox/new" -type f -exec grep -m1 -h '^Delivered-To:' {} + 2>/dev/null |
        sed 's/^Delivered-To: *//'
}
pf_count_bounces() {
    find "$PF_MAIL/bounces/new" -type f 2>/dev/null | wc -l
}
# pf_wait CMD WANT [SECONDS]: polls until $(CMD) reaches WANT; prints the last count.
pf_wait() {
    local n i
    for i in $(seq $((${3:-60} * 10))); do
        n=$($1)
        [ "$n" -ge "$2" ] && break
        sleep 0.1
    done
    echo "$n"
}
