/*
 * bench-producer — how fast parallel-producer moves signals from MongoDB
 * to Kafka on this machine. A program that prints numbers, not a test.
 *
 *   bench-producer [N] [BULK]     (defaults 20000 signals, bulks of 1000)
 *
 * Needs the local stack (deploy/dev/stack up) and PARALLEL_BINARY_DIR (the
 * build directory holding parallel-producer; default "."). It creates a
 * private database and topic prefix (topics stamped with LogAppendTime),
 * starts the producer, waits until it follows the change stream, then
 * inserts N valid signals as fast as the server accepts bulk inserts, and
 * reads them all back from Kafka. Reports:
 *   insert rate       N / time to insert them all;
 *   produce rate      N / (last − first broker append time);
 *   insert→ack lag    broker append time − the signal's created_at (set
 *                     just before its bulk insert), p50 / p99 / max;
 *   producer CPU      utime+stime of the producer process (from
 *                     /proc/<pid>/stat) over the run, per 10k signals.
 */
#include "base/clock.h"
#include "obs/metrics.h"
#include "stack_util.h"

static double cpu_seconds(pid_t pid)
{
        char path[64], buf[2048], *s;
        unsigned long ut = 0, st = 0;
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        f = fopen(path, "r");
        if (!f)
                return -1;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* Fields after the ")" that ends comm: state is field 3, utime 14,
         * stime 15. */
        s = strrchr(buf, ')');
        if (!s ||
            sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                   &ut, &st) != 2)
                return -1;
        return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

int main(int argc, char **argv)
{
        size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
        size_t bulk = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000;
        su_ctx_t ctx;
        su_ledger_t l;
        su_reader_t r = {0};
        su_proc_t p;
        par_hist_t *lag = NULL;
        double t0, t_ins, cpu0, cpu1;
        int64_t first_ts = INT64_MAX, last_ts = 0;
        size_t got = 0;
        int rc = 1;

        (void)tu_failures; /* testutil.h comes with stack_util.h */
        (void)tu_checks;
        if (!n || !bulk) {
                fprintf(stderr, "usage: bench-producer [N] [BULK]\n");
                return 2;
        }
        if (su_init_ex(&ctx, "bench", 1)) {
                fprintf(stderr, "bench-producer: the stack is not reachable "
                                "(deploy/dev/stack up)\n");
                return 1;
        }
        if (su_ledger_init(&l, n, 200) || par_hist_new(&lag, NULL) ||
            su_producer_start(&ctx, &p, "bench", NULL) ||
            su_wait_log(&p, "event=pipeline.started", 30)) {
                fprintf(stderr,
                        "bench-producer: could not start the "
                        "producer (log %s)\n",
                        p.log);
                goto out;
        }
        par_clock_sleep_ms(500);
        cpu0 = cpu_seconds(p.pid);
        t0 = par_clock_mono_s();
        if (su_insert(ctx.signals, &l, n, 200, bulk, 0) != n)
                goto out;
        t_ins = par_clock_mono_s() - t0;

        /* Read everything back; lag = broker append time − created_at. */
        if (su_reader_new(&ctx, &r, 0))
                goto out;
        while (got < n && par_clock_mono_s() - t0 < 600) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(r.rk, 500);
                rd_kafka_timestamp_type_t tt;
                json_t *v = NULL;
                int64_t ts;

                if (!m)
                        continue;
                ts = rd_kafka_message_timestamp(m, &tt);
                if (!m->err &&
                    !par_codec_decode(ctx.codec, m->payload, m->len,
                                      PAR_SCHEMA_SIGNAL, &v, NULL, NULL)) {
                        su_entry_t *e = su_ledger_find(
                            &l, json_string_value(json_object_get(v, "id")));
                        int64_t created = json_integer_value(
                            json_object_get(v, "created_at"));
                        if (e && !e->seen++) {
                                got++;
                                if (ts - created >= 0)
                                        par_hist_record(
                                            lag, (uint64_t)(ts - created));
                                if (ts < first_ts)
                                        first_ts = ts;
                                if (ts > last_ts)
                                        last_ts = ts;
                        }
                        json_decref(v);
                }
                rd_kafka_message_destroy(m);
        }
        cpu1 = cpu_seconds(p.pid);
        printf("signals          %zu (bulk inserts of %zu)\n", n, bulk);
        printf("read back        %zu\n", got);
        printf("insert rate      %.0f signals/s (%.2f s)\n", n / t_ins, t_ins);
        if (last_ts > first_ts)
                printf("produce rate     %.0f signals/s (broker append "
                       "times span %.2f s)\n",
                       got / ((last_ts - first_ts) / 1000.0),
                       (last_ts - first_ts) / 1000.0);
        printf("insert->ack lag  p50 %llu ms, p99 %llu ms, max %llu ms\n",
               (unsigned long long)par_hist_percentile(lag, 0.5),
               (unsigned long long)par_hist_percentile(lag, 0.99),
               (unsigned long long)par_hist_max(lag));
        printf("producer CPU     %.2f s total, %.2f s per 10k signals\n",
               cpu1 - cpu0, (cpu1 - cpu0) * 10000.0 / (double)n);
        rc = got == n ? 0 : 1;
out:
        su_producer_stop(&p, SIGTERM, 30);
        su_reader_destroy(&r);
        par_hist_destroy(lag);
        su_ledger_free(&l);
        su_cleanup(&ctx);
        return rc;
}
