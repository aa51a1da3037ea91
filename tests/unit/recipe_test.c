/*
 * recipe_test.c — recipe parsing, validation messages, placeholders.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "browser/recipe.h"
#include "base/clock.h"
#include "testutil.h"

static par_recipe_t *parse(const char *json, par_error_t *e)
{
        par_recipe_t *r = NULL;

        memset(e, 0, sizeof(*e));
        if (par_recipe_parse(&r, "t", "recipes/t.json", json, 5000, e))
                return NULL;
        return r;
}

/* Parsing must fail and the message must contain want. */
static void expect_error(const char *json, const char *want)
{
        par_error_t e;
        par_recipe_t *r = parse(json, &e);

        CHECKF(!r, "accepted: %s", json);
        CHECKF(r || strstr(e.msg, want), "message '%s' lacks '%s'", e.msg,
               want);
        CHECK(r || e.code == PAR_ERR_INVALID);
        par_recipe_destroy(r);
}

static void test_recorder_export(void)
{
        /* Shaped like the DevTools Recorder's "Export as JSON". */
        const char *json =
            "{\"title\": \"Login\", \"timeout\": 7000, \"steps\": ["
            "{\"type\": \"setViewport\", \"width\": 1280, \"height\": 720,"
            " \"deviceScaleFactor\": 1, \"isMobile\": false,"
            " \"hasTouch\": false, \"isLandscape\": false},"
            "{\"type\": \"navigate\", \"url\": \"http://x/{{path}}\","
            " \"assertedEvents\": [{\"type\": \"navigation\","
            " \"url\": \"http://x/a\", \"title\": \"A\"}]},"
            "{\"type\": \"click\", \"target\": \"main\", \"selectors\": "
            "[[\"aria/Sign in\"], [\"#login\"], "
            "[\"xpath///*[@id=\\\"login\\\"]\"],"
            " [\"pierce/#login\"], [\"text/Sign in\"], [\"my-app\", "
            "\"#inner\"]],"
            " \"offsetX\": 10.5, \"offsetY\": 4, \"button\": \"secondary\","
            " \"timeout\": 1234},"
            "{\"type\": \"change\", \"selectors\": [[\"#user\"]], "
            " \"value\": \"{{ user }}\"},"
            "{\"type\": \"keyDown\", \"key\": \"Enter\"},"
            "{\"type\": \"keyUp\", \"key\": \"Enter\"},"
            "{\"type\": \"doubleClick\", \"selectors\": [\"#d\"],"
            " \"offsetX\": 1, \"offsetY\": 1},"
            "{\"type\": \"hover\", \"selectors\": [\"#h\"]},"
            "{\"type\": \"scroll\", \"x\": 0, \"y\": 300},"
            "{\"type\": \"scroll\", \"selectors\": [\"#s\"], \"y\": 5},"
            "{\"type\": \"waitForElement\", \"selectors\": [\".row\"],"
            " \"operator\": \">=\", \"count\": 3, \"visible\": true},"
            "{\"type\": \"waitForExpression\","
            " \"expression\": \"document.title === {{t}}\"},"
            "{\"type\": \"extract\", \"name\": \"greeting\","
            " \"expression\": \"document.querySelector('h1').textContent\"}"
            "], \"failOnPageError\": true}";
        par_error_t e;
        par_recipe_t *r = parse(json, &e);

        REQUIRE(r);
        CHECK_STR(r->name, "t");
        CHECK_STR(r->title, "Login");
        CHECK(r->fail_on_page_error);
        CHECK(r->uses_browser);
        REQUIRE(r->nsteps == 13);
        CHECK(r->steps[0].type == PAR_STEP_SET_VIEWPORT);
        CHECK(r->steps[0].width == 1280 && r->steps[0].height == 720);
        CHECK(r->steps[0].timeout_ms == 7000);
        CHECK(r->steps[1].type == PAR_STEP_NAVIGATE);
        CHECK_STR(r->steps[1].url, "http://x/{{path}}");
        CHECK(r->steps[1].expect_navigation);
        CHECK_STR(r->steps[1].nav_title, "A");
        CHECK(r->steps[2].type == PAR_STEP_CLICK);
        CHECK(r->steps[2].timeout_ms == 1234);
        CHECK(r->steps[2].nselectors == 6);
        CHECK(r->steps[2].selectors[5].nparts == 2);
        CHECK_STR(r->steps[2].selectors[5].parts[1], "#inner");
        CHECK(r->steps[2].has_offset && r->steps[2].offset_x == 10.5);
        CHECK(r->steps[2].button == 2);
        CHECK_STR(r->steps[3].value, "{{ user }}");
        CHECK(r->steps[4].type == PAR_STEP_KEY_DOWN);
        CHECK(r->steps[6].type == PAR_STEP_DOUBLE_CLICK);
        CHECK(r->steps[6].nselectors == 1 &&
              r->steps[6].selectors[0].nparts == 1);
        CHECK(r->steps[8].nselectors == 0 && r->steps[8].y == 300);
        CHECK(r->steps[9].nselectors == 1);
        CHECK(r->steps[10].op == PAR_OP_GE && r->steps[10].count == 3 &&
              r->steps[10].visible);
        CHECK(r->steps[11].type == PAR_STEP_WAIT_FOR_EXPRESSION);
        CHECK(r->steps[12].type == PAR_STEP_EXTRACT);
        CHECK_STR(r->steps[12].name, "greeting");
        par_recipe_destroy(r);
}

static void test_defaults(void)
{
        par_error_t e;
        par_recipe_t *r =
            parse("{\"steps\": [{\"type\": \"waitForElement\", \"selectors\": "
                  "[\"a\"]}, {\"type\": \"click\", \"selectors\": [\"a\"]}]}",
                  &e);

        REQUIRE(r);
        CHECK_STR(r->title, "t");
        CHECK(r->steps[0].op == PAR_OP_GE && r->steps[0].count == 1);
        CHECK(r->steps[0].visible);
        CHECK(r->steps[0].timeout_ms == 5000);
        CHECK(!r->steps[1].has_offset && r->steps[1].button == 0);
        CHECK(!r->fail_on_page_error);
        par_recipe_destroy(r);
}

static void test_validation_errors(void)
{
        expect_error("[1]", "recipes/t.json: expected a JSON object");
        expect_error("{\"steps\": [}", "recipes/t.json: line 1");
        expect_error("{\"steps\": {}}", "recipes/t.json: steps: expected an "
                                        "array");
        expect_error("{\"steps\": [{\"type\": \"navigate\", \"url\": \"x\"},"
                     "{\"type\": \"navigate\", \"url\": \"x\"},"
                     "{\"type\": \"navigate\", \"url\": \"x\"},"
                     "{\"type\": \"click\", \"selectors\": []}]}",
                     "recipes/t.json: step 3 (click): selectors: expected a "
                     "non-empty array");
        expect_error("{\"steps\": [{\"type\": \"click\"}]}",
                     "step 0 (click): selectors: expected a non-empty array");
        expect_error("{\"steps\": [{\"type\": \"click\", \"selectors\": "
                     "[[\"a\", 3]]}]}",
                     "step 0 (click): selectors: [0][1]: expected a string");
        expect_error("{\"steps\": [{\"type\": \"click\", \"selectors\": "
                     "[\"aria/\"]}]}",
                     "selectors: [0]: selector has a prefix but nothing");
        expect_error("{\"steps\": [{\"type\": \"fly\"}]}",
                     "step 0 (fly): type: unsupported step type");
        expect_error("{\"steps\": [{\"type\": "
                     "\"emulateNetworkConditions\"}]}",
                     "step 0 (emulateNetworkConditions): type: unsupported");
        expect_error("{\"steps\": [{\"type\": \"customStep\"}]}",
                     "step 0 (customStep): name: required string");
        expect_error("{\"steps\": [{\"url\": \"x\"}]}",
                     "step 0 (?): type: required string is missing");
        expect_error("{\"steps\": [{\"type\": \"navigate\"}]}",
                     "step 0 (navigate): url: required string is missing");
        expect_error("{\"steps\": [{\"type\": \"navigate\", \"url\": 3}]}",
                     "step 0 (navigate): url: expected a string");
        expect_error("{\"steps\": [{\"type\": \"navigate\", \"url\": \"a\","
                     " \"timeout\": -1}]}",
                     "step 0 (navigate): timeout: -1 out of range");
        expect_error("{\"steps\": [{\"type\": \"navigate\", \"url\": \"a\","
                     " \"target\": 3}]}",
                     "step 0 (navigate): target: expected a string");
        expect_error("{\"steps\": [{\"type\": \"click\", \"selectors\": "
                     "[\"a\"], \"frame\": [-1]}]}",
                     "step 0 (click): frame: [0]: expected an index");
        expect_error("{\"steps\": [{\"type\": \"waitForElement\", "
                     "\"selectors\": [\"a\"], \"attributes\": {\"id\": 1}}]}",
                     "step 0 (waitForElement): attributes: id: expected a "
                     "string");
        expect_error("{\"steps\": [{\"type\": \"waitForElement\", "
                     "\"selectors\": [\"a\"], \"operator\": \"!=\"}]}",
                     "step 0 (waitForElement): operator: expected");
        expect_error("{\"steps\": [{\"type\": \"keyDown\", \"key\": "
                     "\"Hyper\"}]}",
                     "step 0 (keyDown): key: unknown key 'Hyper'");
        expect_error("{\"steps\": [{\"type\": \"setViewport\", \"width\": "
                     "10}]}",
                     "step 0 (setViewport): height: required number");
        expect_error("{\"steps\": [{\"type\": \"click\", \"selectors\": "
                     "[\"a\"], \"offsetX\": 1}]}",
                     "step 0 (click): offsetY: offsetX and offsetY go");
        expect_error("{\"steps\": [{\"type\": \"click\", \"selectors\": "
                     "[\"a\"], \"button\": \"left\"}]}",
                     "step 0 (click): button: expected primary");
        expect_error("{\"steps\": [{\"type\": \"extract\", \"name\": \"a\"}]}",
                     "step 0 (extract): expression: required string");
        expect_error("{\"steps\": [{\"type\": \"change\", \"selectors\": "
                     "[\"a\"], \"value\": \"{{oops\"}]}",
                     "step 0 (change): value: malformed placeholder at "
                     "offset 0");
        expect_error("{\"steps\": [{\"type\": \"click\", \"selectors\": "
                     "[\"a\"], \"assertedEvents\": [{\"type\": \"x\"}]}]}",
                     "step 0 (click): assertedEvents: [0]: only");
        expect_error("{\"steps\": [{\"type\": \"navigate\", \"url\": \"a\"}],"
                     " \"failOnPageError\": 1}",
                     "recipes/t.json: failOnPageError: expected true");
        expect_error("{\"steps\": [{\"type\": \"navigate\", \"url\": \"a\","
                     " \"url\": \"b\"}]}",
                     "duplicate");
}

static void test_subst(void)
{
        json_t *p = json_pack("{s:s,s:s,s:s,s:s,s:i}", "user", "ann", "q",
                              "a\"b\\c</script>\n", "u", "é€😀\xe2\x80\xa8",
                              "empty", "", "num", 3);
        par_error_t e = {0};
        char *out = NULL;

        REQUIRE(p);
        CHECK(!par_recipe_subst("hi {{user}}!", p, PAR_SUBST_TEXT, &out, &e));
        CHECK_STR(out, "hi ann!");
        free(out);
        CHECK(!par_recipe_subst("{{ user }}{{user}}", p, PAR_SUBST_TEXT, &out,
                                &e));
        CHECK_STR(out, "annann");
        free(out);
        CHECK(!par_recipe_subst("no placeholders", NULL, PAR_SUBST_TEXT, &out,
                                &e));
        CHECK_STR(out, "no placeholders");
        free(out);
        /* text mode: verbatim, quotes and all */
        CHECK(!par_recipe_subst("[{{q}}]", p, PAR_SUBST_TEXT, &out, &e));
        CHECK_STR(out, "[a\"b\\c</script>\n]");
        free(out);
        /* JS mode: one JSON string literal; quotes, backslashes, the
         * closing script tag and line terminators are escaped */
        CHECK(!par_recipe_subst("x === {{q}}", p, PAR_SUBST_JS, &out, &e));
        CHECK_STR(out, "x === \"a\\\"b\\\\c<\\/script>\\n\"");
        free(out);
        CHECK(!par_recipe_subst("{{u}}", p, PAR_SUBST_JS, &out, &e));
        CHECK_STR(out, "\"\\u00E9\\u20AC\\uD83D\\uDE00\\u2028\"");
        free(out);
        CHECK(!par_recipe_subst("f({{empty}})", p, PAR_SUBST_JS, &out, &e));
        CHECK_STR(out, "f(\"\")");
        free(out);
        /* an injection attempt stays a string */
        json_object_set_new(p, "evil", json_string("\"); alert(1); (\""));
        CHECK(!par_recipe_subst("g({{evil}})", p, PAR_SUBST_JS, &out, &e));
        CHECK_STR(out, "g(\"\\\"); alert(1); (\\\"\")");
        free(out);

        out = NULL;
        CHECK(par_recipe_subst("{{nope}}", p, PAR_SUBST_TEXT, &out, &e) ==
              PAR_ERR_PERMANENT);
        CHECK(strstr(e.msg, "unknown placeholder {{nope}}") != NULL);
        CHECK(out == NULL);
        CHECK(par_recipe_subst("a {{user}} {{missing}}", NULL, PAR_SUBST_JS,
                               &out, &e) == PAR_ERR_PERMANENT);
        CHECK(strstr(e.msg, "{{user}}") != NULL);
        CHECK(par_recipe_subst("{{num}}", p, PAR_SUBST_TEXT, &out, &e) ==
              PAR_ERR_PERMANENT);
        CHECK(strstr(e.msg, "param num: expected a string") != NULL);
        CHECK(par_recipe_subst("{{x", p, PAR_SUBST_TEXT, &out, &e) ==
              PAR_ERR_PERMANENT);
        json_decref(p);
}

static void test_keys(void)
{
        par_key_info_t k;

        CHECK(!par_recipe_key_lookup("Enter", &k));
        CHECK_STR(k.text, "\r");
        CHECK(k.key_code == 13);
        CHECK(!par_recipe_key_lookup("a", &k));
        CHECK_STR(k.key, "a");
        CHECK_STR(k.code, "KeyA");
        CHECK(k.key_code == 65);
        CHECK(!par_recipe_key_lookup("KeyB", &k));
        CHECK_STR(k.key, "b");
        CHECK(!par_recipe_key_lookup("Digit7", &k));
        CHECK_STR(k.text, "7");
        CHECK(!par_recipe_key_lookup("Shift", &k));
        CHECK(k.modifier == 8 && !k.text[0]);
        CHECK(par_recipe_key_lookup("Hyper", &k) == -1);
        CHECK(par_recipe_key_lookup("", &k) == -1);
}

static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");

        if (f) {
                fputs(text, f);
                fclose(f);
        }
}

static void test_load_dir(void)
{
        char dir[] = "/tmp/par_recipe_test_XXXXXX", path[256];
        par_recipe_set_t *set = NULL;
        par_error_t e = {0};
        const par_recipe_t *r;

        REQUIRE(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/login.json", dir);
        write_file(path, "{\"title\": \"Log in\", \"steps\": [{\"type\": "
                         "\"navigate\", \"url\": \"about:blank\"}]}");
        snprintf(path, sizeof(path), "%s/a.json", dir);
        write_file(path, "{\"steps\": [{\"type\": \"navigate\", \"url\": "
                         "\"about:blank\"}]}");
        snprintf(path, sizeof(path), "%s/notes.txt", dir);
        write_file(path, "not a recipe");
        CHECK(!par_recipe_load_dir(&set, dir, 5000, &e));
        REQUIRE(set);
        CHECK(par_recipe_set_count(set) == 3); /* noop, a, login */
        CHECK_STR(par_recipe_set_at(set, 0)->name, "noop");
        CHECK_STR(par_recipe_set_at(set, 1)->name, "a");
        CHECK_STR(par_recipe_set_at(set, 2)->name, "login");
        r = par_recipe_set_get(set, "login");
        REQUIRE(r);
        CHECK_STR(r->title, "Log in");
        r = par_recipe_set_get(set, "noop");
        REQUIRE(r);
        CHECK(!r->uses_browser && r->nsteps == 0);
        CHECK(par_recipe_set_get(set, "Log in") == NULL);
        par_recipe_set_destroy(set);

        /* one bad file fails the whole load, naming file, step and field */
        snprintf(path, sizeof(path), "%s/bad.json", dir);
        write_file(path, "{\"steps\": [{\"type\": \"navigate\", \"url\": "
                         "\"x\"}, {\"type\": \"click\", \"selectors\": "
                         "\"#a\"}]}");
        set = NULL;
        CHECK(par_recipe_load_dir(&set, dir, 5000, &e) == PAR_ERR_INVALID);
        CHECK(set == NULL);
        CHECKF(strstr(e.msg, "/bad.json: step 1 (click): selectors: "
                             "expected a non-empty array") != NULL,
               "%s", e.msg);
        unlink(path);

        /* a file may not shadow the built-in noop */
        snprintf(path, sizeof(path), "%s/noop.json", dir);
        write_file(path, "{\"steps\": [{\"type\": \"navigate\", \"url\": "
                         "\"x\"}]}");
        CHECK(par_recipe_load_dir(&set, dir, 5000, &e) == PAR_ERR_INVALID);
        CHECK(strstr(e.msg, "already exists") != NULL);
        unlink(path);

        snprintf(path, sizeof(path), "%s/login.json", dir);
        unlink(path);
        snprintf(path, sizeof(path), "%s/a.json", dir);
        unlink(path);
        snprintf(path, sizeof(path), "%s/notes.txt", dir);
        unlink(path);
        rmdir(dir);

        CHECK(par_recipe_load_dir(&set, "/nonexistent/recipes", 5000, &e) ==
              PAR_ERR_IO);
        CHECK(strstr(e.msg, "/nonexistent/recipes") != NULL);
}

/* Regression (issue 11): '{{p}}' and `{{p}}` in an expression let a param
 * close the author's string and run as code. */
static void test_placeholder_in_literal(void)
{
        static const struct {
                const char *js;
                bool bad;
        } cases[] = {
            {"document.title === {{t}}", false},
            {"document.title === '{{t}}'", true},
            {"document.title === \"x{{t}}\"", true},
            {"`${{{t}}}`", false},
            {"`a ${ {{t}} } b`", false},
            {"`a {{t}}`", true},
            {"`${`x{{t}}`}`", true},
            {"/{{t}}/.test(x)", true},
            {"a / 2 + {{t}}", false},
            {"'it\\'s' + {{t}}", false},
            {"/\"/.test(x) + '{{t}}'", true},
            {"f({{t}}) // '{{t}}'", false},
            {"{ let o = {a: {{t}}}; o.a }", false},
            {"'\\\\' + {{t}}", false},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                size_t at = 0;
                bool got = par_recipe_placeholder_in_literal(cases[i].js, &at);
                CHECKF(got == cases[i].bad, "case %zu %s: got %d", i,
                       cases[i].js, got);
        }
        par_recipe_t *r = NULL;
        par_error_t e = {0};
        CHECK(par_recipe_parse(&r, "x", "x.json",
                               "{\"steps\": [{\"type\": \"extract\", "
                               "\"name\": \"n\", \"expression\": "
                               "\"'{{p}}'\"}]}",
                               5000, &e) == PAR_ERR_INVALID);
        CHECKF(strstr(e.msg, "step 0 (extract): expression: placeholder") &&
                   strstr(e.msg, "bare"),
               "%s", e.msg);
        CHECK(r == NULL);
}

/* Regression (issue 11): a param at the start of a navigate URL opened
 * data: and file: URLs. */
static void test_param_url_scheme(void)
{
        par_recipe_t *r = NULL;
        par_error_t e = {0};
        REQUIRE(!par_recipe_parse(&r, "x", "x.json",
                                  "{\"steps\": [{\"type\": \"navigate\", "
                                  "\"url\": \"{{u}}\"}]}",
                                  5000, &e));
        CHECK(!par_recipe_check_url(r, "{{u}}", "https://a.example/", &e));
        CHECK(!par_recipe_check_url(r, "{{u}}", "HTTP://a.example/", &e));
        CHECK(par_recipe_check_url(r, "{{u}}", "data:text/html,<script>", &e) ==
              PAR_ERR_PERMANENT);
        CHECKF(strstr(e.msg, "'data'"), "%s", e.msg);
        CHECK(par_recipe_check_url(r, "{{u}}/x", "file:///etc/passwd", &e));
        CHECK(par_recipe_check_url(r, "{{u}}", "javascript:alert(1)", &e));
        CHECK(par_recipe_check_url(r, "{{u}}", "no-scheme", &e));
        /* the author fixed the scheme: a param only fills the rest */
        CHECK(
            !par_recipe_check_url(r, "file:///srv/{{u}}", "file:///srv/a", &e));
        par_recipe_destroy(r);
        r = NULL;
        REQUIRE(!par_recipe_parse(&r, "x", "x.json",
                                  "{\"paramUrlSchemes\": [\"File\"], "
                                  "\"steps\": [{\"type\": \"navigate\", "
                                  "\"url\": \"{{u}}\"}]}",
                                  5000, &e));
        CHECK(!par_recipe_check_url(r, "{{u}}", "file:///tmp/x", &e));
        CHECK(par_recipe_check_url(r, "{{u}}", "data:,x", &e));
        par_recipe_destroy(r);
        r = NULL;
        CHECK(par_recipe_parse(&r, "x", "x.json",
                               "{\"paramUrlSchemes\": [\"a b\"], "
                               "\"steps\": [{\"type\": \"navigate\", "
                               "\"url\": \"x\"}]}",
                               5000, &e) == PAR_ERR_INVALID);
}

/* Regression (issue 11): a FIFO named *.json in recipes.dir hung start-up. */
static void test_fifo_in_dir(void)
{
        char dir[] = "/tmp/par_recipe_fifo_XXXXXX", path[256];
        par_recipe_set_t *set = NULL;
        par_error_t e = {0};

        REQUIRE(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/pipe.json", dir);
        REQUIRE(!mkfifo(path, 0600));
        double t0 = (par_clock_mono_ms() / 1000.0);
        CHECK(par_recipe_load_dir(&set, dir, 5000, &e) == PAR_ERR_INVALID);
        CHECK((par_clock_mono_ms() / 1000.0) - t0 < 2);
        CHECKF(strstr(e.msg, "pipe.json: not a regular file"), "%s", e.msg);
        unlink(path);
        rmdir(dir);
}

/* Every recipe shipped as a fixture must load. */
static void test_fixture_recipes(void)
{
        const char *src = tu_env("PARALLEL_SOURCE_DIR", ".");
        char dir[1024];
        par_recipe_set_t *set = NULL;
        par_error_t e = {0};

        snprintf(dir, sizeof(dir), "%s/tests/fixtures/recipes", src);
        CHECKF(!par_recipe_load_dir(&set, dir, 5000, &e), "%s", e.msg);
        CHECK(par_recipe_set_count(set) > 5);
        par_recipe_set_destroy(set);
}

TEST_MAIN(test_recorder_export, test_defaults, test_validation_errors,
          test_subst, test_keys, test_load_dir, test_fixture_recipes,
          test_placeholder_in_literal, test_param_url_scheme, test_fifo_in_dir)
