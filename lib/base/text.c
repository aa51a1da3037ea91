/* text.c — see text.h. A hand-written UTF-8 check: it is twenty lines, and
 * none of the libraries we link exposes one that also says how long each
 * character is (needed to cut at a boundary). */
#include "base/text.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

size_t par_utf8_seq_len(const char *str, size_t n)
{
        const unsigned char *s = (const unsigned char *)str;
        uint32_t cp;
        size_t len;

        if (n == 0)
                return 0;
        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                len = 2, cp = s[0] & 0x1f;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                len = 3, cp = s[0] & 0x0f;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                len = 4, cp = s[0] & 0x07;
        else
                return 0;
        if (n < len)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return len;
}

bool par_utf8_valid(const char *s, size_t n)
{
        size_t i = 0, l;

        while (i < n) {
                if (s[i] == '\0' || !(l = par_utf8_seq_len(s + i, n - i)))
                        return false;
                i += l;
        }
        return true;
}

/* True when the bytes at s (n available, n < 4) could be the start of a
 * valid character that was cut. */
static bool incomplete_tail(const unsigned char *s, size_t n)
{
        size_t need;

        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                need = 2;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                need = 3;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                need = 4;
        else
                return false;
        if (n >= need)
                return false;
        for (size_t i = 1; i < n; i++)
                if ((s[i] & 0xc0) != 0x80)
                        return false;
        return true;
}

size_t par_utf8_scrub(char *str)
{
        unsigned char *s = (unsigned char *)str;
        size_t n = strlen(str), i = 0, l;

        while (i < n) {
                if ((l = par_utf8_seq_len(str + i, n - i))) {
                        i += l;
                        continue;
                }
                if (incomplete_tail(s + i, n - i)) {
                        s[i] = '\0';
                        return i;
                }
                s[i++] = '?';
        }
        return n;
}

size_t par_text_clip(char *dst, size_t dstsz, const char *src, size_t srclen,
                     size_t max, bool *cut)
{
        const size_t mark = sizeof(PAR_TEXT_CUT_MARK) - 1;
        size_t i = 0, o = 0, l, room;
        bool fits;

        if (cut)
                *cut = false;
        if (dstsz == 0)
                return 0;
        if (max > dstsz - 1)
                max = dstsz - 1;
        /* Everything fits when the source is no longer than max. */
        fits = srclen <= max;
        room = fits ? max : (max > mark ? max - mark : 0);
        while (i < srclen) {
                l = src[i] ? par_utf8_seq_len(src + i, srclen - i) : 0;
                if (o + (l ? l : 1) > room)
                        break;
                if (l) {
                        memcpy(dst + o, src + i, l);
                        o += l;
                        i += l;
                } else {
                        dst[o++] = '?';
                        i++;
                }
        }
        if (i < srclen) {
                if (cut)
                        *cut = true;
                if (o + mark <= max) {
                        memcpy(dst + o, PAR_TEXT_CUT_MARK, mark);
                        o += mark;
                }
        }
        dst[o] = '\0';
        return o;
}

static bool plain(const char *s)
{
        if (!*s)
                return false;
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;
                if (c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '\\')
                        return false;
        }
        return true;
}

/* Appends the escaped form of the character at s (len bytes when valid,
 * else one byte) to dst at *o if it fits below lim; false when it does
 * not. */
static bool put_escaped(char *dst, size_t *o, size_t lim, const char *s,
                        size_t len, bool quotes)
{
        unsigned char c = (unsigned char)*s;
        char tmp[8];
        size_t n;

        if (len == 1 &&
            (c < 0x20 || c == 0x7f || (quotes && (c == '"' || c == '\\')))) {
                if (c == '\n')
                        n = (size_t)snprintf(tmp, sizeof(tmp), "\\n");
                else if (c == '\r')
                        n = (size_t)snprintf(tmp, sizeof(tmp), "\\r");
                else if (c == '\t')
                        n = (size_t)snprintf(tmp, sizeof(tmp), "\\t");
                else if (c == '"' || c == '\\')
                        n = (size_t)snprintf(tmp, sizeof(tmp), "\\%c", c);
                else
                        n = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", c);
        } else if (len == 0) {
                n = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", c);
        } else {
                if (*o + len > lim)
                        return false;
                memcpy(dst + *o, s, len);
                *o += len;
                return true;
        }
        if (*o + n > lim)
                return false;
        memcpy(dst + *o, tmp, n);
        *o += n;
        return true;
}

const char *par_text_logfmt(char *dst, size_t dstsz, const char *src)
{
        size_t n, i = 0, o = 0, l, lim;

        if (dstsz == 0)
                return dst;
        if (!src)
                src = "";
        n = strlen(src);
        if (plain(src)) {
                par_text_clip(dst, dstsz, src, n, dstsz - 1, NULL);
                return dst;
        }
        if (dstsz < 3) {
                dst[0] = '\0';
                return dst;
        }
        /* Room for the closing quote, "..." and the NUL. */
        lim = dstsz > 6 ? dstsz - 5 : dstsz - 2;
        dst[o++] = '"';
        while (i < n) {
                l = par_utf8_seq_len(src + i, n - i);
                if (!put_escaped(dst, &o, lim, src + i, l, true))
                        break;
                i += l ? l : 1;
        }
        if (i < n && dstsz > 6) {
                memcpy(dst + o, "...", 3);
                o += 3;
        }
        dst[o++] = '"';
        dst[o] = '\0';
        return dst;
}

size_t par_text_escape_controls(char *dst, size_t dstsz, const char *s)
{
        size_t n = strlen(s), i = 0, o = 0, l;

        if (dstsz == 0)
                return 0;
        while (i < n) {
                l = par_utf8_seq_len(s + i, n - i);
                if (!put_escaped(dst, &o, dstsz - 1, s + i, l, false))
                        break;
                i += l ? l : 1;
        }
        dst[o] = '\0';
        return o;
}
