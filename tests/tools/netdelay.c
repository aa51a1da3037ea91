/*
 * netdelay.c — netdelay: latency and loss for the namespace cluster on
 * kernels without sch_netem (deploy/cluster/cluster netem falls back to it).
 *
 *   netdelay QUEUE DELAY_MS LOSS_PERCENT
 *
 * Takes the packets an nftables rule sends to NFQUEUE QUEUE (the cluster's
 * switch namespace queues every frame its bridge forwards), holds each one
 * DELAY_MS after it arrived and then accepts it, or drops it with
 * probability LOSS_PERCENT (a float, e.g. 1 or 0.5). The delay is the same
 * for every packet, so a FIFO keeps them due in order and one timer (the
 * poll timeout) serves them all. Runs until SIGTERM/SIGINT; packets still
 * held then are accepted, and a queue that overflows lets packets through
 * undelayed (fail-open) rather than stalling the cluster.
 *
 * Why a program: netem is the usual tool, but some kernels (this project's
 * CI VMs) ship without it while nftables and NFQUEUE are there.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"

#define RING (1u << 16)

static volatile sig_atomic_t stop;
static uint32_t ids[RING];
static int64_t due[RING];
static unsigned head, tail; /* held packets: ids[tail..head) */
static int64_t delay_ms;
static double loss;

static void on_signal(int sig)
{
        (void)sig;
        stop = 1;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg,
                     struct nfq_data *nfa, void *data)
{
        (void)msg;
        (void)data;
        struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
        if (!ph)
                return 0;
        uint32_t id = ntohl(ph->packet_id);
        if (head - tail >= RING) /* full: let it through now */
                return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
        ids[head % RING] = id;
        due[head % RING] = par_clock_mono_ms() + delay_ms;
        head++;
        return 0;
}

static void release_due(struct nfq_q_handle *qh, bool all)
{
        int64_t t = par_clock_mono_ms();
        while (tail != head && (all || due[tail % RING] <= t)) {
                bool drop = !all && loss > 0 &&
                            (double)rand() / RAND_MAX * 100.0 < loss;
                nfq_set_verdict(qh, ids[tail % RING],
                                drop ? NF_DROP : NF_ACCEPT, 0, NULL);
                tail++;
        }
}

int main(int argc, char **argv)
{
        if (argc != 4) {
                fprintf(stderr, "usage: %s QUEUE DELAY_MS LOSS_PERCENT\n",
                        argv[0]);
                return 2;
        }
        int queue = atoi(argv[1]);
        delay_ms = atoll(argv[2]);
        loss = atof(argv[3]);
        srand((unsigned)par_clock_mono_ms());

        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);

        struct nfq_handle *h = nfq_open();
        if (!h) {
                perror("nfq_open");
                return 1;
        }
        struct nfq_q_handle *qh =
            nfq_create_queue(h, (uint16_t)queue, on_packet, NULL);
        if (!qh) {
                perror("nfq_create_queue");
                nfq_close(h);
                return 1;
        }
        nfq_set_mode(qh, NFQNL_COPY_META, 0);
        nfq_set_queue_maxlen(qh, RING);
        nfq_set_queue_flags(qh, NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_FAIL_OPEN);
        int fd = nfq_fd(h);
        char buf[65536] __attribute__((aligned));
        printf("netdelay: queue %d, delay %lld ms, loss %.2f%%\n", queue,
               (long long)delay_ms, loss);
        fflush(stdout);
        while (!stop) {
                int timeout = -1;
                if (tail != head) {
                        int64_t left = due[tail % RING] - par_clock_mono_ms();
                        timeout = left < 0 ? 0 : (int)left;
                }
                struct pollfd p = {.fd = fd, .events = POLLIN};
                int n = poll(&p, 1, timeout);
                if (n < 0 && errno != EINTR)
                        break;
                if (n > 0) {
                        ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                        if (r > 0)
                                nfq_handle_packet(h, buf, (int)r);
                        /* ENOBUFS: the kernel dropped queue messages; the
                         * packets themselves were let through (fail-open). */
                }
                release_due(qh, false);
        }
        release_due(qh, true);
        nfq_destroy_queue(qh);
        nfq_close(h);
        return 0;
}
