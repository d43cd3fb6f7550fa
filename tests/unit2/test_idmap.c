/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/idmap.h"

/* Values are distinct fake pointers derived from the id; never dereferenced. */
static void *val(uint32_t id, unsigned int gen)
{
    return (void *)(((uintptr_t)id << 8) | (uintptr_t)(gen & 0xffu) | 1u);
}

static void test_create_destroy(void **state)
{
    assert_null(vgpu_idmap_create(0));
    assert_null(vgpu_idmap_create(VGPU_IDMAP_MAX_ENTRIES + 1));
    vgpu_idmap_destroy(NULL);

    struct vgpu_idmap *m = vgpu_idmap_create(1);
    assert_non_null(m);
    assert_int_equal(vgpu_idmap_count(m), 0);
    assert_null(vgpu_idmap_get(m, 1));
    vgpu_idmap_destroy(m);
}

static void test_basic(void **state)
{
    struct vgpu_idmap *m = vgpu_idmap_create(4);
    assert_non_null(m);

    assert_int_equal(vgpu_idmap_insert(m, 0, val(0, 0)), -EINVAL);
    assert_int_equal(vgpu_idmap_insert(m, 5, NULL), -EINVAL);
    assert_int_equal(vgpu_idmap_count(m), 0);

    assert_int_equal(vgpu_idmap_insert(m, 5, val(5, 0)), 0);
    assert_int_equal(vgpu_idmap_insert(m, 5, val(5, 1)), -EEXIST);
    assert_ptr_equal(vgpu_idmap_get(m, 5), val(5, 0));
    assert_null(vgpu_idmap_get(m, 0));
    assert_null(vgpu_idmap_get(m, 6));
    assert_int_equal(vgpu_idmap_count(m), 1);

    assert_int_equal(vgpu_idmap_insert(m, 6, val(6, 0)), 0);
    assert_int_equal(vgpu_idmap_insert(m, 0xffffffffu, val(0xffffffffu, 0)), 0);
    assert_int_equal(vgpu_idmap_insert(m, 1, val(1, 0)), 0);
    assert_int_equal(vgpu_idmap_count(m), 4);
    /* Full: a new id is refused, a duplicate is still reported as such. */
    assert_int_equal(vgpu_idmap_insert(m, 2, val(2, 0)), -ENOSPC);
    assert_int_equal(vgpu_idmap_insert(m, 6, val(6, 1)), -EEXIST);
    assert_null(vgpu_idmap_get(m, 2));
    assert_int_equal(vgpu_idmap_count(m), 4);

    assert_null(vgpu_idmap_remove(m, 0));
    assert_null(vgpu_idmap_remove(m, 2));
    assert_ptr_equal(vgpu_idmap_remove(m, 6), val(6, 0));
    assert_null(vgpu_idmap_remove(m, 6));
    assert_null(vgpu_idmap_get(m, 6));
    assert_int_equal(vgpu_idmap_count(m), 3);
    assert_int_equal(vgpu_idmap_insert(m, 2, val(2, 0)), 0);
    assert_ptr_equal(vgpu_idmap_get(m, 0xffffffffu), val(0xffffffffu, 0));
    assert_ptr_equal(vgpu_idmap_get(m, 5), val(5, 0));
    assert_ptr_equal(vgpu_idmap_get(m, 1), val(1, 0));
    assert_ptr_equal(vgpu_idmap_get(m, 2), val(2, 0));
    vgpu_idmap_destroy(m);
}

struct visit {
    unsigned int calls;
    uint64_t id_sum;
    bool bad_value;
};

static void visit_fn(void *ctx, uint32_t id, void *value)
{
    struct visit *v = ctx;
    v->calls++;
    v->id_sum += id;
    if (value != val(id, 0))
        v->bad_value = true;
}

static void test_foreach(void **state)
{
    struct vgpu_idmap *m = vgpu_idmap_create(1000);
    assert_non_null(m);
    struct visit v = {0};
    vgpu_idmap_foreach(m, visit_fn, &v);
    assert_int_equal(v.calls, 0);

    uint64_t sum = 0;
    for (uint32_t id = 1; id <= 1000; id++) {
        assert_int_equal(vgpu_idmap_insert(m, id * 7919u, val(id * 7919u, 0)), 0);
        sum += (uint64_t)id * 7919u;
    }
    for (uint32_t id = 2; id <= 1000; id += 2) {
        assert_non_null(vgpu_idmap_remove(m, id * 7919u));
        sum -= (uint64_t)id * 7919u;
    }
    vgpu_idmap_foreach(m, visit_fn, &v);
    assert_int_equal(v.calls, 500);
    assert_true(v.id_sum == sum);
    assert_false(v.bad_value);
    vgpu_idmap_destroy(m);
}

/*
 * Id patterns a guest might use or craft: sequential, all in the high bits (a table indexed by
 * low bits would put them all in one slot), the top of the range, single bits, and strides of
 * powers of two. Each set is inserted, checked, and removed in three different orders, so that
 * backward-shift deletion runs on long clusters.
 */
#define PATTERN_N 4096u

static uint32_t reverse_bits(uint32_t x)
{
    uint32_t r = 0;
    for (unsigned int b = 0; b < 32; b++, x >>= 1)
        r = (r << 1) | (x & 1u);
    return r;
}

/* Every pattern gives PATTERN_N distinct non-zero ids. */
static uint32_t pattern_id(unsigned int pattern, uint32_t i)
{
    switch (pattern) {
    case 0:
        return i + 1; /* 1, 2, 3, ... */
    case 1:
        return (i + 1) << 19; /* low 19 bits all zero */
    case 2:
        return 0xffffffffu - i; /* top of the range, starting at 0xffffffff */
    case 3:
        return reverse_bits(i + 1); /* 0x80000000, 0x40000000, 0xc0000000, ... */
    case 4:
        return (i + 1) * 65536u + (i + 1); /* 0x00010001, 0x00020002, ... */
    default:
        return (i + 1) * 4096u; /* page-aligned, as handles often are */
    }
}

static void check_pattern(unsigned int pattern, unsigned int n, unsigned int order)
{
    struct vgpu_idmap *m = vgpu_idmap_create(n);
    assert_non_null(m);
    unsigned int inserted = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = pattern_id(pattern, i);
        assert_int_equal(vgpu_idmap_insert(m, id, val(id, 0)), 0);
        inserted++;
    }
    assert_int_equal(vgpu_idmap_count(m), inserted);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = pattern_id(pattern, i);
        assert_ptr_equal(vgpu_idmap_get(m, id), val(id, 0));
    }
    static bool gone[PATTERN_N];
    memset(gone, 0, sizeof(gone));
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = order == 0 ? k : order == 1 ? n - 1 - k : (k * 2 + k / (n / 2)) % n;
        uint32_t id = pattern_id(pattern, i);
        assert_ptr_equal(vgpu_idmap_remove(m, id), val(id, 0));
        gone[i] = true;
        inserted--;
        assert_null(vgpu_idmap_get(m, id));
        assert_null(vgpu_idmap_remove(m, id));
        assert_int_equal(vgpu_idmap_count(m), inserted);
        /* Every survivor stays reachable while clusters are torn down around it. */
        if (k % 97 == 0) {
            for (uint32_t j = 0; j < n; j++) {
                uint32_t other = pattern_id(pattern, j);
                assert_ptr_equal(vgpu_idmap_get(m, other), gone[j] ? NULL : val(other, 0));
            }
        }
    }
    assert_int_equal(vgpu_idmap_count(m), 0);
    vgpu_idmap_destroy(m);
}

static void test_hostile_ids(void **state)
{
    for (unsigned int pattern = 0; pattern < 6; pattern++) {
        for (unsigned int order = 0; order < 3; order++) {
            check_pattern(pattern, PATTERN_N, order);
            check_pattern(pattern, 40, order);
        }
    }
}

/*
 * Randomised comparison against the simplest possible model: an array indexed by position in
 * a pool of candidate ids. The pool mixes hostile patterns and random ids; the operation mix
 * swings between filling (to hit -ENOSPC) and draining (to exercise deletion in full tables).
 */
#define POOL 4096u
#define OPS 100000u

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rng(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

struct model_check {
    const uint32_t *pool;
    void *const *model;
    unsigned int seen;
    bool mismatch;
};

static void model_visit(void *ctx, uint32_t id, void *value)
{
    struct model_check *c = ctx;
    c->seen++;
    for (unsigned int i = 0; i < POOL; i++) {
        if (c->pool[i] == id) {
            if (c->model[i] != value)
                c->mismatch = true;
            return;
        }
    }
    c->mismatch = true; /* an id the model never inserted */
}

static void run_model(unsigned int max_entries)
{
    static uint32_t pool[POOL];
    static void *model[POOL];
    unsigned int n = 0;
    for (uint32_t i = 0; n < POOL; i++) {
        uint32_t id;
        switch (i % 4) {
        case 0:
            id = i / 4 + 1;
            break;
        case 1:
            id = (i / 4 + 1) << 16;
            break;
        case 2:
            id = 0xffffffffu - i / 4;
            break;
        default:
            id = rng();
            break;
        }
        bool dup = id == 0;
        for (unsigned int k = 0; k < n && !dup; k++)
            dup = pool[k] == id;
        if (!dup)
            pool[n++] = id;
    }
    memset(model, 0, sizeof(model));

    struct vgpu_idmap *m = vgpu_idmap_create(max_entries);
    assert_non_null(m);
    unsigned int count = 0, nospc = 0, exist = 0, removed = 0;
    /* Restrict to part of the pool for small maps, so that hits are common. */
    unsigned int span = max_entries * 2 < POOL ? max_entries * 2 : POOL;
    for (unsigned int op = 0; op < OPS; op++) {
        unsigned int p = rng() % span;
        uint32_t id = pool[p];
        /* Fill for 5000 operations, then drain for 5000, and so on. */
        unsigned int insert_pct = (op / 5000) % 2 == 0 ? 70 : 25;
        unsigned int r = rng() % 100;
        if (r < insert_pct) {
            void *v = val(id, op);
            int ret = vgpu_idmap_insert(m, id, v);
            if (model[p]) {
                assert_int_equal(ret, -EEXIST);
                exist++;
            } else if (count == max_entries) {
                assert_int_equal(ret, -ENOSPC);
                nospc++;
            } else {
                assert_int_equal(ret, 0);
                model[p] = v;
                count++;
            }
        } else if (r < insert_pct + 25) {
            assert_ptr_equal(vgpu_idmap_remove(m, id), model[p]);
            if (model[p]) {
                model[p] = NULL;
                count--;
                removed++;
            }
        } else {
            assert_ptr_equal(vgpu_idmap_get(m, id), model[p]);
        }
        assert_int_equal(vgpu_idmap_count(m), count);

        if (op % 4999 == 0) {
            struct model_check c = {.pool = pool, .model = model};
            vgpu_idmap_foreach(m, model_visit, &c);
            assert_false(c.mismatch);
            assert_int_equal(c.seen, count);
            for (unsigned int k = 0; k < POOL; k++)
                assert_ptr_equal(vgpu_idmap_get(m, pool[k]), model[k]);
        }
    }
    /* The run must have covered the interesting cases. */
    assert_true(nospc > 0);
    assert_true(exist > 0);
    assert_true(removed > 0);
    vgpu_idmap_destroy(m);
}

static void test_random_vs_model(void **state)
{
    run_model(7);
    run_model(64);
    run_model(2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_destroy),  cmocka_unit_test(test_basic),
        cmocka_unit_test(test_foreach),         cmocka_unit_test(test_hostile_ids),
        cmocka_unit_test(test_random_vs_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
