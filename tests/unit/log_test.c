/* log_test.c — the logger (lib/base/log): whatever a value holds, an event
 * is exactly one logfmt line whose fields parse back to the values given. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "testutil.h"

#define MAXF 16

typedef struct field {
        char key[64];
        char val[8192];
} field_t;

/* A strict logfmt reader: key=value pairs separated by one space; a value
 * is bare (no space, '"' or '=') or quoted with \" \\ \n \r \t \xNN.
 * Returns the number of fields, -1 when the line does not parse. */
static int parse(const char *s, field_t *f)
{
        int n = 0;

        while (*s) {
                size_t k = 0, v = 0;
                if (n == MAXF)
                        return -1;
                while (*s && *s != '=' && *s != ' ' && *s != '"' &&
                       k < sizeof(f[n].key) - 1)
                        f[n].key[k++] = *s++;
                f[n].key[k] = '\0';
                if (!k || *s++ != '=')
                        return -1;
                if (*s == '"') {
                        for (s++; *s != '"'; s++) {
                                char c = *s;
                                if (!c)
                                        return -1;
                                if (c == '\\') {
                                        c = *++s;
                                        if (c == 'n')
                                                c = '\n';
                                        else if (c == 'r')
                                                c = '\r';
                                        else if (c == 't')
                                                c = '\t';
                                        else if (c == 'x') {
                                                char hex[3] = {
                                                    s[1], s[1] ? s[2] : 0, 0};
                                                c = (char)strtol(hex, NULL, 16);
                                                s += 2;
                                        } else if (c != '"' && c != '\\')
                                                return -1;
                                }
                                if (v < sizeof(f[n].val) - 1)
                                        f[n].val[v++] = c;
                        }
                        s++;
                } else {
                        while (*s && *s != ' ') {
                                if (*s == '"' || *s == '=' ||
                                    v == sizeof(f[n].val) - 1)
                                        return -1;
                                f[n].val[v++] = *s++;
                        }
                }
                f[n].val[v] = '\0';
                n++;
                if (*s == ' ')
                        s++;
                else if (*s)
                        return -1;
        }
        return n;
}

static FILE *sink;
static char line[16384];
static field_t fields[MAXF];
static int nfields;

/* Reads what the last par_log wrote: exactly one line, which must parse. */
static void take_line(void)
{
        size_t n;

        fflush(sink);
        rewind(sink);
        n = fread(line, 1, sizeof(line) - 1, sink);
        line[n] = '\0';
        rewind(sink);
        REQUIRE(ftruncate(fileno(sink), 0) == 0);
        CHECKF(n > 0 && line[n - 1] == '\n' &&
                   strchr(line, '\n') == line + n - 1,
               "not one line: %s", line);
        if (n)
                line[n - 1] = '\0';
        nfields = parse(line, fields);
        CHECKF(nfields >= 4, "does not parse: %s", line);
}

static const char *get(const char *key)
{
        for (int i = 0; i < nfields; i++)
                if (!strcmp(fields[i].key, key))
                        return fields[i].val;
        return NULL;
}

static void setup(void)
{
        if (!sink)
                sink = tmpfile();
        REQUIRE(sink);
        par_log_set_file(sink);
}

/* Newline, quotes, spaces, '=', a backslash, tab, invalid UTF-8 (a lone
 * 0xff, a cut 2-byte sequence) and what a forger would write. */
static const char evil[] = "a b\n\"c\"=d\\e\r\t\xff\xc3(x ts=1 level=error "
                           "comp=evil event=forged\n";

/* Regression (issue 11): values were written as given, so a newline forged
 * a line and a space or '=' forged a field. */
static void test_bare_values(void)
{
        setup();
        par_log(PAR_LOG_WARN, "t", "ev", "recipe=%s node=%s n=%d", evil, evil,
                7);
        take_line();
        CHECK(nfields == 7);
        CHECK(tu_streq(get("level"), "warn"));
        CHECK(tu_streq(get("event"), "ev"));
        CHECK(tu_streq(get("recipe"), evil));
        CHECK(tu_streq(get("node"), evil));
        CHECK(tu_streq(get("n"), "7"));
        CHECK(!get("comp") || tu_streq(get("comp"), "t"));

        par_log(PAR_LOG_INFO, "t", "ev", "id=%s plain=%s", "", "abc");
        take_line();
        CHECK(tu_streq(get("id"), ""));
        CHECK(tu_streq(get("plain"), "abc"));
        CHECKF(strstr(line, " plain=abc"), "a plain value got quoted: %s",
               line);
}

/* key="%s", the form most error fields use: a '"' in the value ended the
 * field early. */
static void test_quoted_values(void)
{
        setup();
        par_log(PAR_LOG_ERROR, "t", "ev", "error=\"%s\" worker=%d", evil, 3);
        take_line();
        CHECK(nfields == 6);
        CHECK(tu_streq(get("error"), evil));
        CHECK(tu_streq(get("worker"), "3"));

        par_log(PAR_LOG_ERROR, "t", "ev", "msg=\"%.*s\" e=\"%s\"", 5, evil,
                "simple");
        take_line();
        CHECK(tu_streq(get("msg"), "a b\n\""));
        CHECK(tu_streq(get("e"), "simple"));
}

/* The other conversions still read their arguments in order. */
static void test_conversions(void)
{
        setup();
        par_log(PAR_LOG_INFO, "t", "ev",
                "a=%zu b=%lld c=%u d=%x e=%.2f f=%s g=%05d h=%.1s pct=%d%%",
                (size_t)3, -4LL, 5u, 255u, 1.5, "s", 6, "qq", 100);
        take_line();
        CHECKF(strstr(line, " event=ev a=3 b=-4 c=5 d=ff e=1.50 f=s g=00006 "
                            "h=q pct=100%"),
               "%s", line);
}

/* A value longer than a line is cut inside its quotes: still one line that
 * parses. */
static void test_long_value(void)
{
        static char big[10000];

        setup();
        for (size_t i = 0; i < sizeof(big) - 1; i++)
                big[i] = i % 7 ? 'x' : ' ';
        par_log(PAR_LOG_INFO, "t", "ev", "a=%s b=\"%s\" c=%s d=%d", big, big,
                big, 9);
        take_line();
        CHECK(nfields == 8);
        CHECK(tu_streq(get("d"), "9"));
        CHECK(get("a") && strlen(get("a")) < 1100);
}

TEST_MAIN(test_bare_values, test_quoted_values, test_conversions,
          test_long_value)
