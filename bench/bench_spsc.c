/* SPDX-License-Identifier: MIT */
/*
 * bench_spsc: the reactor -> render hand-off cost. Two threads share one vgpu_spsc of 256 slots
 * (the command ring's size) and measure:
 *   - throughput: items per second with both sides running flat out;
 *   - hand-off latency: one item in flight at a time, the producer stamps CLOCK_MONOTONIC into
 *     the item before pushing, the consumer subtracts on pop (median and 99th percentile);
 *   - loaded latency: the same stamps while the producer pushes flat out, so the ring stays
 *     full and each item waits behind up to 255 others (the cost of back-pressure).
 * Both sides busy-wait, yielding after a while so a single-CPU machine still makes progress.
 *
 * Output: "name: value unit" lines. --quick runs briefly (CI keeps the benchmark working).
 */
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/spsc.h"

#define CAPACITY 256u
#define SPINS_BEFORE_YIELD 4096u

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void backoff(unsigned int *spins)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("pause"); /* be kind to the sibling hyperthread while spinning */
#endif
    if (++*spins >= SPINS_BEFORE_YIELD) {
        *spins = 0;
        sched_yield();
    }
}

struct stamp {
    uint64_t t;
};

struct run {
    struct vgpu_spsc *q;
    size_t n;
    bool one_in_flight;  /* latency mode: wait for the ring to drain before each push */
    struct stamp *items; /* NULL: throughput mode, items are sequence numbers */
    uint64_t *lat;       /* consumer: latency per item, ns */
    unsigned long errors;
};

static void *producer(void *arg)
{
    struct run *r = arg;
    unsigned int spins = 0;
    for (size_t i = 0; i < r->n; i++) {
        void *item;
        if (r->items) {
            if (r->one_in_flight) {
                while (!vgpu_spsc_is_empty(r->q))
                    backoff(&spins);
            }
            r->items[i].t = now_ns();
            item = &r->items[i];
        } else {
            item = (void *)(uintptr_t)(i + 1);
        }
        while (!vgpu_spsc_push(r->q, item))
            backoff(&spins);
        spins = 0;
    }
    return NULL;
}

static void *consumer(void *arg)
{
    struct run *r = arg;
    unsigned int spins = 0;
    for (size_t i = 0; i < r->n; i++) {
        void *item;
        while (!(item = vgpu_spsc_pop(r->q)))
            backoff(&spins);
        spins = 0;
        if (r->items) {
            const struct stamp *s = item;
            r->lat[i] = now_ns() - s->t;
            if (s != &r->items[i])
                r->errors++;
        } else if ((uintptr_t)item != i + 1) {
            r->errors++;
        }
    }
    return NULL;
}

/*
 * Runs the consumer on a new thread and the producer on a second one, or on this thread if that
 * cannot be created (the numbers then suffer, but the run ends). Returns the wall time in ns, or
 * 0 if no consumer thread could be started.
 */
static uint64_t run_pair(struct run *r)
{
    pthread_t p, c;
    uint64_t start = now_ns();
    if (pthread_create(&c, NULL, consumer, r) != 0)
        return 0;
    if (pthread_create(&p, NULL, producer, r) == 0) {
        (void)pthread_join(p, NULL);
    } else {
        (void)fprintf(stderr, "warning: producer runs on the main thread\n");
        producer(r);
    }
    (void)pthread_join(c, NULL);
    return now_ns() - start;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int latency(struct vgpu_spsc *q, size_t n, bool one_in_flight, const char *name)
{
    struct run r = {.q = q, .n = n, .one_in_flight = one_in_flight};
    r.items = calloc(n, sizeof(*r.items));
    r.lat = calloc(n, sizeof(*r.lat));
    if (!r.items || !r.lat) {
        (void)fprintf(stderr, "%s: out of memory\n", name);
        free(r.items);
        free(r.lat);
        return -1;
    }
    if (run_pair(&r) == 0 || r.errors) {
        (void)fprintf(stderr, "%s: failed (%lu errors)\n", name, r.errors);
        free(r.items);
        free(r.lat);
        return -1;
    }
    qsort(r.lat, n, sizeof(*r.lat), cmp_u64);
    (void)printf("%s_median: %llu ns\n", name, (unsigned long long)r.lat[n / 2]);
    (void)printf("%s_p99: %llu ns\n", name, (unsigned long long)r.lat[n - n / 100 - 1]);
    free(r.items);
    free(r.lat);
    return 0;
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    size_t n_tput = quick ? 1000000u : 50000000u;
    size_t n_lat = quick ? 20000u : 1000000u;

    struct vgpu_spsc *q = vgpu_spsc_create(CAPACITY);
    if (!q) {
        (void)fprintf(stderr, "vgpu_spsc_create failed\n");
        return 1;
    }
    (void)printf("spsc_capacity: %u items\n", vgpu_spsc_capacity(q));

    struct run r = {.q = q, .n = n_tput};
    uint64_t ns = run_pair(&r);
    if (ns == 0 || r.errors) {
        (void)fprintf(stderr, "throughput run failed (%lu errors)\n", r.errors);
        return 1;
    }
    (void)printf("spsc_throughput: %.0f items/s\n", (double)n_tput * 1e9 / (double)ns);
    (void)printf("spsc_time_per_item: %.2f ns\n", (double)ns / (double)n_tput);

    if (latency(q, n_lat, true, "spsc_handoff_latency") < 0 ||
        latency(q, n_lat, false, "spsc_loaded_latency") < 0)
        return 1;

    vgpu_spsc_destroy(q);
    return 0;
}
