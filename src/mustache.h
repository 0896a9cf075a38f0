/* mustache.h — Mustache templates over jansson data: compile once, render many (Mustache spec 1.x). */
#ifndef CUTOFF_MUSTACHE_H
#define CUTOFF_MUSTACHE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "err.h"
#include "util.h"

/*
 * A template is compiled once into a node tree (with every partial it can reach)
 * and rendered many times; rendering never re-parses, allocates nothing but the
 * output, and does not modify the template, so one compiled template may be
 * rendered from several threads at once.
 *
 * Data model: a jansson value. Names are resolved as the spec says: "." is the
 * top of the context stack; "a.b.c" looks "a" up through the context stack
 * (innermost first), then "b" and "c" only inside the value found ("a.b" is
 * never a key of its own). Sections ({{#x}}) iterate over arrays and push any
 * other truthy value once; inverted sections ({{^x}}) render when x is falsey.
 * Falsey is JavaScript's !!x == false, as the spec puts it: missing, null,
 * false, 0, "" and the empty array. Values interpolate as: strings as they are,
 * integers in decimal, reals in the shortest form that reads back exactly
 * (1.5 -> "1.5", 85.0 -> "85"), true/false as "true"/"false", null as nothing.
 * Objects and arrays interpolate as nothing (an error under MUSTACHE_STRICT).
 */
struct mustache;

/*
 * Finds partials. load() looks up the partial called name and returns 0 with
 * *text_out set to its source (NUL-terminated, allocated with malloc/xmalloc;
 * the engine takes it over and frees it) and *origin_out set to a name for
 * error messages such as "templates/common/footer.mustache" (malloc'd and taken
 * over likewise; may be left NULL, and then the partial's name is used).
 * It returns 1 when there is no such partial (the tag then renders as nothing,
 * or fails under MUSTACHE_STRICT), or a negative enum err_code after filling e,
 * which makes mustache_compile fail with that code.
 * Each name is loaded at most once per mustache_compile; recursive partials are
 * fine (the recursion ends when the data does).
 */
struct mustache_partials {
	int (*load)(void *ud, const char *name, char **text_out, char **origin_out,
		    struct err *e);
	void *ud;
};

/*
 * Compiles text (NUL-terminated; it is copied) into *out, loading every partial
 * it can reach through partials (which may be NULL: then no partial is found).
 * origin names the template in error messages ("templates/x/text.mustache");
 * NULL means "<template>".
 * Returns 0, or ERR_CONFIG for a broken template (unclosed or mismatched
 * section, unclosed tag, bad set-delimiter tag, empty or spaced tag name,
 * nesting deeper than MUSTACHE_MAX_DEPTH), the message naming origin:line:column
 * and what to do; or the code a partial loader returned. *out is NULL on error.
 * The caller frees *out with mustache_free.
 */
int mustache_compile(struct mustache **out, const char *text, const char *origin,
		     const struct mustache_partials *partials, struct err *e);

/* Releases t and every partial it loaded. t may be NULL. */
void mustache_free(struct mustache *t);

/* Escape {{x}} for HTML: & < > " ' become &amp; &lt; &gt; &quot; &#39;.
 * {{{x}}} and {{&x}} are never escaped. Without this flag nothing is escaped
 * (plain-text bodies, subjects). */
#define MUSTACHE_ESCAPE_HTML 0x1u
/* A variable, section or partial name that resolves to nothing is an error
 * (a key present with a null value does resolve), and so is interpolating an
 * object or an array. Without this flag the spec applies: missing is empty. */
#define MUSTACHE_STRICT 0x2u

/* Sections nested deeper than this in one template are a compile error, and
 * sections plus partials nested deeper than twice this while rendering
 * (recursive partials) a render error, rather than a stack overflow. */
#define MUSTACHE_MAX_DEPTH 100

/*
 * Renders t with data (the bottom of the context stack; NULL is like {}) and
 * appends the result to out.
 * Returns 0; ERR_DATA under MUSTACHE_STRICT for a name that resolves to nothing
 * ("templates/x/text.mustache:12:5: unknown variable 'cutof_date'"), for an
 * object or array interpolated, or for a missing partial; ERR_DATA when
 * recursive partials nest deeper than 2 * MUSTACHE_MAX_DEPTH; ERR_USAGE for unknown
 * flags. On error out is left as it was before the call.
 */
int mustache_render(const struct mustache *t, const json_t *data, unsigned flags,
		    struct buf *out, struct err *e);

/* What a mustache_name reports. */
enum mustache_name_kind {
	MUSTACHE_NAME_VARIABLE, /* {{x}}, {{{x}}}, {{&x}}; "." is reported too */
	MUSTACHE_NAME_SECTION,  /* {{#x}} */
	MUSTACHE_NAME_INVERTED, /* {{^x}} */
	MUSTACHE_NAME_PARTIAL   /* {{>x}}; see missing */
};

/*
 * One name a template refers to, as written ("recipient.name", "."), where it
 * is written (origin of the template or partial, 1-based line and column of
 * the opening delimiter, columns counted in UTF-8 characters), and its scope.
 *
 * Scope: the names of the {{#sections}} that enclose the tag, outermost first,
 * following partial inclusions (a partial included inside {{#items}} reports
 * its names with "items" in scope). Inverted sections push no context, so they
 * are not part of the scope. At render time the name is looked up first in the
 * value of scope[scope_len - 1] (each item, when that is an array), then in
 * the enclosing ones, and last in the data itself: a checker that knows the
 * shape of the data resolves it the same way. A name whose first part is known
 * at the top level resolves whatever the scope; inside a section over an array
 * of objects, the item's keys are the other candidates.
 */
struct mustache_name {
	const char *name;
	enum mustache_name_kind kind;
	const char *origin;
	int line;
	int col;
	const char *const *scope;
	size_t scope_len;
	bool missing; /* MUSTACHE_NAME_PARTIAL only: the loader did not find it */
};

/*
 * Calls fn for every name t refers to, in source order, descending into each
 * partial where it is included (a partial that includes itself, directly or
 * not, is reported but not descended into again on the same path).
 * The struct and its strings are valid only during the call.
 * Returns 0, or the first nonzero value fn returned (which stops the walk).
 */
int mustache_names(const struct mustache *t,
		   int (*fn)(void *ud, const struct mustache_name *name), void *ud);

#endif
