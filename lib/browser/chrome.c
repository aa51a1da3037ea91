/*
 * chrome.c — Chrome supervision: browsers and their lifetimes, and the
 * pool's lifecycle. Contexts and the tabs in them (preparing, handing out,
 * disposing of, resource contexts) are stager.c's; the structures both
 * share are in chrome_int.h.
 *
 * Structure. A *slot* is a place where one browser lives: in launch mode
 * one shared slot (isolation context) or one per worker (isolation
 * browser); in connect mode one per endpoint. A slot holds its current
 * *instance* (one Chromium process + its par_cdp_t, or one connection to a
 * remote endpoint). Instances are reference counted: the slot holds one
 * reference and every tab holds one, so when a browser dies or is recycled
 * the slot can kill the process and move on at once, while workers still
 * holding tabs of the old instance keep a valid (now disconnected) par_cdp_t
 * whose calls fail with PAR_ERR_DISCONNECTED; the connection is freed when
 * the last tab lets go. `in_use` counts tabs acquired right now; a recycle
 * waits for it to reach zero so a spin in flight is not cut short.
 *
 * Processes. Chromium is started with fork+execve in its own session
 * (setsid: its process group id is its pid), so stopping it means
 * SIGTERM to the whole group, SIGKILL after a grace, and waitpid on the
 * leader; renderers and zygotes die with the group even after the leader is
 * gone. Everything the child needs (argv, envp) is built before fork: only
 * async-signal-safe calls happen between fork and exec. HOME and
 * XDG_CONFIG_HOME point into the instance's temp dir because Chromium
 * writes crash-report folders under $HOME/.config even with
 * --user-data-dir. The debugging port is 0 (Chromium picks a free one and
 * writes it to <profile>/DevToolsActivePort), so no port race.
 *
 * Threads. One supervisor thread per pool does every launch, health check
 * (waitpid WNOHANG and socket state every 200 ms, a Browser.getVersion
 * round trip every ping_interval to catch a hung browser whose socket is
 * still open), kill and relaunch (with
 * exponential backoff), so a dead browser is replaced before the next
 * acquire needs it; an acquirer that finds no live browser asks the
 * supervisor and waits. A second thread, the stager (stager.c), keeps each
 * live browser stocked with prepared contexts and disposes of used ones.
 * Children get PR_SET_PDEATHSIG, tied to that
 * thread: if the node dies, so do its browsers (Chromium's own children
 * exit with their browser process). chrome->mu guards the slots' current
 * instances, reference counts, counters and instance flags; it is never
 * held across a CDP call, a sleep or a launch.
 */
#include "base/backoff.h"
#include "base/clock.h"
#include "browser/chrome.h"
#include "browser/chrome_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"

extern char **environ;

#define MONITOR_PERIOD_MS 200
#define PING_FAILURES     2 /* this many in a row: the browser is hung */

/* ---- small helpers ---------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
        (void)sb;
        (void)ftw;
        if (flag == FTW_DP || flag == FTW_D)
                rmdir(path);
        else
                unlink(path);
        return 0;
}

static void rm_rf(const char *dir)
{
        if (dir && *dir)
                nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The temp root instances are made under: chrome.tmp_dir, else $TMPDIR,
 * else /tmp. */
static const char *tmp_root(const par_chrome_opts_t *o)
{
        const char *tmp = *o->tmp_dir ? o->tmp_dir : getenv("TMPDIR");
        return tmp && *tmp ? tmp : "/tmp";
}

/*
 * Removes the instance dirs a killed process left behind. Every instance
 * dir holds an "owner" file with the pid of the process that made it; a
 * dir whose owner no longer exists is removed (its Chromium died with it:
 * PR_SET_PDEATHSIG). A dir without the file, or whose owner lives (even a
 * reused pid), is left alone.
 */
static void sweep_orphans(const char *root)
{
        DIR *d = opendir(root);
        struct dirent *e;
        int swept = 0;

        if (!d)
                return;
        while ((e = readdir(d))) {
                char path[PATH_MAX], owner[PATH_MAX + 8], buf[32];
                long pid;
                FILE *f;

                if (strncmp(e->d_name, "parallel-chrome-", 16))
                        continue;
                snprintf(path, sizeof(path), "%.3000s/%s", root, e->d_name);
                snprintf(owner, sizeof(owner), "%s/owner", path);
                if (!(f = fopen(owner, "r")))
                        continue;
                pid = fgets(buf, sizeof(buf), f) ? strtol(buf, NULL, 10) : 0;
                fclose(f);
                if (pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
                        continue;
                rm_rf(path);
                swept++;
        }
        closedir(d);
        if (swept)
                par_log(PAR_LOG_INFO, "chrome", "swept_orphans",
                        "dirs=%d root=%s", swept, root);
}

/* Writes the owner file sweep_orphans reads. */
static par_err_t write_owner(const char *base, par_error_t *err)
{
        char path[PATH_MAX + 8];
        FILE *f;

        snprintf(path, sizeof(path), "%.3000s/owner", base);
        if (!(f = fopen(path, "w")) ||
            fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f)) {
                if (f)
                        fclose(f);
                return par_error_set(err, PAR_ERR_IO, "chrome: write %s: %s",
                                     path, strerror(errno));
        }
        return PAR_OK;
}

/*
 * Chromium's TMPDIR. Chromium keeps a temp dir (org.chromium.Chromium.*,
 * with its singleton socket) in $TMPDIR and leaves it behind when killed,
 * so it goes inside the instance dir and dies with it. A Unix socket path
 * is at most 107 bytes and Chromium aborts at start beyond that
 * ("/org.chromium.Chromium.XXXXXX/SingletonSocket" adds 46), so with a
 * long base the dir is made in /tmp instead, with its own owner file.
 */
#define CHROME_TMPDIR_MAX 60

static par_err_t make_tmp(struct inst *in, par_error_t *err)
{
        in->tmp_inside = strlen(in->base) + 4 <= CHROME_TMPDIR_MAX;
        if (in->tmp_inside)
                snprintf(in->tmp, sizeof(in->tmp), "%.3000s/tmp", in->base);
        else
                snprintf(in->tmp, sizeof(in->tmp),
                         "/tmp/parallel-chrome-XXXXXX");
        if (in->tmp_inside ? mkdir(in->tmp, 0700) != 0 : !mkdtemp(in->tmp)) {
                par_err_t rc =
                    par_error_set(err, PAR_ERR_IO, "chrome: mkdir %s: %s",
                                  in->tmp, strerror(errno));
                in->tmp[0] = 0;
                return rc;
        }
        return in->tmp_inside ? PAR_OK : write_owner(in->tmp, err);
}

/* Processes (not zombies) whose process group is pgid. */
static int group_alive(pid_t pgid)
{
        DIR *d = opendir("/proc");
        struct dirent *e;
        int n = 0;

        if (!d)
                return 0;
        while ((e = readdir(d))) {
                char path[300], buf[512], *p;
                FILE *f;
                char state;
                int ppid, pgrp;

                if (e->d_name[0] < '0' || e->d_name[0] > '9')
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
                if (!(f = fopen(path, "r")))
                        continue;
                p = fgets(buf, sizeof(buf), f);
                fclose(f);
                /* "pid (comm) state ppid pgrp": comm may hold spaces */
                if (!p || !(p = strrchr(buf, ')')))
                        continue;
                if (sscanf(p + 1, " %c %d %d", &state, &ppid, &pgrp) == 3 &&
                    pgrp == pgid && state != 'Z' && state != 'X')
                        n++;
        }
        closedir(d);
        return n;
}

/*
 * Processes whose command line mentions `needle` (an instance's unique
 * mkdtemp path); with sig != 0 they are sent sig. Chromium's crashpad
 * handler daemonizes into its own session, out of the browser's process
 * group, but names its database under our temp HOME, so this finds it.
 */
static int procs_mentioning(const char *needle, int sig)
{
        DIR *d;
        struct dirent *e;
        int n = 0;
        pid_t self = getpid();

        if (!needle || !*needle || !(d = opendir("/proc")))
                return 0;
        while ((e = readdir(d))) {
                char path[300], buf[8192];
                size_t got;
                FILE *f;
                pid_t pid;

                if (e->d_name[0] < '0' || e->d_name[0] > '9')
                        continue;
                pid = (pid_t)atoi(e->d_name);
                if (pid == self)
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
                if (!(f = fopen(path, "r")))
                        continue;
                got = fread(buf, 1, sizeof(buf) - 1, f);
                fclose(f);
                for (size_t i = 0; i < got; i++)
                        if (!buf[i])
                                buf[i] = ' ';
                buf[got] = 0;
                if (strstr(buf, needle)) {
                        n++;
                        if (sig)
                                kill(pid, sig);
                }
        }
        closedir(d);
        return n;
}

static int backoff_ms(const par_chrome_opts_t *o, int failures)
{
        return (int)par_backoff_ms(o->backoff_min_ms, o->backoff_max_ms,
                                   failures);
}

/* ---- options ---------------------------------------------------------- */

void par_chrome_opts_default(par_chrome_opts_t *o)
{
        memset(o, 0, sizeof(*o));
        o->mode = PAR_CHROME_LAUNCH;
        snprintf(o->path, sizeof(o->path), "/usr/bin/chromium");
        o->isolation = PAR_CHROME_ISO_CONTEXT;
        o->recycle_after = 500;
        o->headless = true;
        o->start_timeout_ms = 20000;
        o->call_timeout_ms = 30000;
        o->kill_grace_ms = 2000;
        o->backoff_min_ms = 250;
        o->backoff_max_ms = 10000;
        o->ping_interval_ms = 5000;
        o->scope = PAR_STATE_SPIN;
        o->browsers = 2;
        o->ready_contexts = 2;
        o->resource_contexts = 32;
        o->resource_idle_ms = 600000;
}

const char *par_state_scope_name(par_state_scope_t s)
{
        switch (s) {
        case PAR_STATE_SPIN:
                return "spin";
        case PAR_STATE_RESOURCE:
                return "resource";
        default:
                return "default";
        }
}

static par_err_t copy_str(char *dst, size_t n, const char *v, const char *key,
                          par_error_t *err)
{
        if (strlen(v) >= n)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "%s: value longer than %zu bytes", key,
                                     n - 1);
        memcpy(dst, v, strlen(v) + 1);
        return PAR_OK;
}

par_err_t par_chrome_opts_from_config(par_chrome_opts_t *o,
                                      const par_config_t *cfg, par_error_t *err)
{
        par_err_t rc;

        par_chrome_opts_default(o);
        o->mode = strcmp(par_config_str(cfg, "chrome.mode"), "connect")
                      ? PAR_CHROME_LAUNCH
                      : PAR_CHROME_CONNECT;
        o->isolation =
            strcmp(par_config_str(cfg, "chrome.isolation"), "browser")
                ? PAR_CHROME_ISO_CONTEXT
                : PAR_CHROME_ISO_BROWSER;
        if ((rc = copy_str(o->path, sizeof(o->path),
                           par_config_str(cfg, "chrome.path"), "chrome.path",
                           err)) ||
            (rc = copy_str(o->endpoints, sizeof(o->endpoints),
                           par_config_str(cfg, "chrome.endpoints"),
                           "chrome.endpoints", err)) ||
            (rc = copy_str(o->profile_dir, sizeof(o->profile_dir),
                           par_config_str(cfg, "chrome.profile_dir"),
                           "chrome.profile_dir", err)) ||
            (rc = copy_str(o->extra_args, sizeof(o->extra_args),
                           par_config_str(cfg, "chrome.extra_args"),
                           "chrome.extra_args", err)) ||
            (rc = copy_str(o->tmp_dir, sizeof(o->tmp_dir),
                           par_config_str(cfg, "chrome.tmp_dir"),
                           "chrome.tmp_dir", err)))
                return rc;
        o->recycle_after = (int)par_config_int(cfg, "chrome.recycle_after");
        o->headless = par_config_bool(cfg, "chrome.headless");
        o->start_timeout_ms = (int)par_config_int(cfg, "chrome.start_timeout");
        o->call_timeout_ms = (int)par_config_int(cfg, "chrome.call_timeout");
        o->kill_grace_ms = (int)par_config_int(cfg, "chrome.kill_grace");
        o->backoff_min_ms = (int)par_config_int(cfg, "chrome.restart_backoff");
        o->backoff_max_ms =
            (int)par_config_int(cfg, "chrome.restart_backoff_max");
        o->ping_interval_ms = (int)par_config_int(cfg, "chrome.ping_interval");
        o->scope = strcmp(par_config_str(cfg, "chrome.state_scope"), "resource")
                       ? PAR_STATE_SPIN
                       : PAR_STATE_RESOURCE;
        o->browsers = (int)par_config_int(cfg, "chrome.browsers");
        o->ready_contexts = (int)par_config_int(cfg, "chrome.ready_contexts");
        o->resource_contexts =
            (int)par_config_int(cfg, "chrome.resource_contexts");
        o->resource_idle_ms = (int)par_config_int(cfg, "chrome.resource_idle");
        if (o->mode == PAR_CHROME_CONNECT && !*o->endpoints)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "chrome.endpoints: required when "
                                     "chrome.mode=connect");
        return PAR_OK;
}

/* ---- instances -------------------------------------------------------- */

/* Has the process exited? Reaps it if so. Supervisor thread. */
static bool inst_exited(struct inst *in)
{
        int status;
        if (in->pid <= 0 || in->reaped)
                return in->pid > 0;
        if (waitpid(in->pid, &status, WNOHANG) == in->pid) {
                in->reaped = true;
                par_log(in->stopping ? PAR_LOG_DEBUG : PAR_LOG_WARN, "chrome",
                        "exited", "pid=%d status=%d signal=%d", (int)in->pid,
                        WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                        WIFSIGNALED(status) ? WTERMSIG(status) : 0);
                return true;
        }
        return false;
}

/*
 * Stops an instance's process group and removes its temp dirs. The
 * instance stays allocated (tabs may hold it). Supervisor thread.
 */
static void inst_stop(par_chrome_t *c, struct inst *in)
{
        pthread_mutex_lock(&c->mu);
        in->dead = true;
        pthread_mutex_unlock(&c->mu);
        if (in->pid > 0) {
                pid_t pg = in->pid;
                double end = par_clock_mono_s() + c->o.kill_grace_ms / 1000.0;

                in->stopping = true;
                kill(-pg, SIGTERM);
                while (par_clock_mono_s() < end) {
                        inst_exited(in);
                        if (in->reaped && !group_alive(pg))
                                break;
                        par_clock_sleep_ms(20);
                }
                kill(-pg, SIGKILL);
                if (!in->reaped) {
                        while (waitpid(in->pid, NULL, 0) < 0 && errno == EINTR)
                                ;
                        in->reaped = true;
                }
                /* Reparented members are reaped by init; wait for them to
                 * be gone so no process outlives us. */
                end = par_clock_mono_s() + 2.0;
                while (group_alive(pg) && par_clock_mono_s() < end)
                        par_clock_sleep_ms(10);
                /* The crashpad handler exits once its browser is gone;
                 * give it a moment, then make sure. */
                end = par_clock_mono_s() + 1.0;
                while (procs_mentioning(in->base, 0) &&
                       par_clock_mono_s() < end)
                        par_clock_sleep_ms(20);
                procs_mentioning(in->base, SIGKILL);
                par_log(PAR_LOG_INFO, "chrome", "stopped", "pid=%d left=%d",
                        (int)pg,
                        group_alive(pg) + procs_mentioning(in->base, 0));
        }
        if (in->tmp[0] && !in->tmp_inside)
                rm_rf(in->tmp);
        in->tmp[0] = 0;
        rm_rf(in->base);
        in->base[0] = 0;
}

/* Splits extra_args on spaces into argv[*n…], in place. Double quotes
 * group (and are removed), for flags whose value has spaces:
 * "--host-rules=MAP example.test 127.0.0.1". No escapes. */
static void add_extra_args(char **argv, int *n, int max, char *buf)
{
        char *r = buf, *w;

        while (*n < max) {
                bool quoted = false;

                while (*r == ' ' || *r == '\t')
                        r++;
                if (!*r)
                        return;
                argv[(*n)++] = w = r;
                for (; *r && (quoted || (*r != ' ' && *r != '\t')); r++)
                        if (*r == '"')
                                quoted = !quoted;
                        else
                                *w++ = *r;
                if (*r)
                        r++;
                *w = '\0';
        }
}

/*
 * Chromium features every launch turns off; none of them shares state
 * between browser contexts, they only cost CPU per context:
 *  - SpareRendererForSitePerProcess: Chromium keeps a spare renderer for
 *    the browser context used last; with a new context per spin it is
 *    never the one the next navigation needs (a process start per spin
 *    for nothing).
 *  - WebUIOmniboxPopup, WebUIOmniboxAimPopup: headless Chromium opens a
 *    window per browser context, and each window loads its omnibox
 *    popups (chrome://omnibox-popup.top-chrome/ and its AI-mode twin) in
 *    a renderer of their own that nobody ever shows. Measured here: a
 *    prepared context cost ~600-900 ms of renderer CPU and ~300 ms of
 *    browser CPU with them, ~40 ms and ~120 ms without; on two cores that
 *    was the bound on clean spins per second (docs/BENCHMARKS.md).
 */
#define DISABLED_FEATURES                                                      \
        "SpareRendererForSitePerProcess,WebUIOmniboxPopup,"                    \
        "WebUIOmniboxAimPopup"

/*
 * Chromium honours only the last --disable-features switch, so one given
 * in chrome.extra_args would silently undo ours (and ours theirs): joins
 * every --disable-features value in argv[0..argc) into buf (ours first),
 * removes those entries and returns the new argc.
 */
static int merge_disabled_features(char **argv, int argc, char *buf, size_t n)
{
        static const char sw[] = "--disable-features=";
        size_t len = (size_t)snprintf(buf, n, "%s%s", sw, DISABLED_FEATURES);
        int w = 0;

        for (int r = 0; r < argc; r++) {
                if (strncmp(argv[r], sw, sizeof(sw) - 1)) {
                        argv[w++] = argv[r];
                        continue;
                }
                if (argv[r][sizeof(sw) - 1] && len < n)
                        len += (size_t)snprintf(buf + len, n - len, ",%s",
                                                argv[r] + sizeof(sw) - 1);
        }
        return w;
}

static par_err_t read_active_port(const char *profile, char *host_port,
                                  size_t n)
{
        char path[PATH_MAX + 32], line[64];
        FILE *f;
        int port;

        snprintf(path, sizeof(path), "%s/DevToolsActivePort", profile);
        if (!(f = fopen(path, "r")))
                return PAR_ERR_NOTFOUND;
        /* Chromium writes "port\n/devtools/browser/<id>"; wait for both. */
        if (!fgets(line, sizeof(line), f) || !strchr(line, '\n') ||
            (port = atoi(line)) <= 0 || !fgets(line, sizeof(line), f)) {
                fclose(f);
                return PAR_ERR_NOTFOUND;
        }
        fclose(f);
        snprintf(host_port, n, "127.0.0.1:%d", port);
        return PAR_OK;
}

/* Starts Chromium for slot s; on success *out has refs == 1. */
static par_err_t inst_launch(par_chrome_t *c, struct slot *s, struct inst **out,
                             par_error_t *err)
{
        const par_chrome_opts_t *o = &c->o;
        struct inst *in = calloc(1, sizeof(*in));
        char *argv[96], *envp[256], extra[sizeof(o->extra_args)];
        char a_profile[PATH_MAX + 32], e_home[PATH_MAX + 8],
            e_xdg[PATH_MAX + 32], e_cache[PATH_MAX + 32], home[PATH_MAX],
            e_tmp[PATH_MAX + 8], logpath[PATH_MAX + 16], ws[512],
            a_features[sizeof(o->extra_args) + sizeof(DISABLED_FEATURES) + 32];
        const char *tmp;
        int argc = 0, envc = 0;
        double deadline;
        par_err_t rc = PAR_OK;
        pid_t pid, parent;

        if (!in)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        in->refs = 1;
        in->pid = -1;
        tmp = tmp_root(o);
        snprintf(in->base, sizeof(in->base), "%s/parallel-chrome-XXXXXX", tmp);
        if (!mkdtemp(in->base)) {
                rc = par_error_set(err, PAR_ERR_IO, "chrome: mkdtemp %s: %s",
                                   in->base, strerror(errno));
                in->base[0] = 0;
                goto fail;
        }
        if ((rc = write_owner(in->base, err)))
                goto fail;
        if (*o->profile_dir && o->isolation == PAR_CHROME_ISO_BROWSER)
                snprintf(in->profile, sizeof(in->profile), "%.3000s/worker-%d",
                         o->profile_dir, s->index);
        else if (*o->profile_dir && c->nslots > 1)
                /* Chromium locks its profile: one directory per browser */
                snprintf(in->profile, sizeof(in->profile), "%.3000s/browser-%d",
                         o->profile_dir, s->index);
        else if (*o->profile_dir)
                snprintf(in->profile, sizeof(in->profile), "%s",
                         o->profile_dir);
        else
                snprintf(in->profile, sizeof(in->profile), "%.3000s/profile",
                         in->base);
        snprintf(home, sizeof(home), "%.3000s/home", in->base);
        if ((rc = make_tmp(in, err)))
                goto fail;
        if ((mkdir(in->profile, 0700) && errno != EEXIST) ||
            mkdir(home, 0700)) {
                rc = par_error_set(err, PAR_ERR_IO, "chrome: mkdir %s: %s",
                                   in->profile, strerror(errno));
                goto fail;
        }
        {
                char stale[PATH_MAX + 32];
                snprintf(stale, sizeof(stale), "%.3000s/DevToolsActivePort",
                         in->profile);
                unlink(stale); /* a persistent profile's last run */
        }
        snprintf(a_profile, sizeof(a_profile), "--user-data-dir=%s",
                 in->profile);
        snprintf(logpath, sizeof(logpath), "%.3000s/chrome.log", in->base);

        argv[argc++] = (char *)o->path;
        if (o->headless)
                argv[argc++] = "--headless";
        argv[argc++] = "--no-sandbox";
        argv[argc++] = "--disable-gpu";
        argv[argc++] = "--disable-quic";
        argv[argc++] = "--no-first-run";
        argv[argc++] = "--no-default-browser-check";
        argv[argc++] = "--disable-background-networking";
        argv[argc++] = "--disable-component-update";
        argv[argc++] = "--disable-sync";
        argv[argc++] = "--disable-default-apps";
        argv[argc++] = "--disable-breakpad";
        argv[argc++] = "--password-store=basic";
        argv[argc++] = "--use-mock-keychain";
        argv[argc++] = "--remote-debugging-address=127.0.0.1";
        argv[argc++] = "--remote-debugging-port=0";
        argv[argc++] = a_profile;
        snprintf(extra, sizeof(extra), "%s", o->extra_args);
        add_extra_args(argv, &argc, 90, extra);
        argc =
            merge_disabled_features(argv, argc, a_features, sizeof(a_features));
        argv[argc++] = a_features;
        argv[argc++] = "about:blank";
        argv[argc] = NULL;

        snprintf(e_home, sizeof(e_home), "HOME=%s", home);
        snprintf(e_xdg, sizeof(e_xdg), "XDG_CONFIG_HOME=%.3000s/.config", home);
        snprintf(e_cache, sizeof(e_cache), "XDG_CACHE_HOME=%.3000s/.cache",
                 home);
        /* Chromium's own temp dirs (org.chromium.Chromium.*, the singleton
         * socket) go inside the instance dir too, so nothing outlives it. */
        snprintf(e_tmp, sizeof(e_tmp), "TMPDIR=%s", in->tmp);
        envp[envc++] = e_home;
        envp[envc++] = e_xdg;
        envp[envc++] = e_cache;
        envp[envc++] = e_tmp;
        for (char **e = environ; *e && envc < 250; e++)
                if (strncmp(*e, "HOME=", 5) &&
                    strncmp(*e, "XDG_CONFIG_HOME=", 16) &&
                    strncmp(*e, "XDG_CACHE_HOME=", 15) &&
                    strncmp(*e, "TMPDIR=", 7))
                        envp[envc++] = *e;
        envp[envc] = NULL;

        parent = getpid();
        pid = fork();
        if (pid < 0) {
                rc = par_error_set(err, PAR_ERR_IO, "chrome: fork: %s",
                                   strerror(errno));
                goto fail;
        }
        if (pid == 0) {
                /* async-signal-safe calls only */
                int fd;
                sigset_t none;
                setsid();
                /* Die with the supervisor thread (the node), see above. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(127);
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                fd = open("/dev/null", O_RDONLY);
                if (fd >= 0)
                        dup2(fd, 0);
                fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
                if (fd >= 0) {
                        dup2(fd, 1);
                        dup2(fd, 2);
                }
                for (int i = 3; i < 4096; i++)
                        close(i);
                execve(o->path, argv, envp);
                _exit(127);
        }
        in->pid = pid;
        in->started = par_clock_mono_s();
        par_log(PAR_LOG_INFO, "chrome", "launched", "pid=%d slot=%d dir=%s",
                (int)pid, s->index, in->base);

        deadline = par_clock_mono_s() + o->start_timeout_ms / 1000.0;
        while (
            read_active_port(in->profile, in->endpoint, sizeof(in->endpoint))) {
                if (inst_exited(in)) {
                        rc = par_error_set(err, PAR_ERR_IO,
                                           "chrome: %s exited during start "
                                           "(see its log in %s)",
                                           o->path, logpath);
                        goto fail;
                }
                if (par_clock_mono_s() > deadline) {
                        rc = par_error_set(err, PAR_ERR_TIMEOUT,
                                           "chrome: no DevToolsActivePort "
                                           "after %d ms",
                                           o->start_timeout_ms);
                        goto fail;
                }
                par_clock_sleep_ms(20);
        }
        {
                int left = (int)((deadline - par_clock_mono_s()) * 1000);
                if (left < 1000)
                        left = 1000;
                if ((rc = par_cdp_fetch_version(in->endpoint, ws, sizeof(ws),
                                                left, err)) ||
                    (rc = par_cdp_connect(&in->cdp, ws, left, err))) {
                        par_error_prefix(err, "chrome pid %d", (int)pid);
                        goto fail;
                }
        }
        *out = in;
        return PAR_OK;
fail:
        inst_stop(c, in);
        chrome_inst_free(in);
        return rc;
}

static par_err_t inst_connect(par_chrome_t *c, struct slot *s,
                              struct inst **out, par_error_t *err)
{
        struct inst *in = calloc(1, sizeof(*in));
        char ws[512];
        par_err_t rc;

        if (!in)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        in->refs = 1;
        in->pid = -1;
        in->started = par_clock_mono_s();
        snprintf(in->endpoint, sizeof(in->endpoint), "%s", s->endpoint);
        if ((rc = par_cdp_fetch_version(s->endpoint, ws, sizeof(ws),
                                        c->o.start_timeout_ms, err)) ||
            (rc = par_cdp_connect(&in->cdp, ws, c->o.start_timeout_ms, err))) {
                free(in);
                return rc;
        }
        par_log(PAR_LOG_INFO, "chrome", "connected", "endpoint=%s slot=%d",
                s->endpoint, s->index);
        *out = in;
        return PAR_OK;
}

/* ---- the supervisor thread -------------------------------------------
 *
 * It alone launches and stops browsers. Besides keeping lock hand-offs
 * simple, this makes PR_SET_PDEATHSIG meaningful: the kernel signals a
 * child when the *thread* that forked it exits, and this thread lives
 * exactly as long as the pool, so a node that crashes takes its browsers
 * with it instead of leaving orphans.
 */

/* Stops the slot's instance and drops the slot's reference. */
static void slot_retire(par_chrome_t *c, struct slot *s, bool died)
{
        struct inst *in;

        pthread_mutex_lock(&c->mu);
        in = s->inst;
        pthread_mutex_unlock(&c->mu);
        if (!in)
                return;
        if (died) {
                /* A browser that dies young counts as a failed start. */
                if (par_clock_mono_s() - in->started < 10.0)
                        s->failures++;
                else
                        s->failures = 1;
                s->next_try =
                    par_clock_mono_s() + backoff_ms(&c->o, s->failures) / 1e3;
                s->died = true;
                par_log(PAR_LOG_WARN, "chrome", "died",
                        "slot=%d pid=%d endpoint=%s retry_in_ms=%d", s->index,
                        (int)in->pid, in->endpoint,
                        backoff_ms(&c->o, s->failures));
        }
        inst_stop(c, in);
        pthread_mutex_lock(&c->mu);
        s->inst = NULL;
        c->st.browsers_alive--;
        if (died)
                c->st.crashes++;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
        chrome_inst_unref(c, in);
}

/* One launch (or connect) attempt for the slot; publishes the result. */
static void slot_start(par_chrome_t *c, struct slot *s)
{
        bool restart = s->died;
        struct inst *in = NULL;
        par_error_t e = {0};
        par_err_t rc;

        rc = c->o.mode == PAR_CHROME_LAUNCH ? inst_launch(c, s, &in, &e)
                                            : inst_connect(c, s, &in, &e);
        if (rc) {
                s->failures++;
                s->next_try =
                    par_clock_mono_s() + backoff_ms(&c->o, s->failures) / 1e3;
                par_log(PAR_LOG_WARN, "chrome", "start_failed",
                        "slot=%d error=\"%s\" retry_in_ms=%d", s->index, e.msg,
                        backoff_ms(&c->o, s->failures));
        } else {
                s->failures = 0;
                s->next_try = 0;
                s->died = false;
        }
        pthread_mutex_lock(&c->mu);
        s->attempts++;
        s->requested = false;
        if (rc) {
                s->last_err = e;
        } else {
                s->inst = in;
                c->st.launches++;
                c->st.browsers_alive++;
                if (restart)
                        c->st.restarts++;
        }
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
}

/* Alive, connected, and answering (a browser can hang with its socket
 * open: a SIGSTOPped or wedged process only shows up as silence). */
static bool inst_healthy(par_chrome_t *c, struct inst *in)
{
        par_error_t e;

        if (inst_exited(in) || !par_cdp_connected(in->cdp))
                return false;
        if (c->o.ping_interval_ms <= 0 ||
            par_clock_mono_s() - in->last_ping < c->o.ping_interval_ms / 1000.0)
                return true;
        in->last_ping = par_clock_mono_s();
        if (par_cdp_call(in->cdp, NULL, "Browser.getVersion", NULL,
                         c->o.ping_interval_ms < HEALTH_TIMEOUT_MS
                             ? c->o.ping_interval_ms
                             : HEALTH_TIMEOUT_MS,
                         NULL, &e)) {
                par_log(PAR_LOG_WARN, "chrome", "ping_failed",
                        "pid=%d endpoint=%s error=\"%s\"", (int)in->pid,
                        in->endpoint, e.msg);
                return ++in->ping_failures < PING_FAILURES;
        }
        in->ping_failures = 0;
        return true;
}

/* One pass over the slots; returns when the next pass is due. */
static double supervise(par_chrome_t *c)
{
        double due = par_clock_mono_s() + MONITOR_PERIOD_MS / 1000.0;
        /* a spin in flight may hold a recycle back this long at most */
        double recycle_grace = 2.0 * c->o.call_timeout_ms / 1000.0 + 1.0;

        for (int i = 0; i < c->nslots; i++) {
                struct slot *s = &c->slots[i];
                struct inst *in;
                bool dead, recycle_now = false, want;

                pthread_mutex_lock(&c->mu);
                in = s->inst;
                dead = in && in->dead;
                if (in && in->recycle)
                        recycle_now =
                            in->in_use == 0 ||
                            par_clock_mono_s() - in->recycle_at > recycle_grace;
                pthread_mutex_unlock(&c->mu);

                if (in && (dead || !inst_healthy(c, in))) {
                        slot_retire(c, s, true);
                } else if (in && recycle_now) {
                        par_log(PAR_LOG_INFO, "chrome", "recycle",
                                "slot=%d pid=%d", s->index, (int)in->pid);
                        pthread_mutex_lock(&c->mu);
                        c->st.recycles++;
                        pthread_mutex_unlock(&c->mu);
                        slot_retire(c, s, false);
                }

                pthread_mutex_lock(&c->mu);
                want = !s->inst && (s->requested || s->wanted) && !c->stop;
                pthread_mutex_unlock(&c->mu);
                if (!want)
                        continue;
                if (par_clock_mono_s() >= s->next_try)
                        slot_start(c, s);
                else if (s->next_try < due)
                        due = s->next_try;
        }
        return due;
}

static void *supervisor_main(void *arg)
{
        par_chrome_t *c = arg;

        pthread_mutex_lock(&c->mu);
        while (!c->stop) {
                double due;
                struct timespec dl;

                pthread_mutex_unlock(&c->mu);
                due = supervise(c);
                pthread_mutex_lock(&c->mu);
                if (c->stop)
                        break;
                due -= par_clock_mono_s();
                if (due <= 0)
                        continue;
                /* Rounded up: waking a little late is harmless, waking
                 * early would spin until `due`. */
                par_clock_deadline(&dl, (int64_t)(due * 1000) + 1);
                pthread_cond_timedwait(&c->sup_cond, &c->mu, &dl);
        }
        pthread_mutex_unlock(&c->mu);
        /* Stop the browsers from this thread, before it exits (and the
         * kernel's PDEATHSIG would SIGKILL them without a grace). */
        for (int i = 0; i < c->nslots; i++)
                slot_retire(c, &c->slots[i], false);
        return NULL;
}

/* ---- pool ------------------------------------------------------------- */

par_err_t par_chrome_new(par_chrome_t **out, const par_chrome_opts_t *opts,
                         int workers, par_error_t *err)
{
        par_chrome_t *c;
        par_err_t rc = PAR_OK;

        if (workers < 1)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "chrome: need at least one worker");
        c = calloc(1, sizeof(*c));
        if (!c)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        c->o = *opts;
        if (c->o.scope == PAR_STATE_DEFAULT)
                c->o.scope = PAR_STATE_SPIN;
        c->nworkers = workers;
        pthread_mutex_init(&c->mu, NULL);
        par_clock_cond_init(&c->cond);
        par_clock_cond_init(&c->sup_cond);
        par_clock_cond_init(&c->stage_cond);
        c->tabs = calloc((size_t)workers, sizeof(*c->tabs));

        if (c->o.mode == PAR_CHROME_CONNECT) {
                char list[sizeof(c->o.endpoints)], *save = NULL;
                int n = 0;
                snprintf(list, sizeof(list), "%s", c->o.endpoints);
                for (char *p = list; *p; p++)
                        n += *p == ',';
                c->slots = calloc((size_t)n + 1, sizeof(*c->slots));
                if (!c->slots || !c->tabs)
                        goto nomem;
                for (char *t = strtok_r(list, ", ", &save); t;
                     t = strtok_r(NULL, ", ", &save)) {
                        snprintf(c->slots[c->nslots].endpoint,
                                 sizeof(c->slots[0].endpoint), "%s", t);
                        c->nslots++;
                }
                if (!c->nslots) {
                        rc = par_error_set(err, PAR_ERR_INVALID,
                                           "chrome.endpoints: empty (needed "
                                           "in connect mode)");
                        goto fail;
                }
                for (int i = 0; i < c->nslots; i++) {
                        char ws[512];
                        if ((rc = par_cdp_fetch_version(
                                 c->slots[i].endpoint, ws, sizeof(ws),
                                 c->o.start_timeout_ms, err))) {
                                par_error_prefix(err, "chrome.endpoints");
                                goto fail;
                        }
                }
        } else {
                c->nslots = c->o.isolation == PAR_CHROME_ISO_BROWSER
                                ? workers
                                : (c->o.browsers > 0 ? c->o.browsers : 1);
                c->slots = calloc((size_t)c->nslots, sizeof(*c->slots));
                if (!c->slots || !c->tabs)
                        goto nomem;
                sweep_orphans(tmp_root(&c->o));
                if (strcmp(tmp_root(&c->o), "/tmp"))
                        sweep_orphans("/tmp"); /* see make_tmp */
        }
        for (int i = 0; i < c->nslots; i++)
                c->slots[i].index = i;
        /* Shared browsers (context isolation) serve any worker: the stock
         * the workers need is spread over them, rounded up. Otherwise
         * worker w uses slot w % nslots and that slot stocks for it. */
        c->floating = c->o.isolation == PAR_CHROME_ISO_CONTEXT;
        for (int w = 0; !c->floating && w < workers; w++) {
                c->slots[w % c->nslots].stock_target += c->o.ready_contexts;
                c->slots[w % c->nslots].workers++;
        }
        for (int i = 0; c->floating && i < c->nslots; i++) {
                c->slots[i].stock_target =
                    (c->o.ready_contexts * workers + c->nslots - 1) / c->nslots;
                c->slots[i].workers = (workers + c->nslots - 1) / c->nslots;
        }
        if (pthread_create(&c->supervisor, NULL, supervisor_main, c)) {
                rc = par_error_set(err, PAR_ERR_IO,
                                   "chrome: cannot start supervisor thread");
                goto fail;
        }
        c->supervisor_started = true;
        if ((rc = chrome_stager_start(c, err)))
                goto fail;
        *out = c;
        return PAR_OK;
nomem:
        rc = par_error_set(err, PAR_ERR_NOMEM, "out of memory");
fail:
        par_chrome_destroy(c);
        return rc;
}

void par_chrome_destroy(par_chrome_t *c)
{
        if (!c)
                return;
        chrome_stager_stop(c);
        /* tabs first, while their browsers still answer */
        chrome_stager_drain(c);
        if (c->supervisor_started) {
                pthread_mutex_lock(&c->mu);
                c->stop = true;
                pthread_cond_signal(&c->sup_cond);
                pthread_cond_broadcast(&c->cond);
                pthread_mutex_unlock(&c->mu);
                pthread_join(c->supervisor, NULL); /* it stops the browsers */
        }
        free(c->slots);
        free(c->tabs);
        pthread_cond_destroy(&c->stage_cond);
        pthread_cond_destroy(&c->sup_cond);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->mu);
        free(c);
}

void par_chrome_stats(par_chrome_t *c, par_chrome_stats_t *out)
{
        pthread_mutex_lock(&c->mu);
        *out = c->st;
        pthread_mutex_unlock(&c->mu);
}

pid_t par_chrome_browser_pgid(par_chrome_t *c, int worker)
{
        struct inst *in;
        pid_t pid = -1;

        if (!c || worker < 0 || worker >= c->nworkers)
                return -1;
        pthread_mutex_lock(&c->mu);
        /* a worker that floats over shared browsers is served by the one
         * its tab is in; between spins, by the slot it would wait for */
        in = c->tabs[worker] ? c->tabs[worker]->inst
                             : chrome_slot_of(c, worker)->inst;
        if (in && !in->dead)
                pid = in->pid;
        pthread_mutex_unlock(&c->mu);
        return pid;
}

int par_chrome_browser_pgids(par_chrome_t *c, pid_t *out, int max)
{
        int n = 0;

        if (!c)
                return 0;
        pthread_mutex_lock(&c->mu);
        for (int i = 0; i < c->nslots && n < max; i++) {
                struct inst *in = c->slots[i].inst;
                if (in && !in->dead && in->pid > 0)
                        out[n++] = in->pid;
        }
        pthread_mutex_unlock(&c->mu);
        return n;
}
