/*
 * text.h — UTF-8-safe truncation and escaping, the one helper every
 * message, reason and log line goes through.
 *
 * Why one place: text from signals, pages and configs ends up in JSON
 * (jansson refuses invalid UTF-8), BSON (MongoDB refuses it), Avro strings
 * and log lines. Cutting such text at a byte count ("%.64s") can split a
 * multi-byte character, and an invalid string then fails far away from the
 * cut (a producer that cannot mark a document rejected replays it forever).
 * So: cut only at character boundaries, replace invalid bytes, say when
 * something was cut, and escape what would change the shape of a log line.
 *
 * All functions are pure (no state); any thread.
 */
#ifndef PAR_TEXT_H
#define PAR_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* The marker appended to text cut by par_text_clip (ASCII, so it is valid
 * in every sink). */
#define PAR_TEXT_CUT_MARK "...[cut]"

/* Length of the valid UTF-8 sequence starting at s (at most n bytes
 * available): 1..4, or 0 when the bytes there are not a valid character
 * (overlong forms, surrogates and values past U+10FFFF are invalid). */
size_t par_utf8_seq_len(const char *s, size_t n);

/* True when the n bytes at s are valid UTF-8 without NUL bytes. */
bool par_utf8_valid(const char *s, size_t n);

/*
 * Makes the NUL-terminated s valid UTF-8 in place: every byte that does
 * not start a valid character becomes '?', and an incomplete character at
 * the very end (what snprintf leaves when it cuts) is removed. Returns the
 * new length.
 */
size_t par_utf8_scrub(char *s);

/*
 * Copies at most max bytes of src (srclen bytes, may contain anything)
 * into dst (dstsz bytes, always NUL-terminated when dstsz > 0), cutting at
 * a character boundary, replacing invalid bytes and NULs with '?'. When
 * src does not fit, the copy ends with PAR_TEXT_CUT_MARK (counted within
 * max). max larger than dstsz - 1 is clamped to it. Returns the length
 * written; *cut (may be NULL) says whether anything was left out.
 */
size_t par_text_clip(char *dst, size_t dstsz, const char *src, size_t srclen,
                     size_t max, bool *cut);

/*
 * Writes src as one logfmt value into dst: as is when it is non-empty and
 * holds only printable ASCII other than space, '"', '=' and '\'; otherwise
 * in double quotes with '"' and '\' backslash-escaped, \n \r \t as such,
 * other control bytes and invalid UTF-8 as \xNN. Never writes a newline.
 * Cut (at a boundary, ending "...") when dst is too small. Returns dst.
 */
const char *par_text_logfmt(char *dst, size_t dstsz, const char *src);

/*
 * Escapes control bytes (< 0x20 and 0x7f) in the NUL-terminated s as \n,
 * \r, \t or \xNN, and invalid UTF-8 as \xNN, writing at most dstsz bytes
 * (NUL included; cut at a boundary). Used by the logger on a whole line so
 * that no value can start a new line. Returns the length written.
 */
size_t par_text_escape_controls(char *dst, size_t dstsz, const char *s);

#endif
