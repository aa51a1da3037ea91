/*
 * chrome_test.c — the pure-logic part of chrome.c: options from config.
 * (Everything that needs a browser is in tests/integration/chrome_*.)
 */
#include "browser/chrome.h"
#include "testutil.h"

static void test_defaults(void)
{
        par_chrome_opts_t o;
        par_config_t *cfg = NULL;
        par_error_t err = {0};

        REQUIRE(!par_config_new(&cfg, &err));
        CHECKF(!par_chrome_opts_from_config(&o, cfg, &err), "%s", err.msg);
        CHECK(o.mode == PAR_CHROME_LAUNCH);
        CHECK(o.isolation == PAR_CHROME_ISO_CONTEXT);
        CHECK_STR(o.path, "/usr/bin/chromium");
        CHECK(o.headless);
        CHECK(o.recycle_after == 500);
        CHECK(o.start_timeout_ms == 20000);
        CHECK(o.call_timeout_ms == 30000);
        CHECK(o.kill_grace_ms == 2000);
        CHECK(o.backoff_min_ms == 250 && o.backoff_max_ms == 10000);
        CHECK(!*o.profile_dir && !*o.endpoints && !*o.extra_args);
        par_config_destroy(cfg);
}

static void test_values(void)
{
        par_chrome_opts_t o;
        par_config_t *cfg = NULL;
        par_error_t err = {0};

        REQUIRE(!par_config_new(&cfg, &err));
        CHECK(!par_config_set(cfg, "chrome.mode", "connect", &err));
        CHECK(!par_config_set(cfg, "chrome.endpoints",
                              "http://10.0.0.5:9222,http://10.0.0.6:9222",
                              &err));
        CHECK(!par_config_set(cfg, "chrome.isolation", "browser", &err));
        CHECK(!par_config_set(cfg, "chrome.recycle_after", "0", &err));
        CHECK(!par_config_set(cfg, "chrome.headless", "false", &err));
        CHECK(!par_config_set(cfg, "chrome.call_timeout", "5s", &err));
        CHECK(!par_config_set(cfg, "chrome.extra_args",
                              "--lang=de --mute-audio", &err));
        CHECKF(!par_chrome_opts_from_config(&o, cfg, &err), "%s", err.msg);
        CHECK(o.mode == PAR_CHROME_CONNECT);
        CHECK(o.isolation == PAR_CHROME_ISO_BROWSER);
        CHECK_STR(o.endpoints, "http://10.0.0.5:9222,http://10.0.0.6:9222");
        CHECK(o.recycle_after == 0);
        CHECK(!o.headless);
        CHECK(o.call_timeout_ms == 5000);
        CHECK_STR(o.extra_args, "--lang=de --mute-audio");
        /* bad values are refused by the table */
        CHECK(par_config_set(cfg, "chrome.mode", "spawn", &err) != PAR_OK);
        CHECK(par_config_set(cfg, "chrome.isolation", "tab", &err) != PAR_OK);
        par_config_destroy(cfg);
}

static void test_connect_needs_endpoints(void)
{
        par_chrome_opts_t o;
        par_chrome_t *c = NULL;
        par_config_t *cfg = NULL;
        par_error_t err = {0};

        REQUIRE(!par_config_new(&cfg, &err));
        CHECK(!par_config_set(cfg, "chrome.mode", "connect", &err));
        CHECK(par_chrome_opts_from_config(&o, cfg, &err) == PAR_ERR_INVALID);
        CHECKF(strstr(err.msg, "chrome.endpoints") != NULL, "%s", err.msg);
        par_config_destroy(cfg);

        /* and the pool refuses an empty list or a bad worker count */
        par_chrome_opts_default(&o);
        o.mode = PAR_CHROME_CONNECT;
        CHECK(par_chrome_new(&c, &o, 1, &err) == PAR_ERR_INVALID && !c);
        par_chrome_opts_default(&o);
        CHECK(par_chrome_new(&c, &o, 0, &err) == PAR_ERR_INVALID && !c);
        CHECK(par_chrome_tab_acquire(NULL, 0, NULL, &err) == PAR_ERR_INVALID);
}

TEST_MAIN(test_defaults, test_values, test_connect_needs_endpoints)
