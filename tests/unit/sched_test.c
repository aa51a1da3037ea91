/*
 * sched_test.c — the priority scheduler: ordering, resource exclusivity and
 * order, ageing, watermarks, revoke, defer and the blocking next().
 */
#include "base/clock.h"
#include "scheduler.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "testutil.h"

static int freed;
static void count_free(void *p)
{
        (void)p;
        freed++;
}

static par_sched_t *mk(int levels, int64_t aging, int hi, int lo)
{
        par_sched_t *s = NULL;
        par_sched_opts_t o = {.levels = levels,
                              .aging_ms = aging,
                              .high_watermark = hi,
                              .low_watermark = lo,
                              .free_payload = count_free};
        par_error_t e;
        if (par_sched_new(&s, &o, &e))
                fprintf(stderr, "sched_new: %s\n", e.msg);
        return s;
}

static void push(par_sched_t *s, int level, int32_t part, int64_t off,
                 const char *res, int64_t t)
{
        par_sched_job_t j = {.level = level,
                             .partition = part,
                             .offset = off,
                             .resource = res,
                             .payload = (void *)(intptr_t)(off + 1),
                             .enqueued_ms = t};
        par_error_t e;
        CHECKF(par_sched_push(s, &j, &e) == PAR_OK, "%s", e.msg);
}

/* Takes the next job at `now`, returns its offset (-1 if none) and finishes
 * it unless keep is set. */
static int64_t take(par_sched_t *s, int64_t now, bool keep,
                    par_sched_job_t **out)
{
        par_sched_job_t *j = par_sched_try_next(s, now);
        if (!j)
                return -1;
        int64_t off = j->offset;
        if (out)
                *out = j;
        if (!keep)
                par_sched_done(s, j);
        return off;
}

static void test_priority_order(void)
{
        par_sched_t *s = mk(4, 0, 0, 0);
        REQUIRE(s);
        push(s, 1, 0, 10, NULL, 1);
        push(s, 1, 0, 11, NULL, 2);
        push(s, 3, 0, 30, NULL, 3);
        push(s, 4, 0, 40, NULL, 4);
        push(s, 2, 0, 20, NULL, 5);
        push(s, 4, 1, 41, NULL, 6);
        int64_t want[] = {40, 41, 30, 20, 10, 11, -1};
        for (size_t i = 0; i < sizeof(want) / sizeof(*want); i++)
                CHECKF(take(s, 100, false, NULL) == want[i], "step %zu", i);
        CHECK(par_sched_depth(s, 0) == 0);
        CHECK(par_sched_running(s) == 0);
        par_error_t e;
        par_sched_job_t bad = {.level = 5};
        CHECK(par_sched_push(s, &bad, &e) == PAR_ERR_INVALID);
        bad.level = 0;
        CHECK(par_sched_push(s, &bad, &e) == PAR_ERR_INVALID);
        par_sched_destroy(s);
}

static void test_resource_exclusive_and_ordered(void)
{
        par_sched_t *s = mk(4, 0, 0, 0);
        par_sched_job_t *a = NULL, *b = NULL;
        REQUIRE(s);
        push(s, 1, 0, 1, "r", 1);
        push(s, 4, 1, 2, "r", 2); /* same resource, more urgent, later */
        push(s, 2, 2, 3, "other", 3);
        push(s, 1, 0, 4, NULL, 4);

        /* The p4 job cannot overtake the older p1 job of its resource, but
         * it lends its urgency to it: the p1 job goes first. */
        CHECK(take(s, 10, true, &a) == 1);
        /* r is busy: neither r job runs; others do, in priority order. */
        CHECK(take(s, 10, false, NULL) == 3);
        CHECK(take(s, 10, false, NULL) == 4);
        CHECK(take(s, 10, false, NULL) == -1);
        par_sched_done(s, a);
        CHECK(take(s, 10, true, &b) == 2);
        CHECK(take(s, 10, false, NULL) == -1);
        par_sched_done(s, b);

        /* Many resources interleaved: per resource FIFO, never two at once. */
        for (int i = 0; i < 30; i++)
                push(s, 1 + i % 4, i % 3, 100 + i, i % 2 ? "x" : "y", 20 + i);
        int64_t last_x = -1, last_y = -1;
        int n = 0;
        while (n < 30) {
                par_sched_job_t *j1 = par_sched_try_next(s, 1000);
                par_sched_job_t *j2 = par_sched_try_next(s, 1000);
                REQUIRE(j1 && j2);
                CHECK(par_sched_try_next(s, 1000) == NULL);
                CHECK(strcmp(j1->resource, j2->resource) != 0);
                par_sched_job_t *js[2] = {j1, j2};
                for (int k = 0; k < 2; k++) {
                        int64_t *last =
                            !strcmp(js[k]->resource, "x") ? &last_x : &last_y;
                        CHECK(js[k]->offset > *last);
                        *last = js[k]->offset;
                }
                par_sched_done(s, j1);
                par_sched_done(s, j2);
                n += 2;
        }
        CHECK(par_sched_depth(s, 0) == 0);
        par_sched_destroy(s);
}

static void test_aging(void)
{
        const int64_t B = 1000; /* enqueued_ms 0 means "now" */
        par_sched_t *s = mk(4, 100, 0, 0);
        REQUIRE(s);
        push(s, 1, 0, 1, NULL, B);       /* p1 queued at B */
        push(s, 3, 0, 3, NULL, B + 250); /* p3 queued at B+250 */
        /* At B+260 the p1 job has aged 2 levels (=3): tie with p3, the older
         * one wins. */
        CHECK(take(s, B + 260, false, NULL) == 1);
        push(s, 1, 0, 5, NULL, B + 300);
        push(s, 2, 0, 6, NULL, B + 300);
        /* p3 (since B+250) beats p1 and p2 (since B+300) at B+320. */
        CHECK(take(s, B + 320, false, NULL) == 3);
        /* At B+350: p1 aged 0 → 1, p2 → 2: p2 first. */
        CHECK(take(s, B + 350, false, NULL) == 6);
        CHECK(take(s, B + 350, false, NULL) == 5);
        /* Ageing past the top level: a p1 job waiting 5 periods beats a
         * fresh p4 job. */
        push(s, 1, 0, 7, NULL, B);
        push(s, 4, 0, 8, NULL, B + 500);
        CHECK(take(s, B + 500, false, NULL) == 7);
        CHECK(take(s, B + 500, false, NULL) == 8);

        /* Without ageing a p1 job never beats a p4 job however long it
         * waited. */
        par_sched_t *s2 = mk(4, 0, 0, 0);
        REQUIRE(s2);
        push(s2, 1, 0, 1, NULL, B);
        push(s2, 4, 0, 4, NULL, B + 1000000);
        CHECK(take(s2, B + 2000000, false, NULL) == 4);
        par_sched_destroy(s2);
        par_sched_destroy(s);
}

static void test_watermarks(void)
{
        par_sched_t *s = mk(4, 0, 3, 1);
        uint32_t pause, resume;
        REQUIRE(s);
        CHECK(!par_sched_take_flow(s, &pause, &resume));
        push(s, 2, 0, 1, NULL, 1);
        push(s, 2, 0, 2, NULL, 2);
        CHECK(!par_sched_take_flow(s, &pause, &resume));
        push(s, 2, 0, 3, NULL, 3);
        push(s, 4, 0, 9, NULL, 3);
        CHECK(par_sched_take_flow(s, &pause, &resume));
        CHECK(pause == (1u << 1) && resume == 0);
        CHECK(!par_sched_take_flow(s, &pause, &resume)); /* reported once */
        push(s, 2, 0, 4, NULL, 4);
        CHECK(!par_sched_take_flow(s, &pause, &resume));
        CHECK(take(s, 10, false, NULL) == 9);
        CHECK(take(s, 10, false, NULL) == 1); /* depth 3: still paused */
        CHECK(take(s, 10, false, NULL) == 2); /* depth 2 */
        CHECK(!par_sched_take_flow(s, &pause, &resume));
        CHECK(take(s, 10, false, NULL) == 3); /* depth 1 = low */
        CHECK(par_sched_take_flow(s, &pause, &resume));
        CHECK(pause == 0 && resume == (1u << 1));
        /* Paused and resumed again between two calls: nothing to report. */
        push(s, 2, 0, 5, NULL, 5);
        push(s, 2, 0, 6, NULL, 6);
        CHECK(take(s, 10, false, NULL) == 4);
        CHECK(take(s, 10, false, NULL) == 5);
        CHECK(!par_sched_take_flow(s, &pause, &resume));
        par_sched_opts_t bad = {
            .levels = 4, .high_watermark = 2, .low_watermark = 2};
        par_sched_t *x = NULL;
        par_error_t e;
        CHECK(par_sched_new(&x, &bad, &e) == PAR_ERR_INVALID && !x);
        bad.levels = 33;
        bad.high_watermark = 0;
        CHECK(par_sched_new(&x, &bad, &e) == PAR_ERR_INVALID && !x);
        par_sched_destroy(s);
}

static void test_revoke(void)
{
        par_sched_t *s = mk(4, 0, 0, 0);
        par_sched_job_t *run = NULL;
        REQUIRE(s);
        freed = 0;
        push(s, 2, 0, 1, "r", 1);
        push(s, 2, 1, 2, "r", 2);
        push(s, 2, 0, 3, NULL, 3);
        push(s, 3, 0, 4, NULL, 4); /* other level, same partition number */
        CHECK(take(s, 10, true, &run) == 4);
        /* Revoke level 2 partition 0: offsets 1 and 3 go; the job on level
         * 2 partition 1 (resource r) becomes the head of r and runnable. */
        CHECK(par_sched_revoke(s, 2, 0) == 2);
        CHECK(freed == 2);
        CHECK(par_sched_depth(s, 2) == 1);
        CHECK(take(s, 10, false, NULL) == 2);
        CHECK(take(s, 10, false, NULL) == -1);
        /* A handed-out job survives a revoke of its partition, and counts
         * as running there (only there) until done. */
        CHECK(par_sched_revoke(s, 3, 0) == 0);
        CHECK(run->offset == 4);
        CHECK(par_sched_running_in(s, 3, 0) == 1);
        CHECK(par_sched_running_in(s, 2, 0) == 0);
        CHECK(par_sched_running_in(s, 3, 1) == 0);
        par_sched_done(s, run);
        CHECK(par_sched_running_in(s, 3, 0) == 0);
        push(s, 1, 5, 7, NULL, 5);
        push(s, 4, 5, 8, NULL, 5);
        CHECK(par_sched_clear(s) == 2);
        CHECK(freed == 4);
        push(s, 1, 5, 9, NULL, 6);
        par_sched_destroy(s); /* frees the queued job */
        CHECK(freed == 5);
}

static void test_defer(void)
{
        par_sched_t *s = mk(4, 0, 0, 0);
        par_sched_job_t *j = NULL;
        REQUIRE(s);
        push(s, 2, 0, 1, "r", 1);
        push(s, 2, 0, 2, "r", 2);
        push(s, 1, 0, 3, NULL, 3);
        CHECK(take(s, 10, true, &j) == 1);
        CHECK(par_sched_running_in(s, 2, 0) == 1);
        par_sched_defer(s, j, 100);
        CHECK(par_sched_running_in(s, 2, 0) == 0); /* queued again */
        CHECK(j->attempt == 1);
        /* Until 100, offset 1 waits and offset 2 must not overtake it. */
        CHECK(take(s, 50, false, NULL) == 3);
        CHECK(take(s, 50, false, NULL) == -1);
        CHECK(take(s, 100, false, NULL) == 1);
        CHECK(take(s, 100, false, NULL) == 2);
        par_sched_destroy(s);
}

/* Taken to be claimed ahead and put back unrun: runnable at once, in its
 * place ahead of younger jobs of its resource and level, no attempt
 * counted. */
static void test_put_back(void)
{
        par_sched_t *s = mk(4, 0, 0, 0);
        par_sched_job_t *a = NULL, *b = NULL;
        REQUIRE(s);
        push(s, 2, 0, 1, "r", 1);
        push(s, 2, 0, 2, "r", 2);
        push(s, 2, 0, 3, NULL, 3);
        CHECK(take(s, 10, true, &a) == 1);
        CHECK(take(s, 10, true, &b) == 3); /* 2 waits for its resource */
        par_sched_put_back(s, b);
        par_sched_put_back(s, a);
        CHECK(a->attempt == 0 && b->attempt == 0);
        CHECK(par_sched_running(s) == 0 && par_sched_depth(s, 2) == 3);
        CHECK(take(s, 10, false, NULL) == 1);
        CHECK(take(s, 10, false, NULL) == 2);
        CHECK(take(s, 10, false, NULL) == 3);
        par_sched_destroy(s);
}

/* Blocking next(): a waiter wakes on push, on a resource being released and
 * on close; many threads never run one resource twice at once. */
typedef struct {
        par_sched_t *s;
        atomic_int busy[8];
        atomic_int overlap, done;
        int64_t last[8];
        atomic_int disorder;
} mt_t;

static void *worker(void *arg)
{
        mt_t *m = arg;
        for (;;) {
                par_sched_job_t *j = par_sched_next(m->s, 2000);
                if (!j)
                        return NULL;
                int r = j->resource[0] - 'a';
                if (atomic_fetch_add(&m->busy[r], 1) != 0)
                        atomic_fetch_add(&m->overlap, 1);
                if (j->offset <= m->last[r])
                        atomic_fetch_add(&m->disorder, 1);
                m->last[r] = j->offset;
                usleep(200);
                atomic_fetch_sub(&m->busy[r], 1);
                par_sched_done(m->s, j);
                atomic_fetch_add(&m->done, 1);
        }
}

static void test_threads(void)
{
        static mt_t m;
        pthread_t th[6];
        m.s = mk(4, 50, 0, 0);
        REQUIRE(m.s);
        for (int r = 0; r < 8; r++)
                m.last[r] = -1;

        double t0 = par_clock_mono_s();
        CHECK(par_sched_next(m.s, 100) == NULL); /* times out */
        double waited = par_clock_mono_s() - t0;
        CHECKF(waited >= 0.09 && waited < 1.0, "waited %.3f", waited);

        for (int i = 0; i < 6; i++)
                pthread_create(&th[i], NULL, worker, &m);
        for (int i = 0; i < 2000; i++) {
                char res[2] = {(char)('a' + i % 8), 0};
                push(m.s, 1 + (i * 7) % 4, 0, i, res, 0);
        }
        double deadline = par_clock_mono_s() + 30;
        while (atomic_load(&m.done) < 2000 && par_clock_mono_s() < deadline)
                usleep(10000);
        par_sched_close(m.s);
        for (int i = 0; i < 6; i++)
                pthread_join(th[i], NULL);
        CHECK(atomic_load(&m.done) == 2000);
        CHECK(atomic_load(&m.overlap) == 0);
        CHECK(atomic_load(&m.disorder) == 0);
        CHECK(par_sched_running(m.s) == 0);
        par_sched_destroy(m.s);
}

TEST_MAIN(test_put_back, test_priority_order,
          test_resource_exclusive_and_ordered, test_aging, test_watermarks,
          test_revoke, test_defer, test_threads)
