/* locale_dates.c — a small table of CLDR date patterns, day and month names, for the languages cutoff writes dates in. */
#include "locale_dates.h"

#include <stdio.h>
#include <string.h>

/*
 * Patterns: %A weekday name, %B month name, %d day (no padding), %m month
 * number (no padding), %Y year, %H hour 00-23, %k hour 0-23, %I hour 1-12,
 * %M minute 00-59, %p the AM/PM marker, %% a percent sign.
 */
struct locale_dates {
	const char *tag;
	const char *date_pattern;
	const char *time_pattern;
	const char *weekdays[7]; /* Sunday first */
	const char *months[12];  /* in the case the date pattern needs */
	const char *am_pm[2];
};

#define MONTHS_EN                                                                              \
	{"January", "February", "March", "April", "May", "June", "July", "August", "September",  \
	 "October", "November", "December"}
#define WEEKDAYS_EN {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
#define MONTHS_NONE {"", "", "", "", "", "", "", "", "", "", "", ""}
#define NO_AM_PM {"", ""}

static const struct locale_dates table[] = {
	{"en", "%A, %d %B %Y", "%H:%M", WEEKDAYS_EN, MONTHS_EN, NO_AM_PM},
	{"en-US", "%A, %B %d, %Y", "%I:%M %p", WEEKDAYS_EN, MONTHS_EN, {"AM", "PM"}},
	{"fr", "%A %d %B %Y", "%H:%M",
	 {"dimanche", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi"},
	 {"janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
	  "octobre", "novembre", "décembre"},
	 NO_AM_PM},
	{"de", "%A, %d. %B %Y", "%H:%M",
	 {"Sonntag", "Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag"},
	 {"Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September",
	  "Oktober", "November", "Dezember"},
	 NO_AM_PM},
	{"es", "%A, %d de %B de %Y", "%k:%M",
	 {"domingo", "lunes", "martes", "miércoles", "jueves", "viernes", "sábado"},
	 {"enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre",
	  "octubre", "noviembre", "diciembre"},
	 NO_AM_PM},
	{"it", "%A %d %B %Y", "%H:%M",
	 {"domenica", "lunedì", "martedì", "mercoledì", "giovedì", "venerdì", "sabato"},
	 {"gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto",
	  "settembre", "ottobre", "novembre", "dicembre"},
	 NO_AM_PM},
	{"nl", "%A %d %B %Y", "%H:%M",
	 {"zondag", "maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag"},
	 {"januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september",
	  "oktober", "november", "december"},
	 NO_AM_PM},
	{"pt", "%A, %d de %B de %Y", "%H:%M",
	 {"domingo", "segunda-feira", "terça-feira", "quarta-feira", "quinta-feira", "sexta-feira",
	  "sábado"},
	 {"janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto", "setembro",
	  "outubro", "novembro", "dezembro"},
	 NO_AM_PM},
	{"sv", "%A %d %B %Y", "%H:%M",
	 {"söndag", "måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag"},
	 {"januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti", "september",
	  "oktober", "november", "december"},
	 NO_AM_PM},
	{"da", "%A den %d. %B %Y", "%H.%M",
	 {"søndag", "mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag"},
	 {"januar", "februar", "marts", "april", "maj", "juni", "juli", "august", "september",
	  "oktober", "november", "december"},
	 NO_AM_PM},
	{"nb", "%A %d. %B %Y", "%H:%M",
	 {"søndag", "mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag"},
	 {"januar", "februar", "mars", "april", "mai", "juni", "juli", "august", "september",
	  "oktober", "november", "desember"},
	 NO_AM_PM},
	{"pl", "%A, %d %B %Y", "%H:%M",
	 {"niedziela", "poniedziałek", "wtorek", "środa", "czwartek", "piątek", "sobota"},
	 {"stycznia", "lutego", "marca", "kwietnia", "maja", "czerwca", "lipca", "sierpnia",
	  "września", "października", "listopada", "grudnia"},
	 NO_AM_PM},
	{"ru", "%A, %d %B %Y г.", "%H:%M",
	 {"воскресенье", "понедельник", "вторник", "среда", "четверг", "пятница", "суббота"},
	 {"января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября",
	  "октября", "ноября", "декабря"},
	 NO_AM_PM},
	{"ja", "%Y年%m月%d日%A", "%k:%M",
	 {"日曜日", "月曜日", "火曜日", "水曜日", "木曜日", "金曜日", "土曜日"}, MONTHS_NONE,
	 NO_AM_PM},
	{"ko", "%Y년 %m월 %d일 %A", "%p %I:%M",
	 {"일요일", "월요일", "화요일", "수요일", "목요일", "금요일", "토요일"}, MONTHS_NONE,
	 {"오전", "오후"}},
	{"zh", "%Y年%m月%d日%A", "%H:%M",
	 {"星期日", "星期一", "星期二", "星期三", "星期四", "星期五", "星期六"}, MONTHS_NONE,
	 NO_AM_PM},
};

/* Other names for a language in the table. */
static const struct {
	const char *alias, *tag;
} aliases[] = {{"no", "nb"}};

static char tag_char(char ch)
{
	if (ch == '_')
		return '-';
	return (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
}

/* True if the first n bytes of a equal the whole of b, ignoring case and '_' versus '-'. */
static bool tag_equal_n(const char *a, size_t n, const char *b)
{
	size_t i;

	for (i = 0; i < n && b[i] != '\0'; i++)
		if (tag_char(a[i]) != tag_char(b[i]))
			return false;
	return i == n && b[i] == '\0';
}

static const struct locale_dates *find_exact(const char *tag, size_t n)
{
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
		if (tag_equal_n(tag, n, table[i].tag))
			return &table[i];
	for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
		if (tag_equal_n(tag, n, aliases[i].alias))
			return find_exact(aliases[i].tag, strlen(aliases[i].tag));
	return NULL;
}

const struct locale_dates *locale_dates_find(const char *tag)
{
	size_t n = tag ? strlen(tag) : 0;

	while (n > 0) {
		const struct locale_dates *l = find_exact(tag, n);
		if (l != NULL)
			return l;
		while (n > 0 && tag[n - 1] != '-' && tag[n - 1] != '_')
			n--;
		if (n > 0)
			n--; /* drop the separator too */
	}
	return &table[0];
}

const char *locale_dates_tag(const struct locale_dates *l)
{
	return l->tag;
}

bool locale_same_language(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return false;
	for (;; a++, b++) {
		bool end_a = *a == '\0' || *a == '-' || *a == '_';
		bool end_b = *b == '\0' || *b == '-' || *b == '_';
		if (end_a || end_b)
			return end_a && end_b;
		if (tag_char(*a) != tag_char(*b))
			return false;
	}
}

static bool leap_year(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static bool civil_valid(const struct locale_civil *c)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (c->year < 1 || c->year > 9999 || c->month < 1 || c->month > 12 || c->day < 1 ||
	    c->hour < 0 || c->hour > 23 || c->minute < 0 || c->minute > 59)
		return false;
	return c->day <= days[c->month - 1] + (c->month == 2 && leap_year(c->year));
}

long long locale_days_from_civil(int year, int month, int day)
{
	/* Howard Hinnant's days_from_civil: eras of 400 years starting in March. */
	long long y = (long long)year - (month <= 2);
	long long era = (y >= 0 ? y : y - 399) / 400;
	long long yoe = y - era * 400;
	long long doy = (153LL * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
	long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

int locale_weekday(int year, int month, int day)
{
	long long d = locale_days_from_civil(year, month, day);

	/* 1970-01-01 was a Thursday (4). */
	return (int)(((d + 4) % 7 + 7) % 7);
}

/* Appends s to buf at *len; false if it does not fit (with its NUL). */
static bool put(char *buf, size_t n, size_t *len, const char *s)
{
	size_t k = strlen(s);

	if (*len + k + 1 > n)
		return false;
	memcpy(buf + *len, s, k + 1);
	*len += k;
	return true;
}

/* Expands one %x directive of a pattern; false if unknown or out of room. */
static bool expand(const struct locale_dates *l, const struct locale_civil *c, char x,
		   char *buf, size_t n, size_t *len)
{
	char num[16];
	int h12 = c->hour % 12 == 0 ? 12 : c->hour % 12;

	switch (x) {
	case 'A': return put(buf, n, len, l->weekdays[c->weekday]);
	case 'B': return put(buf, n, len, l->months[c->month - 1]);
	case 'd': snprintf(num, sizeof num, "%d", c->day); break;
	case 'm': snprintf(num, sizeof num, "%d", c->month); break;
	case 'Y': snprintf(num, sizeof num, "%d", c->year); break;
	case 'H': snprintf(num, sizeof num, "%02d", c->hour); break;
	case 'k': snprintf(num, sizeof num, "%d", c->hour); break;
	case 'I': snprintf(num, sizeof num, "%d", h12); break;
	case 'M': snprintf(num, sizeof num, "%02d", c->minute); break;
	case 'p': return put(buf, n, len, l->am_pm[c->hour >= 12]);
	case '%': return put(buf, n, len, "%");
	default: return false;
	}
	return put(buf, n, len, num);
}

static int format(const struct locale_dates *l, const char *pattern,
		  const struct locale_civil *c, char *buf, size_t n)
{
	size_t len = 0;
	char lit[2] = {0, 0};

	if (n == 0)
		return -1;
	buf[0] = '\0';
	if (!civil_valid(c) || c->weekday != locale_weekday(c->year, c->month, c->day))
		return -1;
	for (const char *p = pattern; *p; p++) {
		bool ok;
		if (*p == '%' && p[1] != '\0') {
			ok = expand(l, c, *++p, buf, n, &len);
		} else {
			lit[0] = *p;
			ok = put(buf, n, &len, lit);
		}
		if (!ok) {
			buf[0] = '\0';
			return -1;
		}
	}
	return (int)len;
}

int locale_dates_format_date(const struct locale_dates *l, const struct locale_civil *c,
			     char *buf, size_t n)
{
	return format(l, l->date_pattern, c, buf, n);
}

int locale_dates_format_time(const struct locale_dates *l, const struct locale_civil *c,
			     char *buf, size_t n)
{
	return format(l, l->time_pattern, c, buf, n);
}
