/* classify.c — bounce reason and hard/soft class from an RFC 3463 status, an SMTP reply
 * code (RFC 5321) and diagnostic text (RFC 3463, RFC 5248, RFC 7505). The reason names, the
 * order reasons are tested in and the providers' documented codes follow sisimai
 * (BSD-2-Clause), whose labelled corpus the tests measure against. */
#include "classify.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

/* Diagnostic text longer than this is classified on its first TEXT_MAX bytes. */
#define TEXT_MAX 4096

static const char *const reason_names[REASON_COUNT] = {
	[REASON_UNDEFINED] = "undefined",
	[REASON_AUTHFAILURE] = "authfailure",
	[REASON_BADREPUTATION] = "badreputation",
	[REASON_BLOCKED] = "blocked",
	[REASON_CONTENTERROR] = "contenterror",
	[REASON_DELIVERED] = "delivered",
	[REASON_EXCEEDLIMIT] = "exceedlimit",
	[REASON_EXPIRED] = "expired",
	[REASON_FAILEDSTARTTLS] = "failedstarttls",
	[REASON_FEEDBACK] = "feedback",
	[REASON_FILTERED] = "filtered",
	[REASON_HASMOVED] = "hasmoved",
	[REASON_HOSTUNKNOWN] = "hostunknown",
	[REASON_MAILBOXFULL] = "mailboxfull",
	[REASON_MAILERERROR] = "mailererror",
	[REASON_MESGTOOBIG] = "mesgtoobig",
	[REASON_NETWORKERROR] = "networkerror",
	[REASON_NORELAYING] = "norelaying",
	[REASON_NOTACCEPT] = "notaccept",
	[REASON_NOTCOMPLIANTRFC] = "notcompliantrfc",
	[REASON_ONHOLD] = "onhold",
	[REASON_POLICYVIOLATION] = "policyviolation",
	[REASON_REJECTED] = "rejected",
	[REASON_REQUIREPTR] = "requireptr",
	[REASON_SECURITYERROR] = "securityerror",
	[REASON_SPAMDETECTED] = "spamdetected",
	[REASON_SPEEDING] = "speeding",
	[REASON_SUSPEND] = "suspend",
	[REASON_SYNTAXERROR] = "syntaxerror",
	[REASON_SYSTEMERROR] = "systemerror",
	[REASON_SYSTEMFULL] = "systemfull",
	[REASON_TOOMANYCONN] = "toomanyconn",
	[REASON_USERUNKNOWN] = "userunknown",
	[REASON_VACATION] = "vacation",
	[REASON_VIRUSDETECTED] = "virusdetected",
};

/*
 * Diagnostic text patterns, most specific first; the first match wins. Patterns are lower
 * case and matched against the text lower-cased with white space runs folded to one space;
 * a '*' in a pattern stands for any run of characters (the parts must appear in order).
 * They are the wordings real MTAs and mailbox providers use (Postfix, Sendmail, Exim,
 * qmail, Exchange, Gmail, Yahoo, Outlook.com, ...).
 */
struct text_pattern {
	enum bounce_reason reason;
	const char *pattern;
};

static const struct text_pattern text_patterns[] = {
	/* A full mailbox: checked first, "mailbox" wordings also appear in the other groups. */
	{ REASON_MAILBOXFULL, "mailbox full" },
	{ REASON_MAILBOXFULL, "mailbox is full" },
	{ REASON_MAILBOXFULL, "mailbox is currently full" },
	{ REASON_MAILBOXFULL, "mailbox size limit exceeded" },
	{ REASON_MAILBOXFULL, "mailbox quota" },
	{ REASON_MAILBOXFULL, "mailbox has exceeded" },
	{ REASON_MAILBOXFULL, "mailbox over quota" },
	{ REASON_MAILBOXFULL, "mailbox exceeds" },
	{ REASON_MAILBOXFULL, "mailfolder is full" },
	{ REASON_MAILBOXFULL, "mail box full" },
	{ REASON_MAILBOXFULL, "quota exceeded" },
	{ REASON_MAILBOXFULL, "quota exceed" },
	{ REASON_MAILBOXFULL, "exceeded * quota" },
	{ REASON_MAILBOXFULL, "exceed * quota" },
	{ REASON_MAILBOXFULL, "over quota" },
	{ REASON_MAILBOXFULL, "overquota" },
	{ REASON_MAILBOXFULL, "over the allowed quota" },
	{ REASON_MAILBOXFULL, "exceeded storage allocation" },
	{ REASON_MAILBOXFULL, "exceeds storage allocation" },
	{ REASON_MAILBOXFULL, "account is full" },
	{ REASON_MAILBOXFULL, "inbox is full" },
	{ REASON_MAILBOXFULL, "is over the limit" },
	{ REASON_MAILBOXFULL, "out of storage" },
	{ REASON_MAILBOXFULL, "not enough storage space" },
	{ REASON_MAILBOXFULL, "user has exceeded" },
	{ REASON_MAILBOXFULL, "too much mail data" },
	{ REASON_MAILBOXFULL, "mailbox for * is full" },
	{ REASON_MAILBOXFULL, "insufficient space in mailbox" },
	{ REASON_MAILBOXFULL, "boite pleine" },
	{ REASON_MAILBOXFULL, "disk quota" },

	/* Size. */
	{ REASON_EXCEEDLIMIT, "exceeds administrative limit" },
	{ REASON_EXCEEDLIMIT, "message length exceeds" },
	{ REASON_MESGTOOBIG, "message too large" },
	{ REASON_MESGTOOBIG, "message too big" },
	{ REASON_MESGTOOBIG, "message is too large" },
	{ REASON_MESGTOOBIG, "message is too big" },
	{ REASON_MESGTOOBIG, "message size exceeds" },
	{ REASON_MESGTOOBIG, "message size * exceeds" },
	{ REASON_MESGTOOBIG, "message exceeds * size" },
	{ REASON_MESGTOOBIG, "exceeds the maximum message size" },
	{ REASON_MESGTOOBIG, "exceeds maximum message size" },
	{ REASON_MESGTOOBIG, "exceeds size limit" },
	{ REASON_MESGTOOBIG, "size limit exceeded" },
	{ REASON_MESGTOOBIG, "mail size limit" },
	{ REASON_MESGTOOBIG, "message size limit" },
	{ REASON_MESGTOOBIG, "too big for the system" },
	{ REASON_MESGTOOBIG, "message is larger than" },
	{ REASON_MESGTOOBIG, "maximum allowed size" },
	{ REASON_MESGTOOBIG, "size exceeds the maximum" },
	{ REASON_MESGTOOBIG, "message file too big" },
	{ REASON_MESGTOOBIG, "mail is too big" },
	{ REASON_MESGTOOBIG, "taille limite" },

	/* The address exists but is switched off. */
	{ REASON_SUSPEND, "mailbox disabled" },
	{ REASON_SUSPEND, "mailbox is disabled" },
	{ REASON_SUSPEND, "account disabled" },
	{ REASON_SUSPEND, "account is disabled" },
	{ REASON_SUSPEND, "account has been disabled" },
	{ REASON_SUSPEND, "tried to reach is disabled" },
	{ REASON_SUSPEND, "account is inactive" },
	{ REASON_SUSPEND, "mailbox is inactive" },
	{ REASON_SUSPEND, "inactive account" },
	{ REASON_SUSPEND, "inactive mailbox" },
	{ REASON_SUSPEND, "account suspended" },
	{ REASON_SUSPEND, "account has been suspended" },
	{ REASON_SUSPEND, "account is suspended" },
	{ REASON_SUSPEND, "mailbox suspended" },
	{ REASON_SUSPEND, "user suspended" },
	{ REASON_SUSPEND, "is suspended" },
	{ REASON_SUSPEND, "currently suspended" },
	{ REASON_SUSPEND, "temporarily suspended" },
	{ REASON_SUSPEND, "has been deactivated" },
	{ REASON_SUSPEND, "account deactivated" },
	{ REASON_SUSPEND, "account expired" },
	{ REASON_SUSPEND, "account is locked" },
	{ REASON_SUSPEND, "account has been locked" },
	{ REASON_SUSPEND, "extended inactivity" },
	{ REASON_SUSPEND, "recipient suspend" },
	{ REASON_SUSPEND, "mailbox unavailable or access denied" },

	/* Moved. */
	{ REASON_HASMOVED, "has been moved" },
	{ REASON_HASMOVED, "mailbox has moved" },
	{ REASON_HASMOVED, "user has moved" },
	{ REASON_HASMOVED, "address has changed" },
	{ REASON_HASMOVED, "user not local; please try" },

	/* Relaying. */
	{ REASON_NORELAYING, "relay access denied" },
	{ REASON_NORELAYING, "relaying denied" },
	{ REASON_NORELAYING, "relay denied" },
	{ REASON_NORELAYING, "relay not permitted" },
	{ REASON_NORELAYING, "relaying not permitted" },
	{ REASON_NORELAYING, "relay not allowed" },
	{ REASON_NORELAYING, "relaying not allowed" },
	{ REASON_NORELAYING, "relaying mail to * is not allowed" },
	{ REASON_NORELAYING, "not permitted to relay" },
	{ REASON_NORELAYING, "not allowed to relay" },
	{ REASON_NORELAYING, "unable to relay" },
	{ REASON_NORELAYING, "we do not relay" },
	{ REASON_NORELAYING, "no relaying" },
	{ REASON_NORELAYING, "relay prohibited" },
	{ REASON_NORELAYING, "not configured to relay" },
	{ REASON_NORELAYING, "does not relay" },
	{ REASON_NORELAYING, "relaying to <" },
	{ REASON_NORELAYING, "is not a gateway" },

	/* Sender authentication. */
	{ REASON_AUTHFAILURE, "spf check failed" },
	{ REASON_AUTHFAILURE, "spf fail" },
	{ REASON_AUTHFAILURE, "spf_fail" },
	{ REASON_AUTHFAILURE, "spf validation" },
	{ REASON_AUTHFAILURE, "spf record" },
	{ REASON_AUTHFAILURE, "bad spf" },
	{ REASON_AUTHFAILURE, "sender policy framework" },
	{ REASON_AUTHFAILURE, "failed spf" },
	{ REASON_AUTHFAILURE, "spf: " },
	{ REASON_AUTHFAILURE, "dmarc" },
	{ REASON_AUTHFAILURE, "dkim" },
	{ REASON_AUTHFAILURE, "authentication checks failed" },
	{ REASON_AUTHFAILURE, "unauthenticated email" },
	{ REASON_AUTHFAILURE, "unauthenticated mail" },
	{ REASON_AUTHFAILURE, "not pass authentication" },
	{ REASON_AUTHFAILURE, "sender authentication" },

	/* Reverse DNS of the sending host. */
	{ REASON_REQUIREPTR, "reverse dns" },
	{ REASON_REQUIREPTR, "reverse lookup" },
	{ REASON_REQUIREPTR, "reverse-dns" },
	{ REASON_REQUIREPTR, "ptr record" },
	{ REASON_REQUIREPTR, "no ptr" },
	{ REASON_REQUIREPTR, "rdns" },
	{ REASON_REQUIREPTR, "cannot find your hostname" },
	{ REASON_REQUIREPTR, "cannot resolve your hostname" },
	{ REASON_REQUIREPTR, "can't resolve your hostname" },
	{ REASON_REQUIREPTR, "cannot find your reverse hostname" },
	{ REASON_REQUIREPTR, "hostname does not resolve" },
	{ REASON_REQUIREPTR, "ip name lookup failed" },

	/* Reputation and blocks of the sending host. */
	{ REASON_BADREPUTATION, "reputation" },
	{ REASON_BADREPUTATION, "user complaints" },
	{ REASON_SPEEDING, "rate limit" },
	{ REASON_SPEEDING, "ratelimit" },
	{ REASON_SPEEDING, "rate exceeded" },
	{ REASON_SPEEDING, "sending too fast" },
	{ REASON_SPEEDING, "too fast" },
	{ REASON_SPEEDING, "throttl" },
	{ REASON_SPEEDING, "too many messages" },
	{ REASON_SPEEDING, "mail flood" },
	{ REASON_TOOMANYCONN, "too many connections" },
	{ REASON_TOOMANYCONN, "too many simultaneous" },
	{ REASON_TOOMANYCONN, "too many concurrent" },
	{ REASON_TOOMANYCONN, "connection limit" },
	{ REASON_TOOMANYCONN, "too many sessions" },
	{ REASON_BLOCKED, "blocked using" },
	{ REASON_BLOCKED, "is listed in" },
	{ REASON_BLOCKED, "is listed at" },
	{ REASON_BLOCKED, "is listed on" },
	{ REASON_BLOCKED, "are listed in" },
	{ REASON_BLOCKED, "listed in rbl" },
	{ REASON_BLOCKED, "listed in dnsbl" },
	{ REASON_BLOCKED, "blacklist" },
	{ REASON_BLOCKED, "black list" },
	{ REASON_BLOCKED, "blocklist" },
	{ REASON_BLOCKED, "block list" },
	{ REASON_BLOCKED, "denylist" },
	{ REASON_BLOCKED, "dnsbl" },
	{ REASON_BLOCKED, "spamhaus" },
	{ REASON_BLOCKED, "spamcop" },
	{ REASON_BLOCKED, "abuseat" },
	{ REASON_BLOCKED, "sorbs" },
	{ REASON_BLOCKED, "banned sending ip" },
	{ REASON_BLOCKED, "client host rejected" },
	{ REASON_BLOCKED, "client host * blocked" },
	{ REASON_BLOCKED, "your ip" },
	{ REASON_BLOCKED, "your host" },
	{ REASON_BLOCKED, "your server" },
	{ REASON_BLOCKED, "sending ip" },
	{ REASON_BLOCKED, "sender ip" },
	{ REASON_BLOCKED, "ip address * blocked" },
	{ REASON_BLOCKED, "ip * is blocked" },
	{ REASON_BLOCKED, "dynamic ip" },
	{ REASON_BLOCKED, "dynamically assigned" },
	{ REASON_BLOCKED, "dial-up" },
	{ REASON_BLOCKED, "dialup" },
	{ REASON_BLOCKED, "residential" },
	{ REASON_BLOCKED, "connection refused by" },
	{ REASON_BLOCKED, "refused to talk to me" },
	{ REASON_BLOCKED, "access denied" },
	{ REASON_BLOCKED, "connections not accepted" },
	{ REASON_BLOCKED, "not accepting connections" },
	{ REASON_BLOCKED, "has been blocked" },
	{ REASON_BLOCKED, "blocked by" },
	{ REASON_BLOCKED, "rejected by * rbl" },

	/* Content. */
	{ REASON_VIRUSDETECTED, "virus" },
	{ REASON_VIRUSDETECTED, "malware" },
	{ REASON_VIRUSDETECTED, "infected" },
	{ REASON_SPAMDETECTED, "spam" },
	{ REASON_SPAMDETECTED, "junk mail" },
	{ REASON_SPAMDETECTED, "unsolicited" },
	{ REASON_SPAMDETECTED, "bulk mail" },
	{ REASON_SPAMDETECTED, "content filter" },
	{ REASON_SPAMDETECTED, "message content rejected" },
	{ REASON_SPAMDETECTED, "mail rejete" },
	{ REASON_POLICYVIOLATION, "policy violation" },
	{ REASON_POLICYVIOLATION, "violates" },
	{ REASON_POLICYVIOLATION, "violation of" },
	{ REASON_POLICYVIOLATION, "prohibited attachment" },
	{ REASON_POLICYVIOLATION, "illegal attachment" },
	{ REASON_POLICYVIOLATION, "attachment * not allowed" },
	{ REASON_POLICYVIOLATION, "not allowed attachment" },
	{ REASON_POLICYVIOLATION, "banned attachment" },
	{ REASON_POLICYVIOLATION, "executable" },
	{ REASON_NOTCOMPLIANTRFC, "rfc 5322" },
	{ REASON_NOTCOMPLIANTRFC, "rfc5322" },
	{ REASON_NOTCOMPLIANTRFC, "rfc 2822" },
	{ REASON_NOTCOMPLIANTRFC, "rfc2822" },
	{ REASON_NOTCOMPLIANTRFC, "multiple addresses in from" },
	{ REASON_NOTCOMPLIANTRFC, "duplicate header" },

	/* The recipient's address is dead. */
	{ REASON_USERUNKNOWN, "user unknown" },
	{ REASON_USERUNKNOWN, "unknown user" },
	{ REASON_USERUNKNOWN, "user is unknown" },
	{ REASON_USERUNKNOWN, "unknown recipient" },
	{ REASON_USERUNKNOWN, "recipient unknown" },
	{ REASON_USERUNKNOWN, "unknown address" },
	{ REASON_USERUNKNOWN, "address unknown" },
	{ REASON_USERUNKNOWN, "unknown local part" },
	{ REASON_USERUNKNOWN, "unknown local-part" },
	{ REASON_USERUNKNOWN, "unknown mailbox" },
	{ REASON_USERUNKNOWN, "unknown or illegal alias" },
	{ REASON_USERUNKNOWN, "no such user" },
	{ REASON_USERUNKNOWN, "no such mailbox" },
	{ REASON_USERUNKNOWN, "no such recipient" },
	{ REASON_USERUNKNOWN, "no such address" },
	{ REASON_USERUNKNOWN, "no such account" },
	{ REASON_USERUNKNOWN, "no such person" },
	{ REASON_USERUNKNOWN, "no such local user" },
	{ REASON_USERUNKNOWN, "no mailbox here" },
	{ REASON_USERUNKNOWN, "no mailbox by that name" },
	{ REASON_USERUNKNOWN, "no valid recipients" },
	{ REASON_USERUNKNOWN, "user not found" },
	{ REASON_USERUNKNOWN, "user not exist" },
	{ REASON_USERUNKNOWN, "user does not exist" },
	{ REASON_USERUNKNOWN, "user doesn't exist" },
	{ REASON_USERUNKNOWN, "user doesn't have a" },
	{ REASON_USERUNKNOWN, "recipient not found" },
	{ REASON_USERUNKNOWN, "recipientnotfound" },
	{ REASON_USERUNKNOWN, "recipient does not exist" },
	{ REASON_USERUNKNOWN, "recipient is not exist" },
	{ REASON_USERUNKNOWN, "recipient address rejected: user" },
	{ REASON_USERUNKNOWN, "recipient address rejected: unknown" },
	{ REASON_USERUNKNOWN, "recipient address rejected: invalid" },
	{ REASON_USERUNKNOWN, "recipient address rejected: undeliverable" },
	{ REASON_USERUNKNOWN, "recipient address rejected: access denied" },
	{ REASON_USERUNKNOWN, "recipient address rejected." },
	{ REASON_USERUNKNOWN, "user does not exist" },
	{ REASON_USERUNKNOWN, "recipient does not exist" },
	{ REASON_USERUNKNOWN, "address couldn't be found" },
	{ REASON_USERUNKNOWN, "address could not be found" },
	{ REASON_USERUNKNOWN, "recipient rejected" },
	{ REASON_USERUNKNOWN, "mailbox not found" },
	{ REASON_USERUNKNOWN, "mailbox does not exist" },
	{ REASON_USERUNKNOWN, "mailbox doesn't exist" },
	{ REASON_USERUNKNOWN, "mailbox unavailable" },
	{ REASON_USERUNKNOWN, "mailbox not available" },
	{ REASON_USERUNKNOWN, "mailbox is not available" },
	{ REASON_USERUNKNOWN, "mailbox not present" },
	{ REASON_USERUNKNOWN, "mailbox is unavailable" },
	{ REASON_USERUNKNOWN, "invalid mailbox" },
	{ REASON_USERUNKNOWN, "invalid recipient" },
	{ REASON_USERUNKNOWN, "invalid address" },
	{ REASON_USERUNKNOWN, "invalid user" },
	{ REASON_USERUNKNOWN, "address invalid" },
	{ REASON_USERUNKNOWN, "address does not exist" },
	{ REASON_USERUNKNOWN, "address doesn't exist" },
	{ REASON_USERUNKNOWN, "address is not valid" },
	{ REASON_USERUNKNOWN, "account does not exist" },
	{ REASON_USERUNKNOWN, "account doesn't exist" },
	{ REASON_USERUNKNOWN, "account that you tried to reach does not exist" },
	{ REASON_USERUNKNOWN, "not a valid mailbox" },
	{ REASON_USERUNKNOWN, "not a valid user" },
	{ REASON_USERUNKNOWN, "not a known user" },
	{ REASON_USERUNKNOWN, "is not a valid" },
	{ REASON_USERUNKNOWN, "not our customer" },
	{ REASON_USERUNKNOWN, "not listed in public name & address book" },
	{ REASON_USERUNKNOWN, "not listed in domino directory" },
	{ REASON_USERUNKNOWN, "bad destination mailbox" },
	{ REASON_USERUNKNOWN, "destination mailbox address invalid" },
	{ REASON_USERUNKNOWN, "unknown in local recipient table" },
	{ REASON_USERUNKNOWN, "unknown in virtual" },
	{ REASON_USERUNKNOWN, "unknown in relay recipient table" },
	{ REASON_USERUNKNOWN, "no longer exists" },
	{ REASON_USERUNKNOWN, "no longer valid" },
	{ REASON_USERUNKNOWN, "no longer active" },
	{ REASON_USERUNKNOWN, "not found in directory" },
	{ REASON_USERUNKNOWN, "addressee unknown" },
	{ REASON_USERUNKNOWN, "said: 550 5.1.1" },

	/* The recipient's domain is dead. */
	{ REASON_HOSTUNKNOWN, "host unknown" },
	{ REASON_HOSTUNKNOWN, "unknown host" },
	{ REASON_HOSTUNKNOWN, "host not found" },
	{ REASON_HOSTUNKNOWN, "hostname not found" },
	{ REASON_HOSTUNKNOWN, "host or domain name not found" },
	{ REASON_HOSTUNKNOWN, "domain not found" },
	{ REASON_HOSTUNKNOWN, "domain name not found" },
	{ REASON_HOSTUNKNOWN, "no such domain" },
	{ REASON_HOSTUNKNOWN, "unknown domain" },
	{ REASON_HOSTUNKNOWN, "domain does not exist" },
	{ REASON_HOSTUNKNOWN, "domain doesn't exist" },
	{ REASON_HOSTUNKNOWN, "non-existent domain" },
	{ REASON_HOSTUNKNOWN, "nonexistent domain" },
	{ REASON_HOSTUNKNOWN, "invalid domain" },
	{ REASON_HOSTUNKNOWN, "domain is not valid" },
	{ REASON_HOSTUNKNOWN, "nxdomain" },
	{ REASON_HOSTUNKNOWN, "name or service not known" },
	{ REASON_HOSTUNKNOWN, "no mx record" },
	{ REASON_HOSTUNKNOWN, "no valid mx" },
	{ REASON_HOSTUNKNOWN, "mx lookup" },
	{ REASON_HOSTUNKNOWN, "domain name lookup" },
	{ REASON_HOSTUNKNOWN, "unrouteable mail domain" },
	{ REASON_HOSTUNKNOWN, "unrouteable address" },
	{ REASON_HOSTUNKNOWN, "unroutable address" },
	{ REASON_HOSTUNKNOWN, "account or domain may not exist" },
	{ REASON_HOSTUNKNOWN, "all relevant mx records point to non-existent hosts" },

	/* The domain takes no mail at all (RFC 7505). */
	{ REASON_NOTACCEPT, "null mx" },
	{ REASON_NOTACCEPT, "domain does not accept mail" },
	{ REASON_NOTACCEPT, "host/domain does not accept mail" },
	{ REASON_NOTACCEPT, "accepts no mail" },
	{ REASON_NOTACCEPT, "doesn't receive email" },
	{ REASON_NOTACCEPT, "no smtp service" },

	/* The recipient's side refused this message or this sender. */
	{ REASON_FILTERED, "filtered" },
	{ REASON_FILTERED, "domain filter" },
	{ REASON_FILTERED, "refused by recipient" },
	{ REASON_FILTERED, "rejected by recipient" },
	{ REASON_FILTERED, "recipient refuses" },
	{ REASON_FILTERED, "user refuses" },
	{ REASON_FILTERED, "does not accept * from" },
	{ REASON_FILTERED, "not accept mail from" },
	{ REASON_FILTERED, "recipient has blocked" },
	{ REASON_FILTERED, "has restricted" },
	{ REASON_FILTERED, "not authorized to send to" },
	{ REASON_FILTERED, "not authorised to send to" },
	{ REASON_FILTERED, "recipient preferences" },
	{ REASON_FILTERED, "550 : user unknown" },
	{ REASON_FILTERED, "user reject" },
	{ REASON_FILTERED, "message filtered" },
	{ REASON_REJECTED, "sender rejected" },
	{ REASON_REJECTED, "sender address rejected" },
	{ REASON_REJECTED, "sender domain" },
	{ REASON_REJECTED, "sender verify failed" },
	{ REASON_REJECTED, "sender is not allowed" },
	{ REASON_REJECTED, "sender unknown" },
	{ REASON_REJECTED, "unknown sender" },
	{ REASON_REJECTED, "invalid sender" },
	{ REASON_REJECTED, "bad sender" },
	{ REASON_REJECTED, "sender address * rejected" },
	{ REASON_REJECTED, "domain of sender address" },
	{ REASON_REJECTED, "unverified sender" },
	{ REASON_REJECTED, "sender denied" },
	{ REASON_REJECTED, "from address" },
	{ REASON_REJECTED, "envelope sender" },
	{ REASON_REJECTED, "address is not allowed" },
	{ REASON_REJECTED, "rejected by the server" },
	{ REASON_REJECTED, "not have permission to post" },

	/* Delivery gave up or could not be made. */
	{ REASON_EXPIRED, "expired" },
	{ REASON_EXPIRED, "retry timeout exceeded" },
	{ REASON_EXPIRED, "retry time not reached" },
	{ REASON_EXPIRED, "message timed out" },
	{ REASON_EXPIRED, "delivery time expired" },
	{ REASON_EXPIRED, "too long in queue" },
	{ REASON_EXPIRED, "in the queue too long" },
	{ REASON_EXPIRED, "could not be delivered within" },
	{ REASON_EXPIRED, "unable to deliver in" },
	{ REASON_EXPIRED, "has not been delivered" },
	{ REASON_EXPIRED, "not yet been delivered" },
	{ REASON_EXPIRED, "could not be delivered for" },
	{ REASON_EXPIRED, "did not accept our requests to connect" },
	{ REASON_NETWORKERROR, "mail loop" },
	{ REASON_NETWORKERROR, "mail loops" },
	{ REASON_NETWORKERROR, "routing loop" },
	{ REASON_NETWORKERROR, "loop detected" },
	{ REASON_NETWORKERROR, "too many hops" },
	{ REASON_NETWORKERROR, "hop count exceeded" },
	{ REASON_NETWORKERROR, "connection timed out" },
	{ REASON_NETWORKERROR, "timed out" },
	{ REASON_NETWORKERROR, "timeout" },
	{ REASON_NETWORKERROR, "connection refused" },
	{ REASON_NETWORKERROR, "network is unreachable" },
	{ REASON_NETWORKERROR, "no route to host" },
	{ REASON_NETWORKERROR, "could not connect" },
	{ REASON_NETWORKERROR, "unable to connect" },
	{ REASON_NETWORKERROR, "connection reset" },
	{ REASON_NETWORKERROR, "lost connection" },
	{ REASON_NETWORKERROR, "connection dropped" },
	{ REASON_NETWORKERROR, "socket error" },
	{ REASON_NETWORKERROR, "dns error" },
	{ REASON_NETWORKERROR, "try again" },
	{ REASON_NETWORKERROR, "dns failure" },
	{ REASON_NETWORKERROR, "dns lookup" },
	{ REASON_NETWORKERROR, "temporary lookup failure" },
	{ REASON_NETWORKERROR, "host name lookup failure" },
	{ REASON_SYSTEMFULL, "system full" },
	{ REASON_SYSTEMFULL, "disk full" },
	{ REASON_SYSTEMFULL, "out of disk space" },
	{ REASON_SYSTEMFULL, "insufficient system storage" },
	{ REASON_SYSTEMFULL, "insufficient disk space" },
	{ REASON_SYSTEMFULL, "not enough disk space" },
	{ REASON_SYSTEMFULL, "no space left" },
	{ REASON_FAILEDSTARTTLS, "starttls" },
	{ REASON_SECURITYERROR, "tls required" },
	{ REASON_SECURITYERROR, "encryption required" },
	{ REASON_SECURITYERROR, "authentication required" },
	{ REASON_SECURITYERROR, "must authenticate" },
	{ REASON_SECURITYERROR, "authentication failed" },
	{ REASON_SECURITYERROR, "security polic" },
	{ REASON_SECURITYERROR, "insecure" },
	{ REASON_CONTENTERROR, "content error" },
	{ REASON_CONTENTERROR, "invalid mime" },
	{ REASON_CONTENTERROR, "malformed" },
	{ REASON_CONTENTERROR, "header line" },
	{ REASON_CONTENTERROR, "header is too" },
	{ REASON_CONTENTERROR, "headers too" },
	{ REASON_CONTENTERROR, "8-bit" },
	{ REASON_SYNTAXERROR, "syntax error" },
	{ REASON_SYNTAXERROR, "command unrecognized" },
	{ REASON_SYNTAXERROR, "unrecognized command" },
	{ REASON_SYNTAXERROR, "command not recognized" },
	{ REASON_SYNTAXERROR, "invalid command" },
	{ REASON_SYNTAXERROR, "bad command" },
	{ REASON_MAILERERROR, "mailer error" },
	{ REASON_MAILERERROR, "command died" },
	{ REASON_MAILERERROR, "command failed" },
	{ REASON_MAILERERROR, "exit status" },
	{ REASON_MAILERERROR, "exited with" },
	{ REASON_MAILERERROR, "procmail" },
	{ REASON_MAILERERROR, "pipe to |" },
	{ REASON_MAILERERROR, "local delivery failed" },
	{ REASON_SYSTEMERROR, "system error" },
	{ REASON_SYSTEMERROR, "internal error" },
	{ REASON_SYSTEMERROR, "server error" },
	{ REASON_SYSTEMERROR, "local error" },
	{ REASON_SYSTEMERROR, "temporary failure" },
	{ REASON_SYSTEMERROR, "temporary local problem" },
	{ REASON_SYSTEMERROR, "configuration error" },
	{ REASON_SYSTEMERROR, "misconfigur" },
	{ REASON_SYSTEMERROR, "system problem" },
	{ REASON_SYSTEMERROR, "service unavailable" },
	{ REASON_SYSTEMERROR, "server busy" },
	{ REASON_SYSTEMERROR, "try again later" },
};

const char *classify_reason_name(enum bounce_reason reason)
{
	if ((int)reason < 0 || reason >= REASON_COUNT)
		return reason_names[REASON_UNDEFINED];
	return reason_names[reason];
}

bool classify_reason_from_name(const char *name, enum bounce_reason *out)
{
	for (int i = 0; i < REASON_COUNT; i++) {
		if (strcasecmp(name, reason_names[i]) == 0) {
			*out = (enum bounce_reason)i;
			return true;
		}
	}
	return false;
}

const char *classify_class_name(enum bounce_class cls)
{
	switch (cls) {
	case BOUNCE_CLASS_HARD:
		return "hard";
	case BOUNCE_CLASS_SOFT:
		return "soft";
	default:
		return "none";
	}
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Reads up to max digits at p into *v; returns how many were read. */
static size_t read_number(const char *p, const char *end, size_t max, int *v)
{
	size_t n = 0;

	*v = 0;
	while (p + n < end && n < max && is_digit(p[n])) {
		*v = *v * 10 + (p[n] - '0');
		n++;
	}
	return n;
}

/*
 * Matches class.subject.detail at p (class 2, 4 or 5, subject up to 3 digits, detail up to
 * 3 digits) not glued to other digits or dots; returns its length or 0.
 */
static size_t match_status_at(const char *text, const char *p, const char *end)
{
	const char *q = p;
	int v;
	size_t n;

	if (p > text && (is_digit(p[-1]) || p[-1] == '.' || p[-1] == '-' || p[-1] == '/'))
		return 0;
	if (*q != '2' && *q != '4' && *q != '5')
		return 0;
	q++;
	if (q >= end || *q != '.')
		return 0;
	q++;
	if ((n = read_number(q, end, 3, &v)) == 0)
		return 0;
	q += n;
	if (q >= end || *q != '.')
		return 0;
	q++;
	if ((n = read_number(q, end, 3, &v)) == 0)
		return 0;
	q += n;
	if (q < end && (is_digit(*q) || (*q == '.' && q + 1 < end && is_digit(q[1]))))
		return 0;
	return (size_t)(q - p);
}

bool classify_find_status(const char *text, size_t len, char *out, size_t outlen)
{
	const char *end = text + len, *success = NULL;
	size_t success_len = 0;

	if (outlen > 0)
		out[0] = '\0';
	if (text == NULL || outlen < 2)
		return false;
	for (const char *p = text; p + 4 < end; p++) {
		size_t n = match_status_at(text, p, end);

		if (n == 0)
			continue;
		/* "250 2.1.5 Ok" lines of a transcript come before the failure. */
		if (*p == '2') {
			if (success == NULL)
				success = p, success_len = n;
			continue;
		}
		if (n >= outlen)
			n = outlen - 1;
		memcpy(out, p, n);
		out[n] = '\0';
		return true;
	}
	if (success == NULL)
		return false;
	if (success_len >= outlen)
		success_len = outlen - 1;
	memcpy(out, success, success_len);
	out[success_len] = '\0';
	return true;
}

/* A reply code standing alone at p: "550 ", "550-", "(550)". */
static bool reply_code_at(const char *text, const char *p, const char *end)
{
	char before = p > text ? p[-1] : ' ';
	char after = p + 3 < end ? p[3] : ' ';

	if ((*p != '2' && *p != '4' && *p != '5') || !is_digit(p[1]) || !is_digit(p[2]) ||
	    p[1] > '5')
		return false;
	if (!(before == ' ' || before == '\t' || before == '\n' || before == ':' || before == '(' ||
	      before == '<' || before == '"' || before == '[' || before == ';' || before == '>' ||
	      before == '=' || before == '#'))
		return false;
	if (!(after == ' ' || after == '-' || after == '\t' || after == '\n' || after == ')' ||
	      after == '"' || after == ']' || after == ','))
		return false;
	/* "550-5.1.1" or "550- text", not a date or a range. */
	return after != '-' || (p + 4 < end && (is_digit(p[4]) || p[4] == ' '));
}

int classify_find_reply_code(const char *text, size_t len)
{
	const char *end = text + len;
	int success = 0;

	if (text == NULL)
		return 0;
	for (const char *p = text; p + 2 < end; p++) {
		int code;

		if (!reply_code_at(text, p, end))
			continue;
		code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
		if (code >= 400)
			return code;
		if (success == 0 && code >= 250 && code <= 252)
			success = code;
	}
	return success;
}

/*
 * Lower-cases text[0..len) into out, white space runs folded to one space; returns the
 * length written (at most outlen - 1).
 */
static size_t normalise_text(const char *text, size_t len, char *out, size_t outlen)
{
	size_t n = 0;
	bool space = true;

	for (const char *p = text; p < text + len && *p && n + 1 < outlen; p++) {
		char c = *p;

		if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			if (!space)
				out[n++] = ' ';
			space = true;
			continue;
		}
		space = false;
		out[n++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	out[n] = '\0';
	return n;
}

/*
 * The stage the earliest stage phrase in normalised text names (at one place, the first
 * phrase of the table). One pass over the text, trying at each byte only the phrases that
 * start with it (33 strstr passes over it cost several times more).
 */
static enum smtp_stage stage_in(const char *norm)
{
	/* Phrases that say which command a reply answered, as MTAs word it. */
	static const struct {
		const char *needle;
		enum smtp_stage stage;
	} stages[] = {
		{ "after rcpt", SMTP_STAGE_RCPT },
		{ "in reply to rcpt to", SMTP_STAGE_RCPT },
		{ "rcpt to command", SMTP_STAGE_RCPT },
		{ ">>> rcpt to", SMTP_STAGE_RCPT },
		{ "rcpt to response", SMTP_STAGE_RCPT },
		{ "following rcpt", SMTP_STAGE_RCPT },
		{ "our rcpt to", SMTP_STAGE_RCPT },
		{ "[rcpt_to]", SMTP_STAGE_RCPT },
		{ "smtp:rcpt", SMTP_STAGE_RCPT },
		{ "for rcpt to", SMTP_STAGE_RCPT },
		{ ">: user unknown", SMTP_STAGE_RCPT },
		{ "after mail from", SMTP_STAGE_MAIL },
		{ "in reply to mail from", SMTP_STAGE_MAIL },
		{ "mail from command", SMTP_STAGE_MAIL },
		{ ">>> mail from", SMTP_STAGE_MAIL },
		{ "[mail_from]", SMTP_STAGE_MAIL },
		{ "end of data", SMTP_STAGE_DATA },
		{ "after data", SMTP_STAGE_DATA },
		{ ">>> data", SMTP_STAGE_DATA },
		{ "data command", SMTP_STAGE_DATA },
		{ "text command", SMTP_STAGE_DATA },
		{ "(data)", SMTP_STAGE_DATA },
		{ "initial connection", SMTP_STAGE_CONNECT },
		{ "smtp greeting", SMTP_STAGE_CONNECT },
		{ "after connect", SMTP_STAGE_CONNECT },
		{ "after helo", SMTP_STAGE_HELO },
		{ "after ehlo", SMTP_STAGE_HELO },
		{ "in reply to helo", SMTP_STAGE_HELO },
		{ "in reply to ehlo", SMTP_STAGE_HELO },
		{ ">>> helo", SMTP_STAGE_HELO },
		{ ">>> ehlo", SMTP_STAGE_HELO },
		{ "my name was rejected", SMTP_STAGE_HELO },
		{ "sender was rejected", SMTP_STAGE_MAIL },
	};
	uint64_t by_first[256] = { 0 }; /* the phrases (bits, in table order) by first byte */

	_Static_assert(sizeof stages / sizeof stages[0] <= 64, "one bit per phrase");
	for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++)
		by_first[(unsigned char)stages[i].needle[0]] |= UINT64_C(1) << i;
	for (const char *p = norm; *p; p++) {
		for (uint64_t m = by_first[(unsigned char)*p]; m != 0; m &= m - 1) {
			const char *needle = stages[__builtin_ctzll(m)].needle;

			/* needle[1] is not NUL, so p[1] is not either and p + 2 is readable. */
			if (needle[1] == p[1] && strncmp(p + 2, needle + 2, strlen(needle + 2)) == 0)
				return stages[__builtin_ctzll(m)].stage;
		}
	}
	return SMTP_STAGE_UNKNOWN;
}

enum smtp_stage classify_find_stage(const char *text, size_t len)
{
	char norm[TEXT_MAX];

	if (text == NULL)
		return SMTP_STAGE_UNKNOWN;
	normalise_text(text, len, norm, sizeof norm);
	return stage_in(norm);
}

/* ---- mailbox providers' documented error codes ---------------------------------- */

struct code_reason {
	const char *code;
	enum bounce_reason reason;
};

/* Orange and La Poste: "OFR_416", "LPN007_416", "OUK_513" (the last three digits). */
static const struct code_reason orange_codes[] = {
	{ "101", REASON_BLOCKED },        { "102", REASON_BLOCKED },
	{ "103", REASON_BLOCKED },        { "104", REASON_TOOMANYCONN },
	{ "305", REASON_SECURITYERROR },  { "401", REASON_AUTHFAILURE },
	{ "402", REASON_SECURITYERROR },  { "403", REASON_REJECTED },
	{ "405", REASON_REJECTED },       { "415", REASON_REJECTED },
	{ "416", REASON_USERUNKNOWN },    { "417", REASON_MAILBOXFULL },
	{ "420", REASON_SUSPEND },        { "421", REASON_REJECTED },
	{ "426", REASON_SUSPEND },        { "505", REASON_SYSTEMERROR },
	{ "506", REASON_SPAMDETECTED },   { "510", REASON_BLOCKED },
	{ "514", REASON_MESGTOOBIG },     { "517", REASON_AUTHFAILURE },
	{ "630", REASON_POLICYVIOLATION }, { "999", REASON_BLOCKED },
};

/* GoDaddy: "IB607" at the end of the reply. */
static const struct code_reason godaddy_codes[] = {
	{ "ib401", REASON_SECURITYERROR }, { "ib501", REASON_NOTCOMPLIANTRFC },
	{ "ib502", REASON_NOTCOMPLIANTRFC }, { "ib506", REASON_REJECTED },
	{ "ib508", REASON_AUTHFAILURE },   { "ib108", REASON_REQUIREPTR },
	{ "ib212", REASON_SPAMDETECTED },  { "ib705", REASON_VIRUSDETECTED },
	{ "ib605", REASON_TOOMANYCONN },   { "ib007", REASON_TOOMANYCONN },
	{ "ib101", REASON_SPEEDING },      { "ib504", REASON_SPEEDING },
	{ "ib510", REASON_SPEEDING },      { "ib607", REASON_SPEEDING },
	{ "ib103", REASON_BADREPUTATION }, { "ib104", REASON_BLOCKED },
	{ "ib105", REASON_BLOCKED },       { "ib106", REASON_BLOCKED },
	{ "ib110", REASON_BLOCKED },       { "ib111", REASON_BLOCKED },
	{ "ib112", REASON_BLOCKED },       { "ib113", REASON_BLOCKED },
};

/* Cox: "AUP#CXBL" and friends. */
static const struct code_reason cox_codes[] = {
	{ "cxbl", REASON_BLOCKED },        { "cdrbl", REASON_BLOCKED },
	{ "cxdns", REASON_REQUIREPTR },    { "cxsndr", REASON_AUTHFAILURE },
	{ "cxsmtp", REASON_REJECTED },     { "cxcnct", REASON_TOOMANYCONN },
	{ "cxmxrt", REASON_TOOMANYCONN },  { "cxthrt", REASON_SECURITYERROR },
	{ "cxmj", REASON_SECURITYERROR },  { "ipbl", REASON_BLOCKED },
	{ "urlbl", REASON_SPAMDETECTED },
};

/* Facebook: "RCP-P1" response codes. */
static const struct code_reason facebook_codes[] = {
	{ "rcp-p1", REASON_USERUNKNOWN }, { "int-p1", REASON_USERUNKNOWN },
	{ "int-p3", REASON_USERUNKNOWN }, { "int-p4", REASON_USERUNKNOWN },
	{ "rcp-p2", REASON_FILTERED },    { "rcp-p3", REASON_FILTERED },
	{ "rcp-t4", REASON_SUSPEND },     { "rcp-t1", REASON_SYSTEMERROR },
	{ "pol-p1", REASON_BLOCKED },     { "pol-p2", REASON_BLOCKED },
	{ "pol-p3", REASON_BLOCKED },     { "pol-p4", REASON_BLOCKED },
	{ "pol-t1", REASON_BLOCKED },     { "pol-t2", REASON_BLOCKED },
	{ "pol-t3", REASON_BLOCKED },     { "pol-p5", REASON_VIRUSDETECTED },
	{ "pol-p6", REASON_SPAMDETECTED }, { "pol-p7", REASON_AUTHFAILURE },
	{ "msg-p1", REASON_MESGTOOBIG },  { "int-p2", REASON_MESGTOOBIG },
	{ "msg-p2", REASON_CONTENTERROR }, { "msg-p3", REASON_NOTCOMPLIANTRFC },
	{ "dns-p1", REASON_REJECTED },    { "dns-p2", REASON_REJECTED },
	{ "dns-t1", REASON_REJECTED },    { "dns-p3", REASON_REQUIREPTR },
	{ "dns-t2", REASON_REQUIREPTR },  { "con-t1", REASON_TOOMANYCONN },
	{ "con-t2", REASON_TOOMANYCONN }, { "con-t3", REASON_TOOMANYCONN },
	{ "con-t4", REASON_TOOMANYCONN }, { "msg-t1", REASON_TOOMANYCONN },
};

/* i.ua: "https://mail.i.ua/err/2/". */
static const struct code_reason iua_codes[] = {
	{ "1/", REASON_NORELAYING }, { "2/", REASON_USERUNKNOWN }, { "3/", REASON_SUSPEND },
	{ "4/", REASON_MAILBOXFULL }, { "5/", REASON_TOOMANYCONN }, { "6/", REASON_NORELAYING },
	{ "7/", REASON_BLOCKED },    { "8/", REASON_REJECTED },    { "9/", REASON_BLOCKED },
	{ "10/", REASON_FILTERED },
};

static enum bounce_reason lookup_prefix(const struct code_reason *t, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strncmp(s, t[i].code, strlen(t[i].code)) == 0)
			return t[i].reason;
	return REASON_UNDEFINED;
}

#define LOOKUP(table, s) lookup_prefix(table, sizeof table / sizeof table[0], s)

static bool is_alnum_c(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* Orange/La Poste codes: a token starting "ofr", "lpn" or "ouk" ending in three digits. */
static enum bounce_reason orange_reason(const char *norm)
{
	static const char *const prefixes[] = { "ofr", "lpn", "ouk" };

	for (size_t i = 0; i < 3; i++) {
		for (const char *p = strstr(norm, prefixes[i]); p; p = strstr(p + 3, prefixes[i])) {
			const char *q = p + 3;

			if (p > norm && is_alnum_c(p[-1]))
				continue;
			while (is_alnum_c(*q) || *q == '_' || *q == '-')
				q++;
			if (q - p >= 6 && is_digit(q[-1]) && is_digit(q[-2]) && is_digit(q[-3])) {
				char code[4] = { q[-3], q[-2], q[-1], '\0' };
				enum bounce_reason r = LOOKUP(orange_codes, code);

				if (r != REASON_UNDEFINED)
					return r;
			}
		}
	}
	return REASON_UNDEFINED;
}

/* Spectrum: "AUP#I1000" style four-digit codes, by range. */
static enum bounce_reason spectrum_reason(int code)
{
	static const struct {
		int lo, hi;
		enum bounce_reason reason;
	} ranges[] = {
		{ 1000, 1000, REASON_BLOCKED },      { 1010, 1080, REASON_REJECTED },
		{ 1090, 1090, REASON_SYSTEMERROR },  { 1100, 1150, REASON_REQUIREPTR },
		{ 1160, 1190, REASON_POLICYVIOLATION }, { 1200, 1250, REASON_BLOCKED },
		{ 1260, 1260, REASON_NETWORKERROR }, { 1300, 1340, REASON_TOOMANYCONN },
		{ 1350, 1490, REASON_SPEEDING },     { 1500, 1520, REASON_REJECTED },
		{ 1530, 1530, REASON_MESGTOOBIG },   { 1540, 1550, REASON_SPEEDING },
		{ 1560, 1560, REASON_POLICYVIOLATION }, { 1580, 1580, REASON_SPEEDING },
	};

	for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
		if (code >= ranges[i].lo && code <= ranges[i].hi)
			return ranges[i].reason;
	return REASON_UNDEFINED;
}

/* Cox and Spectrum both answer with "AUP#<code>". */
static enum bounce_reason aup_reason(const char *norm)
{
	const char *p = strstr(norm, "aup#");
	int code = 0, digits = 0;

	if (p == NULL)
		return REASON_UNDEFINED;
	p += 4;
	if (LOOKUP(cox_codes, p) != REASON_UNDEFINED)
		return LOOKUP(cox_codes, p);
	for (; *p && digits < 4 && (is_alnum_c(*p)); p++) {
		if (is_digit(*p))
			code = code * 10 + (*p - '0'), digits++;
		else if (digits > 0)
			break;
	}
	return digits == 4 ? spectrum_reason(code) : REASON_UNDEFINED;
}

/* Response codes that name their provider: Orange, GoDaddy, Cox, Spectrum, Facebook, i.ua. */
static enum bounce_reason coded_reason(const char *norm)
{
	enum bounce_reason r = orange_reason(norm);
	const char *p;

	if (r != REASON_UNDEFINED)
		return r;
	if ((r = aup_reason(norm)) != REASON_UNDEFINED)
		return r;
	for (p = strstr(norm, " ib"); p; p = strstr(p + 1, " ib"))
		if (is_digit(p[3]) && is_digit(p[4]) && is_digit(p[5]) && !is_alnum_c(p[6]) &&
		    (r = LOOKUP(godaddy_codes, p + 1)) != REASON_UNDEFINED)
			return r;
	if ((p = strstr(norm, "postmaster.facebook.com")) != NULL ||
	    strstr(norm, "facebook") != NULL) {
		for (p = strchr(norm, '-'); p; p = strchr(p + 1, '-'))
			if (p - norm >= 3 &&
			    (r = LOOKUP(facebook_codes, p - 3)) != REASON_UNDEFINED)
				return r;
	}
	if ((p = strstr(norm, ".i.ua/err/")) != NULL)
		return LOOKUP(iua_codes, p + 10);
	return REASON_UNDEFINED;
}

/* Phrases with a provider-specific meaning, for mail to or through that provider. */
struct provider_rule {
	const char *hosts;   /* domain suffixes, '|'-separated */
	enum bounce_reason reason;
	const char *phrase;
};

static const struct provider_rule provider_rules[] = {
	{ "hotmail.com|outlook.com|live.com|msn.com", REASON_USERUNKNOWN,
	  "requested action not taken: mailbox unavailable" },
	{ "hotmail.com|outlook.com|live.com|msn.com", REASON_HOSTUNKNOWN,
	  "the domain is not reachable" },
	{ "messagelabs.com", REASON_USERUNKNOWN, "no such user" },
	{ "messagelabs.com", REASON_USERUNKNOWN, "invalid recipient" },
	{ "messagelabs.com", REASON_USERUNKNOWN, "mailbox is not allowed" },
	{ "messagelabs.com", REASON_SPAMDETECTED, "message filtered" },
	{ "messagelabs.com", REASON_BLOCKED, "your ip address has been" },
	{ "messagelabs.com", REASON_REJECTED, "your email address has been" },
	{ "messagelabs.com", REASON_REJECTED, "your domain has been" },
	{ "icloud.com|me.com|mac.com|apple.com", REASON_HASMOVED, "recipient no longer on server" },
	{ "icloud.com|me.com|mac.com|apple.com", REASON_USERUNKNOWN, "inactive email address" },
	{ "icloud.com|me.com|mac.com|apple.com", REASON_MAILBOXFULL, "user is over quota" },
	{ "yahoo.com|yahoodns.net|aol.com|aol.jp", REASON_USERUNKNOWN, "mailbox not found" },
	{ "yahoo.com|yahoodns.net|aol.com|aol.jp", REASON_SUSPEND, " is no longer valid." },
	{ "yahoo.com|yahoodns.net|aol.com|aol.jp", REASON_SUSPEND, "this mailbox is disabled" },
	{ "zoho.com|zohomail.com", REASON_USERUNKNOWN, "user does not exist" },
	{ "aol.com", REASON_HOSTUNKNOWN, "host or domain name not found" },
	{ "cox.net", REASON_USERUNKNOWN, "recipient rejected" },
};

/* True if one of the space-separated hosts ends with one of the '|'-separated suffixes. */
static bool hosts_match(const char *hosts, const char *suffixes)
{
	const char *h = hosts;

	while (h && *h) {
		size_t hl = strcspn(h, " ");

		for (const char *s = suffixes; *s;) {
			size_t sl = strcspn(s, "|");

			if (hl >= sl && strncasecmp(h + hl - sl, s, sl) == 0 &&
			    (hl == sl || h[hl - sl - 1] == '.' || h[hl - sl - 1] == '@'))
				return true;
			s += sl + (s[sl] == '|');
		}
		h += hl;
		while (*h == ' ')
			h++;
	}
	return false;
}

static enum bounce_reason provider_reason(const char *norm, const char *hosts)
{
	enum bounce_reason r = coded_reason(norm);

	if (r != REASON_UNDEFINED || hosts == NULL)
		return r;
	for (size_t i = 0; i < sizeof provider_rules / sizeof provider_rules[0]; i++)
		if (strstr(norm, provider_rules[i].phrase) != NULL &&
		    hosts_match(hosts, provider_rules[i].hosts))
			return provider_rules[i].reason;
	return REASON_UNDEFINED;
}


/* True if pattern (with '*' wildcards) occurs in text. */
static bool pattern_match(const char *text, const char *pattern)
{
	char part[128];
	const char *p = pattern;

	while (*p) {
		const char *star = strchr(p, '*');
		size_t n = star ? (size_t)(star - p) : strlen(p);
		const char *hit;

		if (n >= sizeof part)
			n = sizeof part - 1;
		memcpy(part, p, n);
		part[n] = '\0';
		if (n > 0) {
			if ((hit = strstr(text, part)) == NULL)
				return false;
			text = hit + n;
		}
		p += star ? (size_t)(star - p) + 1 : strlen(p);
	}
	return true;
}

static enum bounce_reason reason_of_subject7(int detail)
{
	switch (detail) {
	case 13:
		return REASON_SUSPEND;
	case 17: case 18:
		return REASON_HASMOVED;
	case 25:
		return REASON_REQUIREPTR;
	case 20: case 21: case 22: case 23: case 24: case 26: case 29:
		return REASON_AUTHFAILURE;
	case 27:
		return REASON_REJECTED;
	case 28:
		return REASON_SPEEDING;
	case 10: case 11: case 30:
		return REASON_FAILEDSTARTTLS;
	default:
		break;
	}
	/* Microsoft 365: 5.7.5xx/6xx/7xx refuse the sending IP or tenant. */
	if (detail >= 500 && detail <= 799)
		return detail == 509 || detail == 515 ? REASON_AUTHFAILURE : REASON_BLOCKED;
	return REASON_SECURITYERROR;
}

/* What an RFC 3463 status says on its own (the registry's subject and detail codes). */
static enum bounce_reason reason_of_status(int cls, int subject, int detail)
{
	static const struct {
		int subject, detail;
		enum bounce_reason reason;
	} table[] = {
		{ 1, 0, REASON_USERUNKNOWN },   { 1, 1, REASON_USERUNKNOWN },
		{ 1, 2, REASON_HOSTUNKNOWN },   { 1, 3, REASON_USERUNKNOWN },
		{ 1, 4, REASON_USERUNKNOWN },   { 1, 6, REASON_HASMOVED },
		{ 1, 7, REASON_REJECTED },      { 1, 8, REASON_REJECTED },
		{ 1, 10, REASON_USERUNKNOWN },  { 2, 0, REASON_FILTERED },
		{ 2, 1, REASON_FILTERED },      { 2, 2, REASON_MAILBOXFULL },
		{ 2, 3, REASON_EXCEEDLIMIT },   { 2, 4, REASON_SYSTEMERROR },
		{ 3, 0, REASON_SYSTEMERROR },   { 3, 1, REASON_SYSTEMFULL },
		{ 3, 2, REASON_NOTACCEPT },     { 3, 3, REASON_SYSTEMERROR },
		{ 3, 4, REASON_MESGTOOBIG },    { 3, 5, REASON_SYSTEMERROR },
		{ 4, 0, REASON_NETWORKERROR },  { 4, 1, REASON_EXPIRED },
		{ 4, 2, REASON_NETWORKERROR },  { 4, 3, REASON_SYSTEMERROR },
		{ 4, 4, REASON_HOSTUNKNOWN },   { 4, 5, REASON_SYSTEMFULL },
		{ 4, 6, REASON_NETWORKERROR },  { 4, 7, REASON_EXPIRED },
		{ 5, 1, REASON_SYNTAXERROR },   { 5, 2, REASON_SYNTAXERROR },
		{ 5, 4, REASON_SYNTAXERROR },   { 5, 5, REASON_SYNTAXERROR },
	};

	if (cls == 2)
		return REASON_DELIVERED;
	/* "Unable to route" that may pass is a network error, not a dead domain. */
	if (cls == 4 && subject == 4 && detail == 4)
		return REASON_NETWORKERROR;
	if (subject == 6)
		return REASON_CONTENTERROR;
	if (subject == 7)
		return reason_of_subject7(detail);
	/* Microsoft's extended X.1.3xx codes: the recipient was not found. */
	if (subject == 1 && detail >= 300 && detail <= 399)
		return REASON_USERUNKNOWN;
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
		if (table[i].subject == subject && table[i].detail == detail)
			return table[i].reason;
	return REASON_UNDEFINED;
}

/* Parses "5.1.1" into its three numbers; false if status is not one. */
static bool parse_status(const char *status, int *cls, int *subject, int *detail)
{
	char buf[16];

	if (status == NULL || !classify_find_status(status, strlen(status), buf, sizeof buf))
		return false;
	*cls = buf[0] - '0';
	*subject = 0;
	*detail = 0;
	const char *p = buf + 2;
	const char *end = buf + strlen(buf);
	size_t n = read_number(p, end, 3, subject);

	p += n + 1;
	read_number(p, end, 3, detail);
	return true;
}

/*
 * The receiving system's own verdict that the mailbox does not exist, in the words of
 * Lotus Notes/Domino, Exchange, IMail, Gmail and qmail: believed whatever the stage.
 */
static const char *const definite_userunknown[] = {
	"not listed in domino directory",
	"not listed in public name & address book",
	"recipient name is not recognized",
	"unknown user:",
	"resolver.adr.recipientnotfound",
	"resolver.adr.recipnotfound",
	"email account that you tried to reach does not exist",
	"account does not exist at the organization",
	"address couldn't be found",
	"no mailbox here by that name",
};

static bool is_definite_userunknown(const char *norm)
{
	for (size_t i = 0; i < sizeof definite_userunknown / sizeof definite_userunknown[0]; i++)
		if (strstr(norm, definite_userunknown[i]) != NULL)
			return true;
	return false;
}

typedef unsigned long long reason_set;

#define R(reason) ((reason_set)1 << (reason))

/*
 * Which byte pairs occur in a text (hashed into 4096 bits): a cheap filter that skips most
 * patterns before searching for them.
 */
struct pair_set {
	unsigned long long bits[4096 / 64];
};

static unsigned pair_hash(unsigned char a, unsigned char b)
{
	return ((unsigned)a * 67u + b) & 4095u;
}

static void pair_set_fill(struct pair_set *ps, const char *text)
{
	memset(ps, 0, sizeof *ps);
	for (const unsigned char *p = (const unsigned char *)text; p[0] && p[1]; p++) {
		unsigned v = pair_hash(p[0], p[1]);

		ps->bits[v / 64] |= 1ULL << (v % 64);
	}
}

/* False if some adjacent pair of pattern (outside its '*') is missing from the text. */
static bool pairs_present(const struct pair_set *ps, const char *pattern)
{
	for (const unsigned char *p = (const unsigned char *)pattern; p[0] && p[1]; p++) {
		unsigned v = pair_hash(p[0], p[1]);

		if (p[0] == '*' || p[1] == '*')
			continue;
		if (!(ps->bits[v / 64] & (1ULL << (v % 64))))
			return false;
	}
	return true;
}

/* Every reason whose text patterns occur in norm. */
static reason_set text_reasons(const char *norm)
{
	struct pair_set ps;
	reason_set set = 0;

	if (norm[0] == '\0')
		return 0;
	pair_set_fill(&ps, norm);
	for (size_t i = 0; i < sizeof text_patterns / sizeof text_patterns[0]; i++) {
		const struct text_pattern *tp = &text_patterns[i];

		if (!(set & R(tp->reason)) && pairs_present(&ps, tp->pattern) &&
		    pattern_match(norm, tp->pattern))
			set |= R(tp->reason);
	}
	return set;
}

/* What one failure looks like, for the reason tests below. */
struct evidence {
	enum bounce_reason status;  /* what the status code alone says, or UNDEFINED */
	reason_set text;            /* reasons the text's patterns name */
	enum smtp_stage stage;
	bool definite;              /* the text is a system's own "no such mailbox" */
};

static bool before_rcpt(enum smtp_stage stage)
{
	return stage == SMTP_STAGE_CONNECT || stage == SMTP_STAGE_HELO || stage == SMTP_STAGE_MAIL;
}

/*
 * "User unknown" is believed from an X.1.x status unless the text names another cause, or
 * from the text of a RCPT rejection; never from a reply to the greeting, HELO or MAIL.
 */
static bool is_userunknown(const struct evidence *ev)
{
	const reason_set others =
	    R(REASON_NORELAYING) | R(REASON_BLOCKED) | R(REASON_MAILBOXFULL) | R(REASON_HASMOVED) |
	    R(REASON_REJECTED) | R(REASON_NOTACCEPT) | R(REASON_SPEEDING) | R(REASON_TOOMANYCONN) |
	    R(REASON_SPAMDETECTED) | R(REASON_BADREPUTATION) | R(REASON_POLICYVIOLATION) |
	    R(REASON_MAILERERROR) | R(REASON_FILTERED);

	if (before_rcpt(ev->stage) || ev->status == REASON_SUSPEND)
		return false;
	if (ev->status == REASON_USERUNKNOWN || ev->definite)
		return !(ev->text & others);
	return ev->stage == SMTP_STAGE_RCPT && (ev->text & R(REASON_USERUNKNOWN));
}

/*
 * A refusal after the message was seen (or at an unknown stage) that says "user unknown"
 * without an X.1.x status is taken for a filter, not a dead address.
 */
static bool is_filtered(const struct evidence *ev)
{
	const reason_set words = R(REASON_FILTERED) | R(REASON_USERUNKNOWN);

	/* A local delivery program that failed is no filter. */
	if (ev->status == REASON_SUSPEND || (ev->text & R(REASON_MAILERERROR)))
		return false;
	if (ev->status == REASON_FILTERED)
		return (ev->text & words) != 0;
	if (before_rcpt(ev->stage) || ev->stage == SMTP_STAGE_RCPT)
		return false;
	return (ev->text & words) != 0;
}

/* The envelope sender was refused. */
static bool is_rejected(const struct evidence *ev)
{
	if (ev->status == REASON_REJECTED)
		return true;
	if (!(ev->text & R(REASON_REJECTED)))
		return false;
	if (ev->stage == SMTP_STAGE_MAIL)
		return true;
	if (ev->stage == SMTP_STAGE_DATA)
		return ev->status != REASON_USERUNKNOWN;
	return ev->status == REASON_UNDEFINED;
}

/* The domain does not exist; a DNS error that may pass (try again) is not that. */
static bool is_hostunknown(const struct evidence *ev)
{
	if (before_rcpt(ev->stage))
		return false;
	if (ev->text & R(REASON_NETWORKERROR))
		return false;
	return ev->status == REASON_HOSTUNKNOWN || (ev->text & R(REASON_HOSTUNKNOWN));
}

static bool reason_holds(enum bounce_reason r, const struct evidence *ev)
{
	switch (r) {
	case REASON_USERUNKNOWN:
		return is_userunknown(ev);
	case REASON_FILTERED:
		return is_filtered(ev);
	case REASON_REJECTED:
		return is_rejected(ev);
	case REASON_HOSTUNKNOWN:
		return is_hostunknown(ev);
	case REASON_MESGTOOBIG:
		return ev->status == r || (ev->status != REASON_EXCEEDLIMIT && (ev->text & R(r)));
	case REASON_NOTACCEPT:
		/* A null MX (RFC 7505): the domain takes no mail at all. */
		return (ev->text & R(r)) != 0;
	default:
		return ev->status == r || (ev->text & R(r)) != 0;
	}
}

/* The order reasons are tested in: the first that holds wins (sisimai's order). */
static const enum bounce_reason first_order[] = {
	REASON_NOTACCEPT,
	REASON_MAILBOXFULL,  REASON_MESGTOOBIG,      REASON_EXCEEDLIMIT,   REASON_SUSPEND,
	REASON_HASMOVED,     REASON_NORELAYING,      REASON_AUTHFAILURE,   REASON_USERUNKNOWN,
	REASON_FILTERED,     REASON_REQUIREPTR,      REASON_NOTCOMPLIANTRFC, REASON_BADREPUTATION,
	REASON_CONTENTERROR, REASON_REJECTED,        REASON_HOSTUNKNOWN,   REASON_SPAMDETECTED,
	REASON_SPEEDING,     REASON_TOOMANYCONN,     REASON_BLOCKED,
};

/* When the status says nothing decisive: the text alone, in this order. */
static const enum bounce_reason text_order[] = {
	REASON_MAILBOXFULL,  REASON_AUTHFAILURE,   REASON_BADREPUTATION, REASON_SPEEDING,
	REASON_SPAMDETECTED, REASON_VIRUSDETECTED, REASON_POLICYVIOLATION, REASON_NORELAYING,
	REASON_EXPIRED,      REASON_SYSTEMERROR,   REASON_NETWORKERROR,  REASON_SUSPEND,
	REASON_CONTENTERROR, REASON_SYSTEMFULL,    REASON_NOTACCEPT,     REASON_SECURITYERROR,
	REASON_FILTERED,     REASON_MAILERERROR,   REASON_SYNTAXERROR,   REASON_FAILEDSTARTTLS,
	REASON_NOTCOMPLIANTRFC,
};

/* Status reasons the text is asked about again (they are often too coarse). */
static bool status_is_coarse(enum bounce_reason r)
{
	switch (r) {
	case REASON_UNDEFINED:
	case REASON_ONHOLD:
	case REASON_SYSTEMERROR:
	case REASON_SECURITYERROR:
	case REASON_SUSPEND:
	case REASON_NETWORKERROR:
	case REASON_HOSTUNKNOWN:
	case REASON_USERUNKNOWN:
		return true;
	default:
		return false;
	}
}

static enum bounce_reason reason_of_reply(int code)
{
	switch (code) {
	case 421:
		return REASON_SYSTEMERROR;
	case 452:
	case 552:
		return REASON_MAILBOXFULL;
	case 551:
		return REASON_HASMOVED;
	case 523:
		return REASON_MESGTOOBIG;
	case 525:
		return REASON_SUSPEND;
	default:
		return REASON_UNDEFINED;
	}
}

static enum bounce_reason decide(const struct evidence *ev, int reply, bool have_text)
{
	for (size_t i = 0; i < sizeof first_order / sizeof first_order[0]; i++)
		if (reason_holds(first_order[i], ev))
			return first_order[i];
	if (status_is_coarse(ev->status)) {
		for (size_t i = 0; i < sizeof text_order / sizeof text_order[0]; i++)
			if (ev->text & R(text_order[i]))
				return text_order[i];
	}
	if (ev->status != REASON_UNDEFINED && ev->status != REASON_USERUNKNOWN &&
	    ev->status != REASON_HOSTUNKNOWN)
		return ev->status;
	if (reason_of_reply(reply) != REASON_UNDEFINED)
		return reason_of_reply(reply);
	return have_text ? REASON_ONHOLD : REASON_UNDEFINED;
}

enum bounce_class classify_class_of(enum bounce_reason reason, const char *status, int reply_code)
{
	switch (reason) {
	case REASON_DELIVERED:
	case REASON_FEEDBACK:
	case REASON_VACATION:
		return BOUNCE_CLASS_NONE;
	case REASON_USERUNKNOWN:
	case REASON_HOSTUNKNOWN:
	case REASON_HASMOVED:
		return BOUNCE_CLASS_HARD;
	case REASON_NOTACCEPT:
		if ((status != NULL && status[0] == '4') || (reply_code >= 400 && reply_code < 500))
			return BOUNCE_CLASS_SOFT;
		return BOUNCE_CLASS_HARD;
	default:
		return BOUNCE_CLASS_SOFT;
	}
}

void classify(const struct classify_input *in, struct classification *out)
{
	char norm[TEXT_MAX];
	struct evidence ev = { REASON_UNDEFINED, 0, in->stage, false };
	int cls = 0, subject = 0, detail = 0;
	size_t len = in->text ? normalise_text(in->text, strlen(in->text), norm, sizeof norm) : 0;

	norm[len] = '\0';
	if (parse_status(in->status, &cls, &subject, &detail))
		ev.status = reason_of_status(cls, subject, detail);
	ev.text = text_reasons(norm);
	ev.definite = is_definite_userunknown(norm);
	if (ev.stage == SMTP_STAGE_UNKNOWN)
		ev.stage = stage_in(norm);
	if (ev.status == REASON_DELIVERED)
		out->reason = REASON_DELIVERED;
	else if ((out->reason = provider_reason(norm, in->hosts)) == REASON_UNDEFINED)
		out->reason = decide(&ev, in->reply_code, len > 0);
	out->class = classify_class_of(out->reason, in->status, in->reply_code);
}
