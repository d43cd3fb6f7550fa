/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "virtio/iov.h"

/* Three buffers of 3, 0 and 5 bytes: 8 bytes in all, with an empty iovec in the middle. */
struct fixture {
    char a[3];
    char b[1];
    char c[5];
    struct iovec iov[3];
};

static void fixture_init(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    f->iov[0] = (struct iovec){.iov_base = f->a, .iov_len = sizeof(f->a)};
    f->iov[1] = (struct iovec){.iov_base = f->b, .iov_len = 0};
    f->iov[2] = (struct iovec){.iov_base = f->c, .iov_len = sizeof(f->c)};
}

static void test_size(void **state)
{
    struct fixture f;
    fixture_init(&f);
    assert_int_equal(vgpu_iov_size(f.iov, 3), 8);
    assert_int_equal(vgpu_iov_size(f.iov, 1), 3);
    assert_int_equal(vgpu_iov_size(f.iov, 0), 0);

    struct iovec big[2] = {{.iov_base = NULL, .iov_len = SIZE_MAX - 1},
                           {.iov_base = NULL, .iov_len = 2}};
    assert_int_equal(vgpu_iov_size(big, 2), SIZE_MAX);
}

static void test_from_buf_spanning(void **state)
{
    struct fixture f;
    fixture_init(&f);
    /* Offset 2 starts in the last byte of a, skips the empty iovec, continues into c. */
    assert_int_equal(vgpu_iov_from_buf(f.iov, 3, 2, "WXYZ", 4), 4);
    assert_memory_equal(f.a, "\0\0W", 3);
    assert_memory_equal(f.c, "XYZ\0\0", 5);
    assert_int_equal(f.b[0], 0);
}

static void test_to_buf_spanning(void **state)
{
    struct fixture f;
    fixture_init(&f);
    memcpy(f.a, "abc", 3);
    memcpy(f.c, "defgh", 5);
    char out[8];
    memset(out, '.', sizeof(out));
    assert_int_equal(vgpu_iov_to_buf(f.iov, 3, 1, out, 5), 5);
    assert_memory_equal(out, "bcdef...", 8);

    /* Offset exactly at an iovec boundary. */
    memset(out, '.', sizeof(out));
    assert_int_equal(vgpu_iov_to_buf(f.iov, 3, 3, out, 2), 2);
    assert_memory_equal(out, "de......", 8);
}

static void test_short_list(void **state)
{
    struct fixture f;
    fixture_init(&f);
    memcpy(f.a, "abc", 3);
    memcpy(f.c, "defgh", 5);
    char out[16];
    memset(out, '.', sizeof(out));
    /* Asks for 10 bytes from offset 6: only 2 exist. */
    assert_int_equal(vgpu_iov_to_buf(f.iov, 3, 6, out, 10), 2);
    assert_memory_equal(out, "gh..", 4);
    /* Offset past the end copies nothing. */
    assert_int_equal(vgpu_iov_to_buf(f.iov, 3, 8, out, 1), 0);
    assert_int_equal(vgpu_iov_to_buf(f.iov, 3, 100, out, 1), 0);
    assert_int_equal(vgpu_iov_from_buf(f.iov, 3, 100, "x", 1), 0);

    /* Writing more than fits stops at the end of the list and touches nothing else. */
    char src[12];
    memset(src, 'z', sizeof(src));
    assert_int_equal(vgpu_iov_from_buf(f.iov, 3, 0, src, sizeof(src)), 8);
    assert_memory_equal(f.a, "zzz", 3);
    assert_memory_equal(f.c, "zzzzz", 5);
    assert_int_equal(f.b[0], 0);

    /* Only the first n iovecs count. */
    assert_int_equal(vgpu_iov_to_buf(f.iov, 1, 0, out, 8), 3);
    assert_int_equal(vgpu_iov_to_buf(f.iov, 0, 0, out, 8), 0);
}

static void test_zero_len(void **state)
{
    struct fixture f;
    fixture_init(&f);
    char out[1] = {'.'};
    assert_int_equal(vgpu_iov_to_buf(f.iov, 3, 0, out, 0), 0);
    assert_int_equal(out[0], '.');
    assert_int_equal(vgpu_iov_from_buf(f.iov, 3, 0, out, 0), 0);
    assert_int_equal(f.a[0], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_from_buf_spanning),
        cmocka_unit_test(test_to_buf_spanning),
        cmocka_unit_test(test_short_list),
        cmocka_unit_test(test_zero_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
