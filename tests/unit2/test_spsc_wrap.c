/* SPDX-License-Identifier: MIT */
/*
 * The ring's head and tail are free-running 32-bit counters. Reaching their wrap through the
 * API takes 2^32 operations, so this test compiles the implementation in and starts both
 * counters just below UINT_MAX.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "util/spsc.c" /* NOLINT(bugprone-suspicious-include): white-box test */

static void start_at(struct vgpu_spsc *q, unsigned int index)
{
    atomic_store(&q->head, index);
    atomic_store(&q->tail, index);
    q->head_cache = index;
    q->tail_cache = index;
}

static void test_counter_wrap(void **state)
{
    struct vgpu_spsc *q = vgpu_spsc_create(8);
    assert_non_null(q);
    start_at(q, UINT_MAX - 20);

    uintptr_t next_in = 1, next_out = 1;
    for (unsigned int round = 0; round < 64; round++) {
        /* Fill completely, check full, then drain all but round % 4. */
        while (vgpu_spsc_free_slots(q) > 0)
            assert_true(vgpu_spsc_push(q, (void *)next_in++));
        assert_false(vgpu_spsc_push(q, (void *)next_in));
        assert_false(vgpu_spsc_is_empty(q));
        while (next_in - next_out > round % 4) {
            assert_int_equal((uintptr_t)vgpu_spsc_peek(q), next_out);
            assert_int_equal((uintptr_t)vgpu_spsc_pop(q), next_out);
            next_out++;
        }
        assert_int_equal(vgpu_spsc_free_slots(q), 8 - round % 4);
    }
    while (next_out < next_in)
        assert_int_equal((uintptr_t)vgpu_spsc_pop(q), next_out++);
    assert_null(vgpu_spsc_pop(q));
    assert_true(vgpu_spsc_is_empty(q));
    /* The counters really did pass through zero. */
    assert_true(atomic_load(&q->head) < 1000);
    vgpu_spsc_destroy(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_wrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
