/* text_test.c — UTF-8-safe cutting and escaping (lib/base/text), and
 * par_error_set, which relies on it for every message (par_log: log_test). */
#include <stdio.h>

#include "base/err.h"
#include "base/text.h"
#include "testutil.h"

static void test_seq_len(void)
{
        CHECK(par_utf8_seq_len("a", 1) == 1);
        CHECK(par_utf8_seq_len("\xc3\xa9", 2) == 2);
        CHECK(par_utf8_seq_len("\xc3", 1) == 0);             /* cut */
        CHECK(par_utf8_seq_len("\xc0\x80", 2) == 0);         /* overlong */
        CHECK(par_utf8_seq_len("\xed\xa0\x80", 3) == 0);     /* surrogate */
        CHECK(par_utf8_seq_len("\xf4\x90\x80\x80", 4) == 0); /* > U+10FFFF */
        CHECK(par_utf8_seq_len("\xf0\x9f\x98\x80", 4) == 4);
        CHECK(par_utf8_valid("h\xc3\xa9llo", 6));
        CHECK(!par_utf8_valid("a\0b", 3));
        CHECK(!par_utf8_valid("\xff", 1));
}

static void test_clip(void)
{
        char buf[64];
        bool cut;
        /* 30 × "é" = 60 bytes; a cut at an odd byte count must not split
         * one. */
        char src[61] = "";
        for (int i = 0; i < 30; i++)
                strcat(src, "\xc3\xa9");
        size_t n = par_text_clip(buf, sizeof(buf), src, 60, 21, &cut);
        CHECK(cut);
        CHECK(n <= 21);
        CHECK(par_utf8_valid(buf, n));
        CHECK(strstr(buf, PAR_TEXT_CUT_MARK) != NULL);
        n = par_text_clip(buf, sizeof(buf), src, 60, 60, &cut);
        CHECK(!cut && n == 60 && !memcmp(buf, src, 60));
        /* Invalid bytes and NULs become '?'. */
        n = par_text_clip(buf, sizeof(buf), "a\xff\0b", 4, 10, &cut);
        CHECK(!cut && tu_streq(buf, "a??b"));
        /* dst smaller than max: clamped, still valid. */
        n = par_text_clip(buf, 8, src, 60, 1000, &cut);
        CHECK(cut && n <= 7 && par_utf8_valid(buf, n));
}

static void test_scrub(void)
{
        char a[] = "ok \xff\xfe mid \xc3";
        par_utf8_scrub(a);
        CHECK(tu_streq(a, "ok ?? mid "));
        char b[] = "\xe2\x82\xac";
        CHECK(par_utf8_scrub(b) == 3);
}

/* Regression (issue 11): a "%.5s" in a message split a character and
 * jansson refused the reason. */
static void test_error_set_valid(void)
{
        par_error_t err;
        par_error_set(&err, PAR_ERR_INVALID, "field '%.5s'",
                      "\xc3\xa9\xc3\xa9\xc3\xa9");
        CHECKF(par_utf8_valid(err.msg, strlen(err.msg)), "%s", err.msg);
        char big[600];
        memset(big, 'a', sizeof(big));
        big[sizeof(big) - 1] = 0;
        for (size_t i = 0; i + 2 < sizeof(big); i += 2)
                memcpy(big + i, "\xc3\xa9", 2);
        par_error_set(&err, PAR_ERR_INVALID, "x%s", big);
        CHECK(par_utf8_valid(err.msg, strlen(err.msg)));
        par_error_prefix(&err, "p\xc3");
        CHECK(par_utf8_valid(err.msg, strlen(err.msg)));
}

static void test_logfmt(void)
{
        char buf[64];
        CHECK(tu_streq(par_text_logfmt(buf, sizeof(buf), "abc"), "abc"));
        CHECK(tu_streq(par_text_logfmt(buf, sizeof(buf), ""), "\"\""));
        CHECK(tu_streq(par_text_logfmt(buf, sizeof(buf), "a b"), "\"a b\""));
        CHECK(tu_streq(par_text_logfmt(buf, sizeof(buf), "x\ny=\"1\""),
                       "\"x\\ny=\\\"1\\\"\""));
        CHECK(tu_streq(par_text_logfmt(buf, sizeof(buf), "\xff"), "\"\\xff\""));
        par_text_logfmt(buf, 10, "a very long value with spaces");
        CHECK(strlen(buf) <= 9 && buf[0] == '"' && buf[strlen(buf) - 1] == '"');
}

TEST_MAIN(test_seq_len, test_clip, test_scrub, test_error_set_valid,
          test_logfmt)
