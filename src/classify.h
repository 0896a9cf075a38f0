/* classify.h — the one bounce classifier: RFC 3463 status + SMTP reply code + diagnostic
 * text -> reason (sisimai's names) and hard/soft. Used by the DSN parser and by the SMTP
 * sender for 5xx replies at send time (RFC 3463, RFC 5321, RFC 7505). */
#ifndef CUTOFF_CLASSIFY_H
#define CUTOFF_CLASSIFY_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Why a message was not delivered. The names (classify_reason_name) are sisimai's, so
 * reports can be compared with that project's. REASON_UNDEFINED is a failure whose cause
 * could not be told; REASON_DELIVERED, REASON_FEEDBACK and REASON_VACATION are not failures.
 */
enum bounce_reason {
	REASON_UNDEFINED = 0,
	REASON_AUTHFAILURE,     /* SPF/DKIM/DMARC checks failed */
	REASON_BADREPUTATION,   /* the sending IP or domain has a poor reputation */
	REASON_BLOCKED,         /* the sending host is blocked (DNSBL, banned IP, ...) */
	REASON_CONTENTERROR,    /* the message content or headers are malformed */
	REASON_DELIVERED,       /* a success notice (Action: delivered/relayed) */
	REASON_EXCEEDLIMIT,     /* message length exceeds an administrative limit (X.2.3) */
	REASON_EXPIRED,         /* delivery time expired: the queue gave up (X.4.7) */
	REASON_FAILEDSTARTTLS,  /* STARTTLS could not be negotiated */
	REASON_FEEDBACK,        /* an ARF complaint (RFC 5965) */
	REASON_FILTERED,        /* the recipient's side refused this message (filters, X.2.0) */
	REASON_HASMOVED,        /* the mailbox has moved (X.1.6) */
	REASON_HOSTUNKNOWN,     /* the recipient's domain does not exist or has no mail host */
	REASON_MAILBOXFULL,     /* the recipient's mailbox is full (X.2.2) */
	REASON_MAILERERROR,     /* a local delivery program failed */
	REASON_MESGTOOBIG,      /* the message is too big (X.3.4) */
	REASON_NETWORKERROR,    /* connection, DNS or routing trouble */
	REASON_NORELAYING,      /* relaying denied */
	REASON_NOTACCEPT,       /* the domain accepts no mail at all (null MX, RFC 7505) */
	REASON_NOTCOMPLIANTRFC, /* the message violates RFC 5322 (duplicate headers, ...) */
	REASON_ONHOLD,          /* not enough information to decide */
	REASON_POLICYVIOLATION, /* refused by a content or organisational policy */
	REASON_REJECTED,        /* the envelope sender was refused */
	REASON_REQUIREPTR,      /* the sending IP has no valid reverse DNS */
	REASON_SECURITYERROR,   /* authentication or encryption requirements not met */
	REASON_SPAMDETECTED,    /* the message was taken for spam */
	REASON_SPEEDING,        /* too many messages too fast: rate limited */
	REASON_SUSPEND,         /* the mailbox exists but is disabled or suspended */
	REASON_SYNTAXERROR,     /* SMTP syntax error */
	REASON_SYSTEMERROR,     /* a remote system error */
	REASON_SYSTEMFULL,      /* the remote system is out of disk space */
	REASON_TOOMANYCONN,     /* too many connections */
	REASON_USERUNKNOWN,     /* the mailbox does not exist */
	REASON_VACATION,        /* an auto-reply (RFC 3834) */
	REASON_VIRUSDETECTED,   /* the message was taken for a virus */
	REASON_COUNT
};

/* Whether an address is dead (hard), may work later (soft), or neither (not a failure). */
enum bounce_class {
	BOUNCE_CLASS_NONE = 0,
	BOUNCE_CLASS_SOFT,
	BOUNCE_CLASS_HARD
};

/* The SMTP command a rejection answered, when the text tells it. */
enum smtp_stage {
	SMTP_STAGE_UNKNOWN = 0,
	SMTP_STAGE_CONNECT, /* greeting or connection */
	SMTP_STAGE_HELO,
	SMTP_STAGE_MAIL,    /* MAIL FROM: about the sender, never the recipient's address */
	SMTP_STAGE_RCPT,
	SMTP_STAGE_DATA     /* DATA or end of data: about the content */
};

/* What is known about one failure. Every field may be empty. */
struct classify_input {
	const char *status;    /* RFC 3463 status "5.1.1", or NULL */
	int reply_code;        /* SMTP reply code such as 550, or 0 */
	const char *text;      /* the diagnostic or reply text, or NULL */
	enum smtp_stage stage; /* SMTP_STAGE_UNKNOWN: found in text when it says so */
	const char *hosts;     /* the recipient's domain and the names of the servers that
				* answered or reported, separated by spaces, or NULL: selects
				* the documented rules of large mailbox providers */
};

struct classification {
	enum bounce_reason reason;
	enum bounce_class class;
};

/*
 * Classifies one failure. Documented provider codes decide first (Orange "OFR_416",
 * GoDaddy "IB607", Cox/Spectrum "AUP#", Facebook "RCP-P1", ...). Then the reasons are
 * tested in a fixed order, each holding when the status names it (RFC 3463 subject and
 * detail) or the text's patterns do; "user unknown" in text is believed from an X.1.x
 * status or a RCPT-stage reply, and taken for a filter after DATA or at an unknown stage.
 * Then the text alone, then the reply code.
 *
 * Hard means the address itself is dead (userunknown, hostunknown, hasmoved; notaccept
 * unless the status or reply is 4xx); everything else, a full mailbox or a policy block
 * included, is soft even with a 5xx code. At send time the caller treats a 4xx reply as a
 * deferral and classifies 5xx replies. Never fails; empty input gives
 * REASON_UNDEFINED/BOUNCE_CLASS_SOFT. Allocates nothing; safe from several threads.
 */
void classify(const struct classify_input *in, struct classification *out);

/* The class a reason implies (notaccept needs the status or reply code: 4xx is soft). */
enum bounce_class classify_class_of(enum bounce_reason reason, const char *status, int reply_code);

/* sisimai's name of a reason ("userunknown"); never NULL. */
const char *classify_reason_name(enum bounce_reason reason);

/* The reason called name (case-insensitive); false if there is none. */
bool classify_reason_from_name(const char *name, enum bounce_reason *out);

/* "hard", "soft" or "none". */
const char *classify_class_name(enum bounce_class cls);

/*
 * Finds the first RFC 3463 enhanced status code of a failure ("5.1.1", "4.7.606") in
 * text[0..len), or else the first success code ("2.1.5"), and copies it, NUL-terminated,
 * into out (outlen >= 12 is enough). Returns false and leaves out empty if there is none.
 * Codes inside IP addresses or version numbers are skipped.
 */
bool classify_find_status(const char *text, size_t len, char *out, size_t outlen);

/*
 * Finds the first SMTP failure reply code (4xx or 5xx standing alone as a word, as in
 * "said: 550 ..." or "550-5.1.1") in text[0..len), or else the first 2xx. Returns it, or 0
 * if there is none.
 */
int classify_find_reply_code(const char *text, size_t len);

/*
 * The SMTP command text[0..len) says a reply answered ("after RCPT TO", "in reply to end
 * of DATA command", ">>> MAIL From:"): the earliest such phrase wins; SMTP_STAGE_UNKNOWN
 * if there is none. Folded lines are fine.
 */
enum smtp_stage classify_find_stage(const char *text, size_t len);

#endif
