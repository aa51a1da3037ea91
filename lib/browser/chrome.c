/*
 * chrome.c — Chrome supervision: browsers, their lifetimes, and worker tabs.
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
 * supervisor and waits. A second thread, the stager, keeps each live
 * browser stocked with prepared contexts and disposes of used ones (see
 * chrome.h on state scopes), so creating and disposing of contexts — six
 * CDP calls to make one, one to dispose of it, tens of milliseconds of
 * browser work — stays off the spin's path; it also expires idle resource
 * contexts. Children get PR_SET_PDEATHSIG, tied to that
 * thread: if the node dies, so do its browsers (Chromium's own children
 * exit with their browser process). chrome->mu guards the slots' current
 * instances, reference counts, counters and instance flags; it is never
 * held across a CDP call, a sleep or a launch.
 */
#include "base/backoff.h"
#include "base/clock.h"
#include "browser/chrome.h"

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

#define HEALTH_TIMEOUT_MS 5000
#define CLOSE_TIMEOUT_MS  5000
#define MONITOR_PERIOD_MS 200
#define PING_FAILURES     2 /* this many in a row: the browser is hung */

struct inst {
        int refs;          /* chrome->mu */
        int in_use;        /* tabs acquired now; chrome->mu */
        int spins;         /* chrome->mu */
        bool dead;         /* chrome->mu */
        bool recycle;      /* chrome->mu */
        double recycle_at; /* chrome->mu: when recycle was set */
        par_cdp_t *cdp;
        pid_t pid; /* -1 in connect mode */
        /* below: supervisor thread only */
        bool reaped;
        bool stopping;          /* we are stopping it: exit is expected */
        char base[PATH_MAX];    /* temp dir: profile (unless persistent) +
                                   home; removed on retire; "" in connect */
        char profile[PATH_MAX]; /* --user-data-dir */
        char tmp[PATH_MAX];     /* Chromium's TMPDIR: <base>/tmp, or its own
                                   dir in /tmp when base is too long */
        bool tmp_inside;        /* tmp is inside base */
        char endpoint[280];     /* host:port */
        double started;
        double last_ping;  /* last browser-level round trip */
        int ping_failures; /* consecutive */
};

struct slot {
        int index;
        char endpoint[280]; /* connect mode */
        /* chrome->mu; inst is replaced only by the supervisor */
        struct inst *inst;    /* reference held */
        bool wanted;          /* has been used: keep a browser running */
        bool requested;       /* an acquirer waits for a (new) browser */
        uint64_t attempts;    /* launch attempts finished */
        par_error_t last_err; /* of the last failed attempt */
        par_tab_t *stock;     /* prepared contexts (chrome->mu) */
        int nstock;           /* chrome->mu */
        int stock_target;     /* ready_contexts x workers using this slot */
        int preparing;        /* stager: being made now (chrome->mu) */
        double stock_pause;   /* stager: no preparing before (chrome->mu) */
        /* supervisor thread only */
        int failures;    /* consecutive launch failures / early deaths */
        bool died;       /* the last instance died: next start = restart */
        double next_try; /* monotonic seconds */
};

struct rctx;

struct par_tab {
        par_chrome_t *chrome;
        struct inst *inst; /* reference held */
        int worker;        /* holder while acquired */
        bool acquired;
        par_state_scope_t scope;
        bool fresh;       /* resource scope: made for this acquire */
        struct rctx *res; /* resource scope: its entry (chrome->mu) */
        json_t *saved;    /* resource scope: last snapshot (owned) */
        par_tab_t *next;  /* in a stock or the disposal queue */
        char target_id[64];
        char session_id[64];
        char context_id[64];
};

/* A resource's context, in the LRU list (chrome->mu). */
struct rctx {
        char *key;
        par_tab_t *tab;
        bool busy;        /* acquired by a worker */
        bool doomed;      /* dropped while busy: dispose of at release */
        double last_used; /* monotonic seconds, at release */
        struct rctx *prev, *next;
};

struct par_chrome {
        par_chrome_opts_t o;
        int nworkers;
        par_tab_t **tabs; /* per worker: the tab it holds (chrome->mu) */
        int nslots;
        struct slot *slots;
        par_tab_t *trash;          /* to dispose of (chrome->mu) */
        int disposing;             /* stager: being disposed of now */
        struct rctx *lru, *mru;    /* resource contexts (chrome->mu) */
        int nres;                  /* chrome->mu */
        pthread_cond_t stage_cond; /* stager: work to do */
        bool stage_stop;
        pthread_t stager;
        bool stager_started;

        pthread_mutex_t mu;
        pthread_cond_t cond;     /* acquirers: slot or in_use changed */
        pthread_cond_t sup_cond; /* supervisor: work to do */
        par_chrome_stats_t st;
        bool stop;

        pthread_t supervisor;
        bool supervisor_started;
};

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
        o->ready_contexts = 1;
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

/* chrome->mu held. Drops one reference; returns the instance to free (its
 * cdp must be destroyed outside the lock) or NULL. */
static struct inst *inst_unref_locked(struct inst *in)
{
        return --in->refs == 0 ? in : NULL;
}

static void inst_free(struct inst *in)
{
        if (!in)
                return;
        par_cdp_destroy(in->cdp);
        free(in);
}

static void inst_unref(par_chrome_t *c, struct inst *in)
{
        struct inst *f;
        pthread_mutex_lock(&c->mu);
        f = inst_unref_locked(in);
        pthread_mutex_unlock(&c->mu);
        inst_free(f);
}

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
            e_tmp[PATH_MAX + 8], logpath[PATH_MAX + 16], ws[512];
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
        /* Chromium keeps a spare renderer process for the browser context
         * used last; with a new context per spin it is never the one the
         * next navigation needs, so it only costs a process start per
         * spin (measured: 3 renderer starts per clean spin with it, 2
         * without). */
        argv[argc++] = "--disable-features=SpareRendererForSitePerProcess";
        argv[argc++] = "--remote-debugging-address=127.0.0.1";
        argv[argc++] = "--remote-debugging-port=0";
        argv[argc++] = a_profile;
        snprintf(extra, sizeof(extra), "%s", o->extra_args);
        add_extra_args(argv, &argc, 90, extra);
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
        inst_free(in);
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
        inst_unref(c, in);
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

/*
 * Gives a reference to the slot's live instance and counts the caller as
 * in_use, asking the supervisor for a (re)launch when there is none.
 */
static par_err_t slot_get(par_chrome_t *c, struct slot *s, struct inst **out,
                          par_error_t *err)
{
        struct timespec dl;
        uint64_t gen = 0;
        bool asked = false;
        par_err_t rc = PAR_OK;
        int wait_ms = c->o.start_timeout_ms + c->o.backoff_max_ms +
                      2 * c->o.call_timeout_ms + 5000;

        par_clock_deadline(&dl, wait_ms);
        pthread_mutex_lock(&c->mu);
        s->wanted = true;
        for (;;) {
                struct inst *in = s->inst;
                if (in && !in->dead && !in->recycle &&
                    par_cdp_connected(in->cdp)) {
                        in->refs++;
                        in->in_use++;
                        *out = in;
                        break;
                }
                if (c->stop) {
                        rc = par_error_set(err, PAR_ERR_CANCELLED,
                                           "chrome: shutting down");
                        break;
                }
                if (asked && s->attempts != gen && !s->inst) {
                        rc = par_error_set(err, s->last_err.code, "%s",
                                           s->last_err.msg);
                        break;
                }
                if (!asked) {
                        gen = s->attempts;
                        asked = true;
                }
                s->requested = true;
                pthread_cond_signal(&c->sup_cond);
                if (pthread_cond_timedwait(&c->cond, &c->mu, &dl) ==
                    ETIMEDOUT) {
                        rc = par_error_set(err, PAR_ERR_TIMEOUT,
                                           "chrome: no browser for slot %d "
                                           "within %d ms",
                                           s->index, wait_ms);
                        break;
                }
        }
        pthread_mutex_unlock(&c->mu);
        return rc;
}

static struct slot *slot_of(par_chrome_t *c, int worker)
{
        return &c->slots[worker % c->nslots];
}

/* ---- pool ------------------------------------------------------------- */

static void *stager_main(void *arg);

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
                c->nslots =
                    c->o.isolation == PAR_CHROME_ISO_BROWSER ? workers : 1;
                c->slots = calloc((size_t)c->nslots, sizeof(*c->slots));
                if (!c->slots || !c->tabs)
                        goto nomem;
                sweep_orphans(tmp_root(&c->o));
                if (strcmp(tmp_root(&c->o), "/tmp"))
                        sweep_orphans("/tmp"); /* see make_tmp */
        }
        for (int i = 0; i < c->nslots; i++)
                c->slots[i].index = i;
        /* worker w uses slot w % nslots */
        for (int w = 0; w < workers; w++)
                c->slots[w % c->nslots].stock_target += c->o.ready_contexts;
        if (pthread_create(&c->supervisor, NULL, supervisor_main, c)) {
                rc = par_error_set(err, PAR_ERR_IO,
                                   "chrome: cannot start supervisor thread");
                goto fail;
        }
        c->supervisor_started = true;
        if (pthread_create(&c->stager, NULL, stager_main, c)) {
                rc = par_error_set(err, PAR_ERR_IO,
                                   "chrome: cannot start stager thread");
                goto fail;
        }
        c->stager_started = true;
        *out = c;
        return PAR_OK;
nomem:
        rc = par_error_set(err, PAR_ERR_NOMEM, "out of memory");
fail:
        par_chrome_destroy(c);
        return rc;
}

/* Disposes of a tab's context (which closes its target) or, without one,
 * closes the target (best effort), and frees the tab. */
static void tab_drop(par_chrome_t *c, par_tab_t *t)
{
        par_cdp_t *cdp = t->inst->cdp;

        if (par_cdp_connected(cdp)) {
                par_error_t e;
                if (*t->context_id)
                        par_cdp_call_take(cdp, NULL,
                                          "Target.disposeBrowserContext",
                                          json_pack("{s:s}", "browserContextId",
                                                    t->context_id),
                                          CLOSE_TIMEOUT_MS, NULL, &e);
                else if (*t->target_id)
                        par_cdp_call_take(
                            cdp, NULL, "Target.closeTarget",
                            json_pack("{s:s}", "targetId", t->target_id),
                            CLOSE_TIMEOUT_MS, NULL, &e);
        }
        if (*t->session_id)
                par_cdp_session_forget(cdp, t->session_id);
        pthread_mutex_lock(&c->mu);
        if (*t->context_id)
                c->st.contexts_disposed++;
        c->st.tabs_open--;
        pthread_mutex_unlock(&c->mu);
        json_decref(t->saved);
        inst_unref(c, t->inst);
        free(t);
}

/* chrome->mu held: queue t for the stager to dispose of. */
static void trash_locked(par_chrome_t *c, par_tab_t *t)
{
        t->next = c->trash;
        c->trash = t;
        pthread_cond_signal(&c->stage_cond);
}

static void rctx_unlink(par_chrome_t *c, struct rctx *e)
{
        if (e->prev)
                e->prev->next = e->next;
        else
                c->lru = e->next;
        if (e->next)
                e->next->prev = e->prev;
        else
                c->mru = e->prev;
        e->prev = e->next = NULL;
        c->nres--;
}

static void rctx_push_mru(par_chrome_t *c, struct rctx *e)
{
        e->prev = c->mru;
        e->next = NULL;
        if (c->mru)
                c->mru->next = e;
        else
                c->lru = e;
        c->mru = e;
        c->nres++;
}

static struct rctx *rctx_find(par_chrome_t *c, const char *key)
{
        for (struct rctx *e = c->mru; e; e = e->prev)
                if (!strcmp(e->key, key))
                        return e;
        return NULL;
}

/* chrome->mu held: unlinks an idle entry, queues its tab for disposal. */
static void rctx_evict_locked(par_chrome_t *c, struct rctx *e)
{
        rctx_unlink(c, e);
        if (e->tab) {
                e->tab->res = NULL;
                trash_locked(c, e->tab);
        }
        free(e->key);
        free(e);
}

void par_chrome_destroy(par_chrome_t *c)
{
        if (!c)
                return;
        if (c->stager_started) {
                pthread_mutex_lock(&c->mu);
                c->stage_stop = true;
                pthread_cond_signal(&c->stage_cond);
                pthread_mutex_unlock(&c->mu);
                pthread_join(c->stager, NULL);
        }
        /* Tabs first, while their browsers still answer. */
        for (int i = 0; c->tabs && i < c->nworkers; i++) {
                if (c->tabs[i]) {
                        par_log(PAR_LOG_ERROR, "chrome", "tab_leaked",
                                "worker=%d", i);
                        if (c->tabs[i]->res)
                                c->tabs[i]->res->tab = NULL;
                        tab_drop(c, c->tabs[i]);
                }
        }
        while (c->lru) {
                struct rctx *e = c->lru;
                rctx_unlink(c, e);
                if (e->tab)
                        tab_drop(c, e->tab);
                free(e->key);
                free(e);
        }
        for (int i = 0; c->slots && i < c->nslots; i++) {
                while (c->slots[i].stock) {
                        par_tab_t *t = c->slots[i].stock;
                        c->slots[i].stock = t->next;
                        tab_drop(c, t);
                }
        }
        while (c->trash) {
                par_tab_t *t = c->trash;
                c->trash = t->next;
                tab_drop(c, t);
        }
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

/* A new browser context with one about:blank target, attached, Page and
 * Runtime enabled. On success the tab owns the caller's reference to `in`;
 * on failure the caller still owns it. Any thread. */
static par_err_t tab_create(par_chrome_t *c, struct inst *in, par_tab_t **out,
                            par_error_t *err)
{
        par_tab_t *t = calloc(1, sizeof(*t));
        par_cdp_t *cdp = in->cdp;
        int to = c->o.call_timeout_ms;
        json_t *r = NULL;
        par_err_t rc;

        if (!t)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        t->chrome = c;
        t->inst = in;
        t->worker = -1;
        t->scope = PAR_STATE_SPIN;
        pthread_mutex_lock(&c->mu);
        c->st.tabs_open++; /* tab_drop counts it out, on any path */
        pthread_mutex_unlock(&c->mu);
        if ((rc = par_cdp_call(cdp, NULL, "Target.createBrowserContext", NULL,
                               to, &r, err)))
                goto fail;
        snprintf(t->context_id, sizeof(t->context_id), "%s",
                 json_string_value(json_object_get(r, "browserContextId")));
        json_decref(r);
        r = NULL;
        if ((rc =
                 par_cdp_call_take(cdp, NULL, "Target.createTarget",
                                   json_pack("{s:s,s:s}", "url", "about:blank",
                                             "browserContextId", t->context_id),
                                   to, &r, err)))
                goto fail;
        snprintf(t->target_id, sizeof(t->target_id), "%s",
                 json_string_value(json_object_get(r, "targetId")));
        json_decref(r);
        r = NULL;
        if ((rc = par_cdp_call_take(
                 cdp, NULL, "Target.attachToTarget",
                 json_pack("{s:s,s:b}", "targetId", t->target_id, "flatten", 1),
                 to, &r, err)))
                goto fail;
        snprintf(t->session_id, sizeof(t->session_id), "%s",
                 json_string_value(json_object_get(r, "sessionId")));
        json_decref(r);
        r = NULL;
        if ((rc = par_cdp_call(cdp, t->session_id, "Page.enable", NULL, to,
                               NULL, err)) ||
            (rc = par_cdp_call_take(
                 cdp, t->session_id, "Page.setLifecycleEventsEnabled",
                 json_pack("{s:b}", "enabled", 1), to, NULL, err)) ||
            (rc = par_cdp_call(cdp, t->session_id, "Runtime.enable", NULL, to,
                               NULL, err)))
                goto fail;
        pthread_mutex_lock(&c->mu);
        c->st.tabs_created++;
        pthread_mutex_unlock(&c->mu);
        *out = t;
        return PAR_OK;
fail:
        json_decref(r);
        par_error_prefix(err, "chrome: new context");
        pthread_mutex_lock(&c->mu);
        in->refs++; /* tab_drop drops one; the caller keeps its own */
        pthread_mutex_unlock(&c->mu);
        tab_drop(c, t);
        return rc;
}

/* chrome->mu held: is the instance fit to hand out tabs of? */
static bool inst_usable_locked(struct inst *in)
{
        return in && !in->dead && !in->recycle && par_cdp_connected(in->cdp);
}

/* ---- the stager thread -------------------------------------------------
 *
 * One pass: queue stale stock (its browser died, was replaced or is due
 * for recycling) and idle resource contexts for disposal; then dispose of
 * one tab and prepare one context, each outside the lock. Alternating keeps
 * both queues moving under load; a preparation failure (a browser going
 * away) pauses that slot's preparation briefly instead of spinning.
 */
static void *stager_main(void *arg)
{
        par_chrome_t *c = arg;
        int rr = 0; /* round robin over slots */

        pthread_mutex_lock(&c->mu);
        while (!c->stage_stop) {
                double now = par_clock_mono_s();
                par_tab_t *drop = NULL, *made = NULL;
                struct slot *fill = NULL;
                struct inst *in = NULL;
                par_error_t e;

                for (int i = 0; i < c->nslots; i++) {
                        struct slot *s = &c->slots[i];
                        par_tab_t **pp = &s->stock;
                        while (*pp) {
                                par_tab_t *t = *pp;
                                if (t->inst == s->inst &&
                                    inst_usable_locked(t->inst) &&
                                    !par_cdp_session_dead(t->inst->cdp,
                                                          t->session_id)) {
                                        pp = &t->next;
                                        continue;
                                }
                                *pp = t->next;
                                s->nstock--;
                                trash_locked(c, t);
                        }
                }
                for (struct rctx *r = c->lru, *nx; r; r = nx) {
                        nx = r->next;
                        if (r->busy)
                                continue;
                        if (now - r->last_used >
                                c->o.resource_idle_ms / 1000.0 ||
                            !inst_usable_locked(r->tab->inst)) {
                                c->st.resource_evicted++;
                                rctx_evict_locked(c, r);
                        }
                }
                if (c->trash) {
                        drop = c->trash;
                        c->trash = drop->next;
                        c->disposing++;
                }
                for (int k = 0; k < c->nslots && !fill; k++) {
                        struct slot *s = &c->slots[(rr + k) % c->nslots];
                        if (s->wanted && inst_usable_locked(s->inst) &&
                            s->nstock + s->preparing < s->stock_target &&
                            now >= s->stock_pause) {
                                fill = s;
                                in = s->inst;
                                in->refs++;
                                s->preparing++;
                                rr = (rr + k + 1) % c->nslots;
                        }
                }
                if (!drop && !fill) {
                        struct timespec dl;
                        clock_gettime(CLOCK_MONOTONIC, &dl);
                        dl.tv_sec += 1;
                        pthread_cond_timedwait(&c->stage_cond, &c->mu, &dl);
                        continue;
                }
                pthread_mutex_unlock(&c->mu);
                if (drop) {
                        double t0 = par_clock_mono_s();
                        tab_drop(c, drop);
                        par_log(PAR_LOG_DEBUG, "chrome", "disposed", "ms=%.0f",
                                (par_clock_mono_s() - t0) * 1000);
                }
                double t1 = par_clock_mono_s();
                if (fill && tab_create(c, in, &made, &e)) {
                        par_log(PAR_LOG_DEBUG, "chrome", "prepare_failed",
                                "slot=%d error=\"%s\"", fill->index, e.msg);
                        inst_unref(c, in);
                        made = NULL;
                }
                if (fill)
                        par_log(PAR_LOG_DEBUG, "chrome", "prepared", "ms=%.0f",
                                (par_clock_mono_s() - t1) * 1000);
                pthread_mutex_lock(&c->mu);
                if (drop)
                        c->disposing--;
                if (fill) {
                        fill->preparing--;
                        if (!made)
                                fill->stock_pause = par_clock_mono_s() + 0.2;
                        else if (made->inst != fill->inst) {
                                trash_locked(c, made);
                        } else {
                                made->next = fill->stock;
                                fill->stock = made;
                                fill->nstock++;
                        }
                }
        }
        pthread_mutex_unlock(&c->mu);
        return NULL;
}

/* Undoes the in_use count of an acquire (chrome->mu held). */
static void inst_done_locked(par_chrome_t *c, struct inst *in)
{
        if (--in->in_use == 0 && in->recycle)
                pthread_cond_signal(&c->sup_cond); /* recycle it now */
}

static void inst_done(par_chrome_t *c, struct inst *in)
{
        pthread_mutex_lock(&c->mu);
        inst_done_locked(c, in);
        pthread_mutex_unlock(&c->mu);
}

/*
 * A clean context for worker: from its slot's stock, or made now. The
 * returned tab's instance counts it in_use.
 */
static par_err_t clean_tab(par_chrome_t *c, int worker, par_tab_t **out,
                           par_error_t *err)
{
        struct slot *s = slot_of(c, worker);
        struct inst *in = NULL;
        par_tab_t *t = NULL, **pp;
        par_err_t rc;

        if ((rc = slot_get(c, s, &in, err)))
                return rc;
        pthread_mutex_lock(&c->mu);
        for (pp = &s->stock; *pp; pp = &(*pp)->next) {
                if ((*pp)->inst == in &&
                    !par_cdp_session_dead(in->cdp, (*pp)->session_id)) {
                        t = *pp;
                        *pp = t->next;
                        t->next = NULL;
                        s->nstock--;
                        break;
                }
        }
        if (t) {
                c->st.contexts_ready++;
                in->refs--; /* the stocked tab holds its own reference */
        } else {
                c->st.contexts_missed++;
        }
        pthread_cond_signal(&c->stage_cond); /* restock */
        pthread_mutex_unlock(&c->mu);
        if (!t && (rc = tab_create(c, in, &t, err))) {
                /* A broken browser is noticed by the next health check. */
                inst_done(c, in);
                inst_unref(c, in);
                return rc;
        }
        *out = t;
        return PAR_OK;
}

/* Resource scope: the resource's tab, or a clean one made its own. */
static par_err_t resource_tab(par_chrome_t *c, int worker, const char *key,
                              par_tab_t **out, par_error_t *err)
{
        struct timespec dl;
        struct rctx *e;
        par_tab_t *t = NULL;
        par_err_t rc;

        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += c->o.call_timeout_ms / 1000 + 1;
        pthread_mutex_lock(&c->mu);
        for (;;) {
                e = rctx_find(c, key);
                if (!e || !e->busy)
                        break;
                if (c->stop || c->stage_stop) {
                        pthread_mutex_unlock(&c->mu);
                        return par_error_set(err, PAR_ERR_CANCELLED,
                                             "chrome: shutting down");
                }
                if (pthread_cond_timedwait(&c->cond, &c->mu, &dl) ==
                    ETIMEDOUT) {
                        pthread_mutex_unlock(&c->mu);
                        return par_error_set(err, PAR_ERR_TIMEOUT,
                                             "chrome: resource context held "
                                             "by another worker for %d ms",
                                             c->o.call_timeout_ms);
                }
        }
        if (e && inst_usable_locked(e->tab->inst) &&
            !par_cdp_session_dead(e->tab->inst->cdp, e->tab->session_id)) {
                struct inst *in = e->tab->inst;
                par_error_t he;
                int to = c->o.call_timeout_ms < HEALTH_TIMEOUT_MS
                             ? c->o.call_timeout_ms
                             : HEALTH_TIMEOUT_MS;

                e->busy = true;
                in->in_use++;
                rctx_unlink(c, e);
                rctx_push_mru(c, e);
                pthread_mutex_unlock(&c->mu);
                if (!par_cdp_call_take(
                        in->cdp, e->tab->session_id, "Runtime.evaluate",
                        json_pack("{s:s}", "expression", "1"), to, NULL, &he)) {
                        pthread_mutex_lock(&c->mu);
                        c->st.resource_hits++;
                        pthread_mutex_unlock(&c->mu);
                        e->tab->fresh = false;
                        *out = e->tab;
                        return PAR_OK;
                }
                par_log(PAR_LOG_WARN, "chrome", "tab_unhealthy",
                        "worker=%d error=\"%s\"", worker, he.msg);
                pthread_mutex_lock(&c->mu);
                inst_done_locked(c, in);
                c->st.tabs_replaced++;
                e->busy = false;
                rctx_evict_locked(c, e);
                e = NULL;
        } else if (e) {
                rctx_evict_locked(c, e);
                e = NULL;
        }
        /* A placeholder entry, busy, so a second acquire of the same
         * resource waits for this one instead of making a twin. */
        e = calloc(1, sizeof(*e));
        if (!e || !(e->key = strdup(key))) {
                free(e);
                pthread_mutex_unlock(&c->mu);
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        }
        e->busy = true;
        rctx_push_mru(c, e);
        c->st.resource_misses++;
        pthread_mutex_unlock(&c->mu);

        rc = clean_tab(c, worker, &t, err);

        pthread_mutex_lock(&c->mu);
        if (rc) {
                rctx_unlink(c, e);
                free(e->key);
                free(e);
        } else {
                e->tab = t;
                t->res = e;
                t->scope = PAR_STATE_RESOURCE;
                t->fresh = true;
                /* Over the bound: drop the least recently used idle ones. */
                for (struct rctx *r = c->lru, *nx;
                     r && c->nres > c->o.resource_contexts; r = nx) {
                        nx = r->next;
                        if (!r->busy) {
                                c->st.resource_evicted++;
                                rctx_evict_locked(c, r);
                        }
                }
                *out = t;
        }
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
        return rc;
}

par_err_t par_chrome_tab_acquire_scoped(par_chrome_t *c, int worker,
                                        par_state_scope_t scope,
                                        const char *resource, par_tab_t **out,
                                        par_error_t *err)
{
        par_tab_t *t = NULL;
        struct inst *in;
        bool held;
        par_err_t rc;

        if (!c || worker < 0 || worker >= c->nworkers)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "chrome: worker %d out of range 0..%d",
                                     worker, c ? c->nworkers - 1 : -1);
        pthread_mutex_lock(&c->mu);
        held = c->tabs[worker] != NULL;
        pthread_mutex_unlock(&c->mu);
        if (held)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "chrome: worker %d already holds a tab",
                                     worker);
        if (scope == PAR_STATE_DEFAULT)
                scope = c->o.scope;
        if (scope == PAR_STATE_RESOURCE && resource && *resource)
                rc = resource_tab(c, worker, resource, &t, err);
        else
                rc = clean_tab(c, worker, &t, err);
        if (rc)
                return rc;
        in = t->inst;
        pthread_mutex_lock(&c->mu);
        c->tabs[worker] = t;
        c->st.spins++;
        if (++in->spins >= c->o.recycle_after && c->o.recycle_after > 0 &&
            !in->recycle) {
                in->recycle = true;
                in->recycle_at = par_clock_mono_s();
        }
        pthread_mutex_unlock(&c->mu);
        t->worker = worker;
        t->acquired = true;
        *out = t;
        return PAR_OK;
}

par_err_t par_chrome_tab_acquire(par_chrome_t *c, int worker, par_tab_t **out,
                                 par_error_t *err)
{
        return par_chrome_tab_acquire_scoped(c, worker, PAR_STATE_DEFAULT, NULL,
                                             out, err);
}

void par_chrome_tab_release(par_chrome_t *c, par_tab_t *t, bool broken)
{
        struct inst *in;
        bool dead;

        if (!c || !t)
                return;
        in = t->inst;
        dead = broken || par_cdp_session_dead(in->cdp, t->session_id);
        pthread_mutex_lock(&c->mu);
        if (t->worker >= 0 && t->worker < c->nworkers &&
            c->tabs[t->worker] == t)
                c->tabs[t->worker] = NULL;
        t->acquired = false;
        if (dead)
                c->st.tabs_replaced++;
        if (t->res && !dead && !t->res->doomed) {
                t->res->busy = false;
                t->res->last_used = par_clock_mono_s();
        } else if (t->res) {
                t->res->busy = false;
                rctx_evict_locked(c, t->res); /* queues t */
        } else {
                trash_locked(c, t);
        }
        inst_done_locked(c, in);
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
}

bool par_chrome_resource_drop(par_chrome_t *c, const char *resource)
{
        struct rctx *e;

        if (!c || !resource)
                return false;
        pthread_mutex_lock(&c->mu);
        e = rctx_find(c, resource);
        if (e && e->busy)
                e->doomed = true; /* its release disposes of it */
        else if (e)
                rctx_evict_locked(c, e);
        pthread_mutex_unlock(&c->mu);
        return e != NULL;
}

bool par_chrome_stocked(par_chrome_t *c)
{
        bool ok;

        pthread_mutex_lock(&c->mu);
        ok = !c->trash && !c->disposing;
        for (int i = 0; ok && i < c->nslots; i++) {
                struct slot *s = &c->slots[i];
                if (s->wanted && s->nstock < s->stock_target)
                        ok = false;
        }
        pthread_mutex_unlock(&c->mu);
        return ok;
}

par_state_scope_t par_tab_scope(par_tab_t *t)
{
        return t->scope;
}

bool par_tab_fresh(par_tab_t *t)
{
        return t->fresh;
}

const char *par_tab_resource(par_tab_t *t)
{
        return t->res ? t->res->key : "";
}

json_t *par_tab_saved_state(par_tab_t *t)
{
        return t->saved;
}

void par_tab_set_saved_state(par_tab_t *t, json_t *state)
{
        json_t *old = t->saved;

        t->saved = state ? json_incref(state) : NULL;
        json_decref(old);
}

par_cdp_t *par_tab_cdp(par_tab_t *t)
{
        return t->inst->cdp;
}

const char *par_tab_session_id(par_tab_t *t)
{
        return t->session_id;
}

const char *par_tab_target_id(par_tab_t *t)
{
        return t->target_id;
}

const char *par_tab_context_id(par_tab_t *t)
{
        return t->context_id;
}

int par_tab_worker(par_tab_t *t)
{
        return t->worker;
}

pid_t par_tab_browser_pid(par_tab_t *t)
{
        return t->inst->pid;
}

par_err_t par_tab_call(par_tab_t *t, const char *method, json_t *params,
                       int timeout_ms, json_t **result, par_error_t *err)
{
        return par_cdp_call(t->inst->cdp, t->session_id, method, params,
                            timeout_ms > 0 ? timeout_ms
                                           : t->chrome->o.call_timeout_ms,
                            result, err);
}

par_err_t par_tab_waiter_new(par_tab_t *t, const char *const *methods,
                             par_cdp_waiter_t **out, par_error_t *err)
{
        return par_cdp_waiter_new(out, t->inst->cdp, t->session_id, methods,
                                  err);
}

void par_chrome_stats(par_chrome_t *c, par_chrome_stats_t *out)
{
        pthread_mutex_lock(&c->mu);
        *out = c->st;
        pthread_mutex_unlock(&c->mu);
}

pid_t par_chrome_browser_pgid(par_chrome_t *c, int worker)
{
        struct slot *s;
        pid_t pid = -1;

        if (!c || worker < 0 || worker >= c->nworkers)
                return -1;
        s = slot_of(c, worker);
        pthread_mutex_lock(&c->mu);
        if (s->inst && !s->inst->dead)
                pid = s->inst->pid;
        pthread_mutex_unlock(&c->mu);
        return pid;
}
