/* cdp_message_test.c — par_cdp_parse_message: what the CDP I/O thread does
 * with every message's text, without a browser. */
#include "browser/cdp.h"
#include "testutil.h"

static json_t *parse(const char *s)
{
        json_error_t e;
        return par_cdp_parse_message(s, strlen(s), &e);
}

static const char *value_of(json_t *m)
{
        return json_string_value(
            json_object_get(json_object_get(m, "result"), "value"));
}

/* Regression (issue 11): lone surrogates made the reply unparseable. */
static void test_surrogates(void)
{
        json_t *m = parse("{\"id\":1,\"result\":{\"value\":\"a\\ud800b\"}}");
        REQUIRE(m);
        CHECK_STR(value_of(m), "a\xef\xbf\xbd"
                               "b");
        json_decref(m);
        /* a valid pair stays a pair; a lone low one is replaced */
        m = parse("{\"id\":2,\"result\":{\"value\":"
                  "\"\\ud83d\\ude00\\udc00\\\\ud800\"}}");
        REQUIRE(m);
        CHECK_STR(value_of(m), "\xf0\x9f\x98\x80\xef\xbf\xbd\\ud800");
        json_decref(m);
        /* a high surrogate at the very end of a string */
        m = parse("{\"id\":3,\"result\":{\"value\":\"x\\uD83D\"}}");
        REQUIRE(m);
        CHECK_STR(value_of(m), "x\xef\xbf\xbd");
        json_decref(m);
        /* invalid UTF-8 bytes */
        m = parse("{\"id\":4,\"result\":{\"value\":\"\xff\"}}");
        REQUIRE(m);
        CHECK_STR(value_of(m), "?");
        json_decref(m);
        /* still broken JSON stays an error */
        CHECK(parse("{\"id\":5,") == NULL);
        CHECK(parse("") == NULL);
}

TEST_MAIN(test_surrogates)
