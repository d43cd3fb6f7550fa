/* SPDX-License-Identifier: MIT */
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "util/spsc.h"

/* Test items are small integers disguised as pointers; 0 would be NULL, so they start at 1. */
static void *item(uintptr_t n)
{
    return (void *)n;
}

static uintptr_t num(void *p)
{
    return (uintptr_t)p;
}

static void test_create_rejects_bad_capacity(void **state)
{
    const unsigned int bad[] = {0, 1, 3, 6, 100, 0x80000001u, UINT_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_null(vgpu_spsc_create(bad[i]));

    const unsigned int good[] = {2, 4, 64, 1024};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct vgpu_spsc *q = vgpu_spsc_create(good[i]);
        assert_non_null(q);
        assert_int_equal(vgpu_spsc_capacity(q), good[i]);
        assert_int_equal(vgpu_spsc_free_slots(q), good[i]);
        assert_true(vgpu_spsc_is_empty(q));
        vgpu_spsc_destroy(q);
    }
    vgpu_spsc_destroy(NULL);
}

static void test_fifo_full_empty(void **state)
{
    struct vgpu_spsc *q = vgpu_spsc_create(8);
    assert_non_null(q);

    assert_null(vgpu_spsc_pop(q));
    assert_null(vgpu_spsc_peek(q));

    for (uintptr_t i = 1; i <= 8; i++) {
        assert_true(vgpu_spsc_push(q, item(i)));
        assert_false(vgpu_spsc_is_empty(q));
        assert_int_equal(vgpu_spsc_free_slots(q), 8 - i);
    }
    assert_false(vgpu_spsc_push(q, item(9)));
    assert_int_equal(vgpu_spsc_free_slots(q), 0);

    for (uintptr_t i = 1; i <= 8; i++) {
        assert_int_equal(num(vgpu_spsc_peek(q)), i);
        assert_int_equal(num(vgpu_spsc_peek(q)), i);
        assert_int_equal(num(vgpu_spsc_pop(q)), i);
        assert_int_equal(vgpu_spsc_free_slots(q), i);
    }
    assert_null(vgpu_spsc_pop(q));
    assert_null(vgpu_spsc_peek(q));
    assert_true(vgpu_spsc_is_empty(q));

    /* Space freed by a pop is usable at once, and a rejected push changed nothing. */
    assert_true(vgpu_spsc_push(q, item(10)));
    assert_int_equal(num(vgpu_spsc_pop(q)), 10);
    assert_null(vgpu_spsc_pop(q));
    vgpu_spsc_destroy(q);
}

static void test_capacity_two(void **state)
{
    struct vgpu_spsc *q = vgpu_spsc_create(2);
    assert_non_null(q);
    assert_true(vgpu_spsc_push(q, item(1)));
    assert_true(vgpu_spsc_push(q, item(2)));
    assert_false(vgpu_spsc_push(q, item(3)));
    assert_int_equal(num(vgpu_spsc_pop(q)), 1);
    assert_true(vgpu_spsc_push(q, item(3)));
    assert_false(vgpu_spsc_push(q, item(4)));
    assert_int_equal(num(vgpu_spsc_pop(q)), 2);
    assert_int_equal(num(vgpu_spsc_pop(q)), 3);
    assert_null(vgpu_spsc_pop(q));
    vgpu_spsc_destroy(q);
}

/* Uneven batches walk the slot index around the ring many times at every offset. */
static void test_wrap_around(void **state)
{
    struct vgpu_spsc *q = vgpu_spsc_create(16);
    assert_non_null(q);
    uintptr_t next_in = 1, next_out = 1;
    for (unsigned int round = 0; round < 20000; round++) {
        unsigned int n_push = 1 + round % 16;
        unsigned int n_pop = 1 + (round * 7) % 16;
        for (unsigned int i = 0; i < n_push; i++) {
            bool room = vgpu_spsc_free_slots(q) > 0;
            assert_int_equal(vgpu_spsc_push(q, item(next_in)), room);
            if (room)
                next_in++;
        }
        for (unsigned int i = 0; i < n_pop; i++) {
            void *p = vgpu_spsc_pop(q);
            if (next_out == next_in) {
                assert_null(p);
                break;
            }
            assert_int_equal(num(p), next_out);
            next_out++;
        }
        assert_int_equal(vgpu_spsc_free_slots(q), 16 - (next_in - next_out));
    }
    assert_true(next_in > 16000u); /* the index wrapped around the ring >1000 times */
    vgpu_spsc_destroy(q);
}

/*
 * Two-thread stress. cmocka's assertions longjmp and are not thread-safe, so the threads only
 * count problems; the test function checks the counts after joining.
 */
#define STRESS_ITEMS 2000000u
#define STRESS_CAPACITY 64u

struct stress {
    struct vgpu_spsc *q;
    unsigned long items;
    unsigned long bad_order;   /* consumer: item out of sequence */
    unsigned long bad_peek;    /* consumer: peek and the following pop disagreed */
    unsigned long bad_free;    /* producer: a push that free_slots promised failed */
    unsigned long spins_full;  /* producer yields */
    unsigned long spins_empty; /* consumer yields */
};

static void *seq_producer(void *arg)
{
    struct stress *s = arg;
    uintptr_t i = 0;
    while (i < s->items) {
        unsigned int free_slots = vgpu_spsc_free_slots(s->q);
        if (free_slots == 0) {
            s->spins_full++;
            sched_yield();
            continue;
        }
        /* free_slots is a lower bound: every one of these pushes must succeed. */
        for (unsigned int k = 0; k < free_slots && i < s->items; k++) {
            if (!vgpu_spsc_push(s->q, item(i + 1))) {
                s->bad_free++;
                break;
            }
            i++;
        }
        /* Also exercise the plain push-until-full path. */
        while (i < s->items && vgpu_spsc_push(s->q, item(i + 1)))
            i++;
    }
    return NULL;
}

static void *seq_consumer(void *arg)
{
    struct stress *s = arg;
    uintptr_t expect = 1;
    while (expect <= s->items) {
        void *p = (expect % 3 == 0) ? vgpu_spsc_peek(s->q) : vgpu_spsc_pop(s->q);
        if (!p) {
            s->spins_empty++;
            sched_yield();
            continue;
        }
        if (expect % 3 == 0) {
            void *popped = vgpu_spsc_pop(s->q);
            if (popped != p)
                s->bad_peek++;
        }
        if (num(p) != expect) {
            s->bad_order++;
            expect = num(p);
        }
        expect++;
    }
    return NULL;
}

static void test_stress_sequence(void **state)
{
    struct stress s = {.items = STRESS_ITEMS};
    s.q = vgpu_spsc_create(STRESS_CAPACITY);
    assert_non_null(s.q);

    pthread_t prod, cons;
    assert_int_equal(pthread_create(&cons, NULL, seq_consumer, &s), 0);
    assert_int_equal(pthread_create(&prod, NULL, seq_producer, &s), 0);
    assert_int_equal(pthread_join(prod, NULL), 0);
    assert_int_equal(pthread_join(cons, NULL), 0);

    assert_int_equal(s.bad_order, 0);
    assert_int_equal(s.bad_peek, 0);
    assert_int_equal(s.bad_free, 0);
    assert_true(vgpu_spsc_is_empty(s.q));
    assert_null(vgpu_spsc_pop(s.q));
    print_message("spsc stress: %lu items, producer yields %lu, consumer yields %lu\n", s.items,
                  s.spins_full, s.spins_empty);
    vgpu_spsc_destroy(s.q);
}

/*
 * Ownership hand-off, the way the reactor gives commands to the render thread: the producer
 * allocates and fills a message with plain stores, the consumer reads and frees it. Only the
 * ring's release/acquire orders those accesses, which is what ThreadSanitizer checks here.
 */
#define HANDOFF_ITEMS 200000u
#define HANDOFF_WORDS 16u

struct msg {
    uint64_t seq;
    uint32_t payload[HANDOFF_WORDS];
};

static uint32_t payload_word(uint64_t seq, unsigned int i)
{
    return (uint32_t)(seq * 2654435761u) ^ (i * 0x9e3779b9u);
}

struct handoff {
    struct vgpu_spsc *q;
    unsigned long bad;
};

static void *handoff_producer(void *arg)
{
    struct handoff *h = arg;
    for (uint64_t seq = 0; seq < HANDOFF_ITEMS; seq++) {
        struct msg *m;
        while (!(m = malloc(sizeof(*m))))
            sched_yield();
        m->seq = seq;
        for (unsigned int i = 0; i < HANDOFF_WORDS; i++)
            m->payload[i] = payload_word(seq, i);
        while (!vgpu_spsc_push(h->q, m))
            sched_yield();
    }
    return NULL;
}

static void *handoff_consumer(void *arg)
{
    struct handoff *h = arg;
    uint64_t expect = 0;
    while (expect < HANDOFF_ITEMS) {
        struct msg *m = vgpu_spsc_pop(h->q);
        if (!m) {
            sched_yield();
            continue;
        }
        if (m->seq != expect)
            h->bad++;
        for (unsigned int i = 0; i < HANDOFF_WORDS; i++) {
            if (m->payload[i] != payload_word(m->seq, i))
                h->bad++;
        }
        /* Scribble before freeing: a producer still writing would now race visibly. */
        m->seq = UINT64_MAX;
        free(m);
        expect++;
    }
    return NULL;
}

static void test_stress_handoff(void **state)
{
    struct handoff h = {0};
    h.q = vgpu_spsc_create(STRESS_CAPACITY);
    assert_non_null(h.q);

    pthread_t prod, cons;
    assert_int_equal(pthread_create(&cons, NULL, handoff_consumer, &h), 0);
    assert_int_equal(pthread_create(&prod, NULL, handoff_producer, &h), 0);
    assert_int_equal(pthread_join(prod, NULL), 0);
    assert_int_equal(pthread_join(cons, NULL), 0);

    assert_int_equal(h.bad, 0);
    assert_true(vgpu_spsc_is_empty(h.q));
    vgpu_spsc_destroy(h.q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_rejects_bad_capacity),
        cmocka_unit_test(test_fifo_full_empty),
        cmocka_unit_test(test_capacity_two),
        cmocka_unit_test(test_wrap_around),
        cmocka_unit_test(test_stress_sequence),
        cmocka_unit_test(test_stress_handoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
