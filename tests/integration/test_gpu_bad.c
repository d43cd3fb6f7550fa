/* SPDX-License-Identifier: MIT */
/*
 * A hostile guest against the 2D GPU (issue #3, reference/hostile-guest.md): every bad
 * command gets the error code the virtio-gpu spec gives it in its response header, host
 * memory stays bounded, and the next good command still works. One --socket-path daemon with
 * --max-hostmem 64M serves every test, each in a fresh session; the front-end plays QEMU on the
 * display socket (auto-served), so display messages can be counted. At the end the daemon holds
 * exactly the fds it held at the start, and exits 0 on SIGTERM (LeakSanitizer included in the
 * sanitizer lane).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gputest.h"

#define BIT(n) (1ull << (n))
#define OK VIRTIO_GPU_RESP_OK_NODATA
#define MAX_HOSTMEM (64ull << 20)
#define SPARE_ID 0xfff0u

static struct itest_shared fx;

static struct vgpu_fe_config config(void)
{
    struct vgpu_fe_config cfg;

    vgpu_fe_config_init(&cfg);
    cfg.guest_features |= BIT(VIRTIO_GPU_F_EDID) | BIT(VIRTIO_GPU_F_RESOURCE_UUID);
    return cfg;
}

/* A negotiated session; QEMU answers the display socket unless there is none. */
static struct vgpu_fe *session_cfg(const struct vgpu_fe_config *cfg)
{
    struct vgpu_fe *fe = itest_connect(fx.d, cfg);

    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    return fe;
}

static struct vgpu_fe *session(void)
{
    struct vgpu_fe_config cfg = config();

    return session_cfg(&cfg);
}

/*
 * Waits until QEMU has read everything the daemon sent so far: GET_DISPLAY_INFO goes out
 * behind every message queued before it, and the guest's command completes only once QEMU
 * (the library, inside vgpu_fe_vq_wait_used) has answered it.
 */
static void display_sync(struct vgpu_fe *fe)
{
    GT_EXPECT(gt_display_info(fe, NULL), VIRTIO_GPU_RESP_OK_DISPLAY_INFO);
}

/* The fd count of a connected session whose display socket is negotiated and idle. */
static int connected_fd_count(void)
{
    struct vgpu_fe *fe = session();

    display_sync(fe);
    int n = vgpu_fe_daemon_fd_count(fx.d);
    itest_release(fe);
    return n;
}

static int group_setup(void **state)
{
    static const char *const extra[] = {"--max-hostmem", "64M", NULL};
    if (itest_shared_start(&fx, extra) < 0)
        return -1;
    /* Warm up (lazy allocations, first-session-only fds), then take the reference. */
    for (int i = 0; i < 3; i++)
        fx.fd_ref = connected_fd_count();
    return 0;
}

static int group_teardown(void **state)
{
    itest_shared_stop(&fx);
    return 0;
}

static char *new_log(void)
{
    return itest_shared_log(&fx);
}

static int setup(void **state)
{
    new_log();
    return 0;
}

/* Echoes the daemon's log of the test, and checks it is alive. */
static int teardown(void **state)
{
    return itest_shared_test_done(&fx);
}

/* A good command after a bad one: a resource created and freed. */
static void good_cmd(struct vgpu_fe *fe)
{
    GT_EXPECT(gt_create_2d(fe, SPARE_ID, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 1, 1), OK);
    GT_EXPECT(gt_unref(fe, SPARE_ID), OK);
}

/* The bad command's exact response type, then a good command that works. */
#define EXPECT_ERR(fe, expr, want)                                                                 \
    do {                                                                                           \
        GT_EXPECT(expr, want);                                                                     \
        good_cmd(fe);                                                                              \
    } while (0)

static long rss_kib(void)
{
    long r = vgpu_fe_daemon_rss_kib(fx.d);

    assert_true(r > 0);
    return r;
}

/* ---- RESOURCE_CREATE_2D ---- */

static void test_create_2d_bad(void **state)
{
    static const uint32_t bad_formats[] = {0, 5, 999, 66, 0xffffffffu};
    struct vgpu_fe *fe = session();

    EXPECT_ERR(fe, gt_create_2d(fe, 0, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 16, 16),
               VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    GT_EXPECT(gt_create_2d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 16, 16), OK);
    EXPECT_ERR(fe, gt_create_2d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 16, 16),
               VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    EXPECT_ERR(fe, gt_create_2d(fe, 1, VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM, 32, 8),
               VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    for (size_t i = 0; i < sizeof(bad_formats) / sizeof(bad_formats[0]); i++)
        EXPECT_ERR(fe, gt_create_2d(fe, 2, bad_formats[i], 16, 16),
                   VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    EXPECT_ERR(fe, gt_create_2d(fe, 2, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 0, 16),
               VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    EXPECT_ERR(fe, gt_create_2d(fe, 2, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 16, 0),
               VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    EXPECT_ERR(fe, gt_create_2d(fe, 2, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 0, 0),
               VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* None of the refused ones exists: id 2 is free, id 1 is the first one. */
    GT_EXPECT(gt_create_2d(fe, 2, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 16, 16), OK);
    GT_EXPECT(gt_set_scanout(fe, 0, 1, GT_RECT(0, 0, 16, 16)), OK);
    GT_EXPECT(gt_set_scanout(fe, 0, 1, GT_RECT(0, 0, 32, 8)),
              VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    itest_release(fe);
}

static void test_create_2d_huge(void **state)
{
    static const uint32_t sizes[][2] = {
        {0xffffffffu, 0xffffffffu}, /* width * height * 4 overflows 64 bits */
        {65536, 65536},             /* 16 GiB */
        {0xffffffffu, 1},
        {1, 0xffffffffu},
        {0x40000000u, 1}, /* exactly 4 GiB: overflows 32 bits */
        {16384, 16384},   /* 1 GiB, over the 64 MiB cap */
        {4097, 4096},     /* just over the cap */
    };
    struct vgpu_fe *fe = session();
    long rss0 = rss_kib();

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        EXPECT_ERR(fe,
                   gt_create_2d(fe, 7, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, sizes[i][0], sizes[i][1]),
                   VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
    long rss1 = rss_kib();
    print_message("RSS %ld -> %ld KiB\n", rss0, rss1);
    if (gt_rss_bounds_apply())
        assert_true(rss1 - rss0 < 8 * 1024);
    /* Exactly the cap fits. */
    GT_EXPECT(gt_create_2d(fe, 7, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 4096, 4096), OK);
    GT_EXPECT(gt_unref(fe, 7), OK);
    itest_release(fe);
}

static void test_hostmem_cap(void **state)
{
    struct vgpu_fe *fe = session();
    const uint32_t side = 1024; /* 4 MiB each */
    uint32_t n = 0;
    uint32_t type;

    while ((type = gt_create_2d(fe, 100 + n, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, side, side)) == OK) {
        n++;
        assert_true(n <= MAX_HOSTMEM / (4ull * side * side));
    }
    GT_EXPECT(type, VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
    print_message("%u resources of 4 MiB under a 64 MiB cap\n", n);
    assert_true(n >= 15);
    /* Freeing one makes room for one. */
    GT_EXPECT(gt_create_2d(fe, 99, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, side, side),
              VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
    GT_EXPECT(gt_unref(fe, 100), OK);
    GT_EXPECT(gt_create_2d(fe, 99, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, side, side), OK);
    GT_EXPECT(gt_create_2d(fe, 98, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, side, side),
              VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
    /* All freed: the whole budget is back. */
    GT_EXPECT(gt_unref(fe, 99), OK);
    for (uint32_t i = 1; i < n; i++)
        GT_EXPECT(gt_unref(fe, 100 + i), OK);
    for (uint32_t i = 0; i < n; i++)
        GT_EXPECT(gt_create_2d(fe, 200 + i, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, side, side), OK);
    itest_release(fe);
}

/* Runs count CREATE_2D (or UNREF) of ids first.. pipelined, 32 at a time; all must be OK. */
static void pipeline(struct vgpu_fe *fe, uint32_t cmd, uint32_t first, uint32_t count)
{
    enum { BATCH = 32 };

    for (uint32_t done = 0; done < count;) {
        struct gt_req r[BATCH];
        uint32_t n = count - done < BATCH ? count - done : BATCH;
        uint64_t mark = vgpu_fe_alloc_mark(fe);
        for (uint32_t k = 0; k < n; k++) {
            struct virtio_gpu_resource_create_2d c = {
                .hdr = {.type = cmd},
                .resource_id = first + done + k,
                .format = VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
                .width = 1,
                .height = 1,
            };
            uint32_t len = cmd == VIRTIO_GPU_CMD_RESOURCE_CREATE_2D
                               ? sizeof(c)
                               : sizeof(struct virtio_gpu_resource_unref);
            gt_post(fe, &c, len, sizeof(struct virtio_gpu_ctrl_hdr),
                    VGPU_FE_POST_INDIRECT | VGPU_FE_POST_NO_KICK, &r[k]);
        }
        FE_CHECK(fe, vgpu_fe_vq_kick(fe, VGPU_FE_CTRLQ));
        for (uint32_t k = 0; k < n; k++)
            GT_EXPECT(gt_wait(fe, &r[k], itest_ms(5000), NULL), OK);
        vgpu_fe_alloc_release(fe, mark);
        done += n;
    }
}

static void test_resource_count_cap(void **state)
{
    const uint32_t cap = 4096;
    struct vgpu_fe *fe = session();

    pipeline(fe, VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, 1, cap);
    GT_EXPECT(gt_create_2d(fe, cap + 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 1, 1),
              VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
    GT_EXPECT(gt_unref(fe, 17), OK);
    GT_EXPECT(gt_create_2d(fe, cap + 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 1, 1), OK);
    GT_EXPECT(gt_create_2d(fe, cap + 2, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 1, 1),
              VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
    pipeline(fe, VIRTIO_GPU_CMD_RESOURCE_UNREF, 1, 16);
    pipeline(fe, VIRTIO_GPU_CMD_RESOURCE_UNREF, 18, cap - 17);
    good_cmd(fe);
    itest_release(fe);
}

/* ---- unknown resource ids ---- */

static void test_unknown_resource_id(void **state)
{
    const uint32_t ids[] = {777, 0, 0xffffffffu, 5 /* freed */};
    struct vgpu_fe *fe = session();
    struct gt_backing bk;

    gt_backing_contig(fe, &bk, 4096);
    GT_EXPECT(gt_create_2d(fe, 5, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 16, 16), OK);
    GT_EXPECT(gt_unref(fe, 5), OK);
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        const uint32_t id = ids[i];
        const struct virtio_gpu_rect r = GT_RECT(0, 0, 1, 1);
        EXPECT_ERR(fe, gt_unref(fe, id), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
        EXPECT_ERR(fe, gt_flush(fe, id, r), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
        EXPECT_ERR(fe, gt_transfer(fe, id, r, 0), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
        EXPECT_ERR(fe, gt_attach_backing(fe, id, &bk), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
        EXPECT_ERR(fe, gt_detach(fe, id), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
        if (id != 0) /* resource 0 on a scanout means "disable" */
            EXPECT_ERR(fe, gt_set_scanout(fe, 0, id, r), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
        struct virtio_gpu_resource_assign_uuid u = {
            .hdr = {.type = VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID},
            .resource_id = id,
        };
        EXPECT_ERR(fe,
                   gt_cmd(fe, &u, sizeof(u), NULL, sizeof(struct virtio_gpu_resp_resource_uuid)),
                   VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    }
    itest_release(fe);
}

/* ---- rectangles ---- */

static void test_rect_outside_resource(void **state)
{
    static const struct virtio_gpu_rect bad[] = {
        {0, 0, 65, 64},
        {0, 0, 64, 65},
        {1, 0, 64, 64},
        {0, 1, 64, 64},
        {64, 0, 1, 1},
        {0, 64, 1, 1},
        {0xffffffffu, 0, 2, 1},                               /* x + width wraps to 1 */
        {0, 0x80000000u, 1, 0x80000000u},                     /* y + height wraps to 0 */
        {0x80000000u, 0x80000000u, 0x80000000u, 0x80000000u}, /* both wrap to 0 */
        {0, 0, 0xffffffffu, 0xffffffffu},
        {0xfffffff0u, 0xfffffff0u, 0x20, 0x20},
    };
    struct vgpu_fe *fe = session();
    struct gt_backing bk;

    gt_backing_contig(fe, &bk, 64 * 64 * 4);
    GT_EXPECT(gt_create_2d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 64, 64), OK);
    GT_EXPECT(gt_attach_backing(fe, 1, &bk), OK);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const struct virtio_gpu_rect r = bad[i];
        uint64_t off = ((uint64_t)r.y * 64 + r.x) * 4;
        EXPECT_ERR(fe, gt_set_scanout(fe, 0, 1, r), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
        EXPECT_ERR(fe, gt_flush(fe, 1, r), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
        EXPECT_ERR(fe, gt_transfer(fe, 1, r, off), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
        EXPECT_ERR(fe, gt_transfer(fe, 1, r, 0), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    }
    /* A scanout larger than the display protocol takes (16384): QEMU gets no surface and
     * no UPDATE for it, the guest an OK (the rectangle is valid). */
    GT_EXPECT(gt_create_2d(fe, 2, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 16385, 1), OK);
    display_sync(fe);
    unsigned int scanouts = vgpu_fe_display_count(fe, VGPU_FE_DISPLAY_SCANOUT);
    unsigned int updates = vgpu_fe_display_count(fe, VGPU_FE_DISPLAY_UPDATE);
    GT_EXPECT(gt_set_scanout(fe, 0, 2, GT_RECT(0, 0, 16385, 1)), OK);
    GT_EXPECT(gt_flush(fe, 2, GT_RECT(0, 0, 16385, 1)), OK);
    display_sync(fe);
    assert_int_equal(vgpu_fe_display_count(fe, VGPU_FE_DISPLAY_SCANOUT), scanouts + 1);
    assert_int_equal(vgpu_fe_display_count(fe, VGPU_FE_DISPLAY_UPDATE), updates);
    GT_EXPECT(gt_unref(fe, 2), OK);
    /* The edges themselves are inside. */
    GT_EXPECT(gt_set_scanout(fe, 0, 1, GT_RECT(0, 0, 64, 64)), OK);
    GT_EXPECT(gt_set_scanout(fe, 0, 1, GT_RECT(63, 63, 1, 1)), OK);
    GT_EXPECT(gt_flush(fe, 1, GT_RECT(0, 0, 64, 64)), OK);
    GT_EXPECT(gt_flush(fe, 1, GT_RECT(63, 63, 1, 1)), OK);
    GT_EXPECT(gt_transfer(fe, 1, GT_RECT(0, 0, 64, 64), 0), OK);
    GT_EXPECT(gt_transfer(fe, 1, GT_RECT(63, 63, 1, 1), (63 * 64 + 63) * 4), OK);
    display_sync(fe);
    itest_release(fe);
}

/* ---- RESOURCE_ATTACH_BACKING ---- */

/* ATTACH_BACKING whose header claims nr_entries but carries only the entries in e[0..n). */
static uint32_t attach_lying(struct vgpu_fe *fe, uint32_t id, uint32_t nr_entries,
                             const struct virtio_gpu_mem_entry *e, uint32_t n)
{
    uint8_t buf[sizeof(struct virtio_gpu_resource_attach_backing) + 4 * sizeof(*e)];
    struct virtio_gpu_resource_attach_backing a = {
        .hdr = {.type = VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING},
        .resource_id = id,
        .nr_entries = nr_entries,
    };

    assert_true(n <= 4);
    memcpy(buf, &a, sizeof(a));
    memcpy(buf + sizeof(a), e, n * sizeof(*e));
    return gt_cmd0(fe, buf, (uint32_t)(sizeof(a) + n * sizeof(*e)));
}

static void expect_any_error(uint32_t type, const char *what)
{
    if (type != VIRTIO_GPU_RESP_ERR_UNSPEC && type != VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER) {
        print_error("%s: response 0x%x (%s), expected ERR_UNSPEC or ERR_INVALID_PARAMETER\n", what,
                    type, gt_resp_name(type));
        fail();
    }
}

static void test_attach_backing_bad(void **state)
{
    struct vgpu_fe *fe = session();
    const uint64_t msize = vgpu_fe_mem_size(fe);
    uint64_t good = vgpu_fe_alloc(fe, 8192, 4096);
    const struct virtio_gpu_mem_entry outside[][3] = {
        {{.addr = msize + 4096, .length = 4096}},
        {{.addr = msize - 100, .length = 4096}},             /* runs past the end */
        {{.addr = 0xfffffffffffff000ull, .length = 0x2000}}, /* addr + length overflows */
        {{.addr = 0xffffffffffffffffull, .length = 1}},
        /* Two good entries, then a bad one: nothing may stay attached. */
        {{.addr = good, .length = 4096},
         {.addr = good + 4096, .length = 4096},
         {.addr = msize, .length = 1}},
    };
    const uint32_t nents[] = {1, 1, 1, 1, 3};

    GT_EXPECT(gt_create_2d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 32, 64), OK);
    for (size_t i = 0; i < sizeof(nents) / sizeof(nents[0]); i++) {
        EXPECT_ERR(fe, gt_attach(fe, 1, outside[i], nents[i]), VIRTIO_GPU_RESP_ERR_UNSPEC);
        /* Still without backing. */
        EXPECT_ERR(fe, gt_transfer(fe, 1, GT_RECT(0, 0, 1, 1), 0), VIRTIO_GPU_RESP_ERR_UNSPEC);
    }

    /* nr_entries beyond the bytes in the chain: an error, and no allocation of that size. */
    long rss0 = rss_kib();
    const struct virtio_gpu_mem_entry two[2] = {{.addr = good, .length = 4096},
                                                {.addr = good + 4096, .length = 4096}};
    const uint32_t lies[] = {3, 1000, 16384, 16385, 0x10000, 0x7fffffffu, 0xffffffffu};
    for (size_t i = 0; i < sizeof(lies) / sizeof(lies[0]); i++) {
        char what[64];
        (void)snprintf(what, sizeof(what), "nr_entries %u with 2 entries", lies[i]);
        expect_any_error(attach_lying(fe, 1, lies[i], two, 2), what);
        good_cmd(fe);
    }
    long rss1 = rss_kib();
    print_message("RSS %ld -> %ld KiB\n", rss0, rss1);
    if (gt_rss_bounds_apply())
        assert_true(rss1 - rss0 < 8 * 1024);

    /* After all that, a good backing attaches, and only once. */
    GT_EXPECT(gt_attach(fe, 1, two, 2), OK);
    EXPECT_ERR(fe, gt_attach(fe, 1, two, 2), VIRTIO_GPU_RESP_ERR_UNSPEC);
    EXPECT_ERR(fe, gt_attach(fe, 1, two, 1), VIRTIO_GPU_RESP_ERR_UNSPEC);
    GT_EXPECT(gt_transfer(fe, 1, GT_RECT(0, 0, 32, 64), 0), OK);
    /* Detached, it can be attached again. */
    GT_EXPECT(gt_detach(fe, 1), OK);
    GT_EXPECT(gt_attach(fe, 1, two, 2), OK);
    itest_release(fe);
}

static void test_transfer_short_backing(void **state)
{
    struct vgpu_fe *fe = session();
    struct gt_backing bk;
    const uint64_t stride = 64 * 4;

    gt_backing_contig(fe, &bk, 4096); /* 16 rows of a 64x64 resource */
    GT_EXPECT(gt_create_2d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 64, 64), OK);
    GT_EXPECT(gt_attach_backing(fe, 1, &bk), OK);

    EXPECT_ERR(fe, gt_transfer(fe, 1, GT_RECT(0, 0, 64, 64), 0),
               VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    EXPECT_ERR(fe, gt_transfer(fe, 1, GT_RECT(0, 0, 64, 17), 0),
               VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    GT_EXPECT(gt_transfer(fe, 1, GT_RECT(0, 0, 64, 16), 0), OK); /* exactly the backing */
    EXPECT_ERR(fe, gt_transfer(fe, 1, GT_RECT(0, 0, 64, 16), 4),
               VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* A rectangle further down: Linux's offset puts it past the backing. */
    EXPECT_ERR(fe, gt_transfer(fe, 1, GT_RECT(0, 16, 64, 1), 16 * stride),
               VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    GT_EXPECT(gt_transfer(fe, 1, GT_RECT(0, 15, 64, 1), 15 * stride), OK);
    GT_EXPECT(gt_transfer(fe, 1, GT_RECT(63, 0, 1, 1), 4092), OK);
    EXPECT_ERR(fe, gt_transfer(fe, 1, GT_RECT(63, 0, 1, 1), 4093),
               VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* Offsets that overflow offset + length. */
    const uint64_t offs[] = {0xffffffffffffffffull, 0xfffffffffffffff0ull,
                             0xffffffffffffffffull - 4095, 0x8000000000000000ull, 1ull << 32};
    for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
        EXPECT_ERR(fe, gt_transfer(fe, 1, GT_RECT(0, 0, 1, 1), offs[i]),
                   VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
        EXPECT_ERR(fe, gt_transfer(fe, 1, GT_RECT(0, 0, 64, 16), offs[i]),
                   VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    }
    itest_release(fe);
}

/*
 * The front-end removes the memory region that holds a resource's backing (memory hot-unplug,
 * or a hostile front-end): transfers from it fail instead of reading unmapped memory, the
 * pixels already on the host stay usable, and the backing works again once the memory is back.
 */
static void test_backing_memory_removed(void **state)
{
    struct vgpu_fe_config cfg = config();

    cfg.two_regions = true;
    struct vgpu_fe *fe = session_cfg(&cfg);
    const struct vgpu_fe_region *r1 = vgpu_fe_region(fe, 1);
    uint64_t b = gt_alloc_across(fe, 16, 64 * 64 * 4); /* the backing: region 1 */
    struct gt_backing bk = {0};

    gt_backing_add(&bk, b, 64 * 64 * 4);
    GT_EXPECT(gt_create_2d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 64, 64), OK);
    GT_EXPECT(gt_attach_backing(fe, 1, &bk), OK);
    GT_EXPECT(gt_set_scanout(fe, 0, 1, GT_RECT(0, 0, 64, 64)), OK);
    for (int round = 0; round < 3; round++) {
        GT_EXPECT(gt_transfer(fe, 1, GT_RECT(0, 0, 64, 64), 0), OK);
        FE_CHECK(fe, vgpu_fe_rem_mem_reg(fe, r1));
        EXPECT_ERR(fe, gt_transfer(fe, 1, GT_RECT(0, 0, 64, 64), 0), VIRTIO_GPU_RESP_ERR_UNSPEC);
        EXPECT_ERR(fe, gt_transfer(fe, 1, GT_RECT(8, 8, 8, 8), (8 * 64 + 8) * 4),
                   VIRTIO_GPU_RESP_ERR_UNSPEC);
        GT_EXPECT(gt_flush(fe, 1, GT_RECT(0, 0, 64, 64)), OK);
        FE_CHECK(fe, vgpu_fe_add_mem_reg(fe, r1, vgpu_fe_mem_fd(fe)));
        GT_EXPECT(gt_transfer(fe, 1, GT_RECT(0, 0, 64, 64), 0), OK);
        GT_EXPECT(gt_flush(fe, 1, GT_RECT(0, 0, 64, 64)), OK);
    }
    display_sync(fe);
    itest_release(fe);
}

/* ---- scanout ids ---- */

static void test_scanout_id_out_of_range(void **state)
{
    static const uint32_t always_bad[] = {16, 17, 0x80000000u, 0xffffffffu};
    struct vgpu_fe *fe = session();

    GT_EXPECT(gt_create_2d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 16, 16), OK);
    for (size_t i = 0; i < sizeof(always_bad) / sizeof(always_bad[0]); i++) {
        const uint32_t s = always_bad[i];
        EXPECT_ERR(fe, gt_set_scanout(fe, s, 1, GT_RECT(0, 0, 16, 16)),
                   VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
        EXPECT_ERR(fe, gt_set_scanout(fe, s, 0, GT_RECT(0, 0, 0, 0)),
                   VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
        EXPECT_ERR(fe, gt_get_edid(fe, s, NULL), VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
    }
    display_sync(fe);
    assert_int_equal(vgpu_fe_display_count(fe, VGPU_FE_DISPLAY_SCANOUT), 0);
    itest_release(fe);

    /* Without QEMU's display the daemon's --outputs (1) is num_scanouts. */
    struct vgpu_fe_config cfg = config();
    cfg.no_display_socket = true;
    fe = session_cfg(&cfg);
    assert_int_equal(vgpu_fe_info(fe)->config.num_scanouts, 1);
    GT_EXPECT(gt_create_2d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 16, 16), OK);
    EXPECT_ERR(fe, gt_set_scanout(fe, 1, 1, GT_RECT(0, 0, 16, 16)),
               VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
    EXPECT_ERR(fe, gt_set_scanout(fe, 1, 0, GT_RECT(0, 0, 0, 0)),
               VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
    EXPECT_ERR(fe, gt_get_edid(fe, 1, NULL), VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
    for (size_t i = 0; i < sizeof(always_bad) / sizeof(always_bad[0]); i++) {
        EXPECT_ERR(fe, gt_set_scanout(fe, always_bad[i], 1, GT_RECT(0, 0, 16, 16)),
                   VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
        EXPECT_ERR(fe, gt_get_edid(fe, always_bad[i], NULL),
                   VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
    }
    GT_EXPECT(gt_set_scanout(fe, 0, 1, GT_RECT(0, 0, 16, 16)), OK);
    GT_EXPECT(gt_get_edid(fe, 0, NULL), VIRTIO_GPU_RESP_OK_EDID);
    itest_release(fe);
}

/* ---- cursor queue ---- */

static void test_cursor_bad(void **state)
{
    struct vgpu_fe *fe = session();
    static const uint32_t sizes[][2] = {{32, 32}, {64, 65}, {65, 64}, {1, 1}, {128, 128}};

    for (uint32_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        GT_EXPECT(
            gt_create_2d(fe, 10 + i, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, sizes[i][0], sizes[i][1]),
            OK);
    GT_EXPECT(gt_create_2d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 64, 64), OK);

    /* Not 64x64, unknown, or on a scanout that does not exist: ignored. */
    for (uint32_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        gt_cursor(fe, VIRTIO_GPU_CMD_UPDATE_CURSOR, 0, 10, 10, 10 + i, 0, 0);
    gt_cursor(fe, VIRTIO_GPU_CMD_UPDATE_CURSOR, 0, 10, 10, 4242, 0, 0);
    gt_cursor(fe, VIRTIO_GPU_CMD_UPDATE_CURSOR, 99, 10, 10, 1, 0, 0);
    gt_cursor(fe, VIRTIO_GPU_CMD_UPDATE_CURSOR, 16, 10, 10, 1, 0, 0);
    gt_cursor(fe, VIRTIO_GPU_CMD_UPDATE_CURSOR, 0xffffffffu, 10, 10, 1, 0, 0);
    gt_cursor(fe, VIRTIO_GPU_CMD_MOVE_CURSOR, 99, 10, 10, 1, 0, 0);
    gt_cursor(fe, VIRTIO_GPU_CMD_MOVE_CURSOR, 0xffffffffu, 10, 10, 0, 0, 0);
    /* Not a cursor command, or cut short: ignored too, and not executed. */
    struct virtio_gpu_resource_create_2d c = {
        .hdr = {.type = VIRTIO_GPU_CMD_RESOURCE_CREATE_2D},
        .resource_id = 50,
        .format = VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM,
        .width = 64,
        .height = 64,
    };
    uint8_t big[64] = {0};
    memcpy(big, &c, sizeof(c));
    uint32_t len = 1;
    FE_CHECK(fe,
             vgpu_fe_cmd(fe, VGPU_FE_CURSORQ, big, sizeof(big), NULL, 0, 0, itest_ms(5000), &len));
    assert_int_equal(len, 0);
    struct virtio_gpu_update_cursor uc = {.hdr = {.type = VIRTIO_GPU_CMD_UPDATE_CURSOR},
                                          .resource_id = 1};
    len = 1;
    FE_CHECK(fe, vgpu_fe_cmd(fe, VGPU_FE_CURSORQ, &uc, 40, NULL, 0, 0, itest_ms(5000), &len));
    assert_int_equal(len, 0);
    /* A writable buffer on the cursor queue: not written. */
    uint8_t resp[24];
    len = 1;
    FE_CHECK(fe, vgpu_fe_cmd(fe, VGPU_FE_CURSORQ, &uc, sizeof(uc), resp, sizeof(resp), 0,
                             itest_ms(5000), &len));
    assert_int_equal(len, 0);

    display_sync(fe);
    assert_int_equal(vgpu_fe_display_count(fe, VGPU_FE_DISPLAY_CURSOR_POS), 0);
    assert_int_equal(vgpu_fe_display_count(fe, VGPU_FE_DISPLAY_CURSOR_POS_HIDE), 0);
    /* The full-size UPDATE_CURSOR just above was the only good one. */
    assert_int_equal(vgpu_fe_display_count(fe, VGPU_FE_DISPLAY_CURSOR_UPDATE), 1);
    /* The CREATE_2D sent on the cursor queue did not create anything. */
    GT_EXPECT(gt_create_2d(fe, 50, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 64, 64), OK);

    /* And the cursor works. */
    gt_cursor(fe, VIRTIO_GPU_CMD_UPDATE_CURSOR, 0, 1, 2, 50, 0, 0);
    gt_cursor(fe, VIRTIO_GPU_CMD_MOVE_CURSOR, 0, 3, 4, 50, 0, 0);
    display_sync(fe);
    assert_int_equal(vgpu_fe_display_count(fe, VGPU_FE_DISPLAY_CURSOR_UPDATE), 2);
    assert_int_equal(vgpu_fe_display_count(fe, VGPU_FE_DISPLAY_CURSOR_POS), 1);
    itest_release(fe);
}

/* ---- malformed chains and requests ---- */

/* Posts the buffers, waits for the chain and returns its used length. */
static uint32_t post_raw(struct vgpu_fe *fe, const struct vgpu_fe_buf *bufs, unsigned int n_out,
                         unsigned int n_in)
{
    uint16_t head = 0;
    uint32_t len = 0;
    int h = vgpu_fe_vq_post(fe, VGPU_FE_CTRLQ, bufs, n_out, n_in, 0);

    FE_CHECK(fe, h);
    FE_CHECK(fe, vgpu_fe_vq_wait_used(fe, VGPU_FE_CTRLQ, itest_ms(5000), &head, &len));
    assert_int_equal(head, h);
    return len;
}

static void check_poison(struct vgpu_fe *fe, uint64_t gpa, size_t len, const char *what)
{
    const uint8_t *p = vgpu_fe_gpa_ptr(fe, gpa, len);

    for (size_t i = 0; i < len; i++) {
        if (p[i] != 0xa5) {
            print_error("%s: byte %zu past the response buffer was written\n", what, i);
            fail();
        }
    }
}

static void test_short_buffers(void **state)
{
    struct vgpu_fe *fe = session();
    uint64_t req = vgpu_fe_alloc(fe, 64, 64), resp = vgpu_fe_alloc(fe, 1024, 64);
    struct virtio_gpu_ctrl_hdr di = {.type = VIRTIO_GPU_CMD_GET_DISPLAY_INFO};
    struct virtio_gpu_resource_create_2d c = {
        .hdr = {.type = VIRTIO_GPU_CMD_RESOURCE_CREATE_2D},
        .resource_id = 60,
        .format = VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
        .width = 16,
        .height = 16,
    };

    /* A response buffer too small for the response: used length 0, nothing written past it. */
    memcpy(vgpu_fe_gpa_ptr(fe, req, sizeof(di)), &di, sizeof(di));
    memset(vgpu_fe_gpa_ptr(fe, resp, 1024), 0xa5, 1024);
    struct vgpu_fe_buf b[3] = {{req, sizeof(di)}, {resp, 8}};
    assert_int_equal(post_raw(fe, b, 1, 1), 0);
    check_poison(fe, resp + 8, 1024 - 8, "GET_DISPLAY_INFO into 8 bytes");
    b[1].len = 407;
    assert_int_equal(post_raw(fe, b, 1, 1), 0);
    check_poison(fe, resp + 407, 1024 - 407, "GET_DISPLAY_INFO into 407 bytes");
    c.resource_id = 61;
    memcpy(vgpu_fe_gpa_ptr(fe, req, sizeof(c)), &c, sizeof(c));
    c.resource_id = 60;
    b[0].len = sizeof(c);
    b[1].len = 16;
    assert_int_equal(post_raw(fe, b, 1, 1), 0);
    check_poison(fe, resp + 16, 1024 - 16, "CREATE_2D into 16 bytes");
    good_cmd(fe);

    /* No writable buffer at all. */
    memcpy(vgpu_fe_gpa_ptr(fe, req, sizeof(di)), &di, sizeof(di));
    b[0].len = sizeof(di);
    assert_int_equal(post_raw(fe, b, 1, 0), 0);
    good_cmd(fe);

    /* The response split over two writable buffers, the request over three readable ones. */
    memset(vgpu_fe_gpa_ptr(fe, resp, 1024), 0xa5, 1024);
    struct vgpu_fe_buf split[5] = {
        {req, 10}, {req + 10, 4}, {req + 14, 10}, {resp, 200}, {resp + 512, 208}};
    assert_int_equal(post_raw(fe, split, 3, 2), 408);
    struct virtio_gpu_resp_display_info info;
    memcpy(&info, vgpu_fe_gpa_ptr(fe, resp, 200), 200);
    memcpy((uint8_t *)&info + 200, vgpu_fe_gpa_ptr(fe, resp + 512, 208), 208);
    assert_int_equal(info.hdr.type, VIRTIO_GPU_RESP_OK_DISPLAY_INFO);
    assert_int_equal(info.pmodes[0].r.width, 1280);
    assert_int_equal(info.pmodes[0].r.height, 800);
    check_poison(fe, resp + 200, 312, "split response, between the buffers");

    /* Truncated requests: a 20-byte header, a CREATE_2D cut at 30 bytes. */
    EXPECT_ERR(fe, gt_cmd0(fe, &di, 20), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    EXPECT_ERR(fe, gt_cmd0(fe, &c, 30), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    EXPECT_ERR(fe, gt_cmd0(fe, &c, 1), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    struct virtio_gpu_set_scanout so = {.hdr = {.type = VIRTIO_GPU_CMD_SET_SCANOUT}};
    EXPECT_ERR(fe, gt_cmd0(fe, &so, sizeof(so) - 1), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    GT_EXPECT(gt_create_2d(fe, 60, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 16, 16), OK);
    itest_release(fe);
}

/* ---- commands a 2D device does not have ---- */

static void test_unsupported_commands(void **state)
{
    static const uint32_t unspec[] = {
        0x9999,      0x0000, 0x00ff, 0x010e, 0x010c, /* RESOURCE_CREATE_BLOB */
        0x010d,                                      /* SET_SCANOUT_BLOB */
        0x0200,                                      /* CTX_CREATE */
        0x0201,      0x0202, 0x0203, 0x0204,         /* RESOURCE_CREATE_3D */
        0x0205,      0x0206, 0x0207,                 /* SUBMIT_3D */
        0x0208,      0x0209, 0x0300,                 /* UPDATE_CURSOR, on the control queue */
        0x0301,      0x1100,                         /* a response type */
        0xffffffffu,
    };
    struct vgpu_fe *fe = session();
    uint8_t req[128];

    GT_EXPECT(gt_create_2d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 64, 64), OK);
    for (size_t i = 0; i < sizeof(unspec) / sizeof(unspec[0]); i++) {
        /* Plausible bodies: resource 1, a 32-byte command stream for SUBMIT_3D. */
        memset(req, 0, sizeof(req));
        struct virtio_gpu_ctrl_hdr h = {
            .type = unspec[i], .flags = VIRTIO_GPU_FLAG_FENCE, .fence_id = 100 + i, .ctx_id = 1};
        memcpy(req, &h, sizeof(h));
        gt_store_u32(req, 24, unspec[i] == 0x0207 ? 32 : 1);
        gt_store_u32(req, 28, 1);
        EXPECT_ERR(fe, gt_cmd0(fe, req, sizeof(req)), VIRTIO_GPU_RESP_ERR_UNSPEC);
    }
    /* No capsets in 2D. */
    const uint32_t idx[] = {0, 1, 0xffffffffu};
    for (size_t i = 0; i < sizeof(idx) / sizeof(idx[0]); i++) {
        struct virtio_gpu_get_capset_info ci = {
            .hdr = {.type = VIRTIO_GPU_CMD_GET_CAPSET_INFO},
            .capset_index = idx[i],
        };
        EXPECT_ERR(fe,
                   gt_cmd(fe, &ci, sizeof(ci), NULL, sizeof(struct virtio_gpu_resp_capset_info)),
                   VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    }
    struct virtio_gpu_get_capset cs = {
        .hdr = {.type = VIRTIO_GPU_CMD_GET_CAPSET}, .capset_id = 1, .capset_version = 0};
    EXPECT_ERR(fe, gt_cmd(fe, &cs, sizeof(cs), NULL, 1024), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* The resource the 3D commands named is untouched. */
    GT_EXPECT(gt_set_scanout(fe, 0, 1, GT_RECT(0, 0, 64, 64)), OK);
    itest_release(fe);
}

/* EDID and UUID commands when the guest did not ack the feature. */
static void test_features_not_acked(void **state)
{
    struct vgpu_fe_config cfg;

    vgpu_fe_config_init(&cfg);
    struct vgpu_fe *fe = session_cfg(&cfg);
    assert_false(vgpu_fe_info(fe)->acked_features &
                 (BIT(VIRTIO_GPU_F_EDID) | BIT(VIRTIO_GPU_F_RESOURCE_UUID)));
    GT_EXPECT(gt_create_2d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 16, 16), OK);
    EXPECT_ERR(fe, gt_get_edid(fe, 0, NULL), VIRTIO_GPU_RESP_ERR_UNSPEC);
    struct virtio_gpu_resource_assign_uuid u = {
        .hdr = {.type = VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID},
        .resource_id = 1,
    };
    EXPECT_ERR(fe, gt_cmd(fe, &u, sizeof(u), NULL, sizeof(struct virtio_gpu_resp_resource_uuid)),
               VIRTIO_GPU_RESP_ERR_UNSPEC);
    itest_release(fe);
}

/* ---- use after free ---- */

/*
 * UNREF of a resource that is on a scanout, is the cursor and has its backing attached, then
 * everything that could still reach it. The sanitizer lane turns a use after free into a
 * failure; here the daemon must answer each with the right code and tell QEMU the scanout is
 * gone.
 */
static void test_unref_in_use(void **state)
{
    struct vgpu_fe *fe = session();
    struct gt_backing bk;

    gt_backing_contig(fe, &bk, 64 * 64 * 4);
    GT_EXPECT(gt_create_2d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 64, 64), OK);
    GT_EXPECT(gt_attach_backing(fe, 1, &bk), OK);
    GT_EXPECT(gt_transfer(fe, 1, GT_RECT(0, 0, 64, 64), 0), OK);
    GT_EXPECT(gt_set_scanout(fe, 0, 1, GT_RECT(0, 0, 64, 64)), OK);
    GT_EXPECT(gt_flush(fe, 1, GT_RECT(0, 0, 64, 64)), OK);
    gt_cursor(fe, VIRTIO_GPU_CMD_UPDATE_CURSOR, 0, 10, 10, 1, 0, 0);

    GT_EXPECT(gt_unref(fe, 1), OK);
    EXPECT_ERR(fe, gt_flush(fe, 1, GT_RECT(0, 0, 64, 64)), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    EXPECT_ERR(fe, gt_transfer(fe, 1, GT_RECT(0, 0, 64, 64), 0),
               VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    EXPECT_ERR(fe, gt_detach(fe, 1), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    EXPECT_ERR(fe, gt_set_scanout(fe, 0, 1, GT_RECT(0, 0, 64, 64)),
               VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    gt_cursor(fe, VIRTIO_GPU_CMD_MOVE_CURSOR, 0, 20, 20, 1, 0, 0);
    gt_cursor(fe, VIRTIO_GPU_CMD_UPDATE_CURSOR, 0, 30, 30, 1, 0, 0);
    display_sync(fe);
    /* Shown once, removed once; one image, then only the move. */
    assert_int_equal(vgpu_fe_display_count(fe, VGPU_FE_DISPLAY_SCANOUT), 2);
    assert_int_equal(vgpu_fe_display_count(fe, VGPU_FE_DISPLAY_CURSOR_UPDATE), 1);
    assert_int_equal(vgpu_fe_display_count(fe, VGPU_FE_DISPLAY_CURSOR_POS), 1);

    /* The same, pipelined: transfer and flush still queued when UNREF arrives behind them. */
    GT_EXPECT(gt_create_2d(fe, 2, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 64, 64), OK);
    GT_EXPECT(gt_attach_backing(fe, 2, &bk), OK);
    GT_EXPECT(gt_set_scanout(fe, 0, 2, GT_RECT(0, 0, 64, 64)), OK);
    struct virtio_gpu_transfer_to_host_2d t = {.hdr = {.type = VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D},
                                               .r = GT_RECT(0, 0, 64, 64),
                                               .resource_id = 2};
    struct virtio_gpu_resource_flush f = {.hdr = {.type = VIRTIO_GPU_CMD_RESOURCE_FLUSH},
                                          .r = GT_RECT(0, 0, 64, 64),
                                          .resource_id = 2};
    struct virtio_gpu_resource_unref u = {.hdr = {.type = VIRTIO_GPU_CMD_RESOURCE_UNREF},
                                          .resource_id = 2};
    for (int round = 0; round < 20; round++) {
        struct gt_req r[5];
        uint64_t mark = vgpu_fe_alloc_mark(fe);
        if (round > 0) {
            GT_EXPECT(gt_create_2d(fe, 2, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 64, 64), OK);
            GT_EXPECT(gt_attach_backing(fe, 2, &bk), OK);
            GT_EXPECT(gt_set_scanout(fe, 0, 2, GT_RECT(0, 0, 64, 64)), OK);
        }
        gt_post(fe, &t, sizeof(t), 24, VGPU_FE_POST_NO_KICK, &r[0]);
        gt_post(fe, &f, sizeof(f), 24, VGPU_FE_POST_NO_KICK, &r[1]);
        gt_post(fe, &u, sizeof(u), 24, VGPU_FE_POST_NO_KICK, &r[2]);
        gt_post(fe, &f, sizeof(f), 24, VGPU_FE_POST_NO_KICK, &r[3]);
        gt_post(fe, &t, sizeof(t), 24, VGPU_FE_POST_NO_KICK, &r[4]);
        FE_CHECK(fe, vgpu_fe_vq_kick(fe, VGPU_FE_CTRLQ));
        gt_cursor(fe, VIRTIO_GPU_CMD_UPDATE_CURSOR, 0, 1, 1, 2, 0, 0);
        GT_EXPECT(gt_wait(fe, &r[0], itest_ms(5000), NULL), OK);
        GT_EXPECT(gt_wait(fe, &r[1], itest_ms(5000), NULL), OK);
        GT_EXPECT(gt_wait(fe, &r[2], itest_ms(5000), NULL), OK);
        GT_EXPECT(gt_wait(fe, &r[3], itest_ms(5000), NULL),
                  VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
        GT_EXPECT(gt_wait(fe, &r[4], itest_ms(5000), NULL),
                  VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
        vgpu_fe_alloc_release(fe, mark);
    }
    display_sync(fe);
    good_cmd(fe);
    itest_release(fe);
}

/* Last: every fd of those sessions is closed, and SIGTERM ends the daemon cleanly. */
static void test_fds_and_sigterm(void **state)
{
    int n = connected_fd_count();

    if (n != fx.fd_ref) {
        char buf[8192];
        vgpu_fe_daemon_fd_list(fx.d, buf, sizeof(buf));
        print_error("daemon fds: %d now, %d before the bad guests:\n%s", n, fx.fd_ref, buf);
        fail();
    }

    /* SIGTERM with a session in full use: resources, a scanout, a cursor. */
    struct vgpu_fe *fe = session();
    struct gt_backing bk;
    gt_backing_contig(fe, &bk, 64 * 64 * 4);
    GT_EXPECT(gt_create_2d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 64, 64), OK);
    GT_EXPECT(gt_attach_backing(fe, 1, &bk), OK);
    GT_EXPECT(gt_transfer(fe, 1, GT_RECT(0, 0, 64, 64), 0), OK);
    GT_EXPECT(gt_set_scanout(fe, 0, 1, GT_RECT(0, 0, 64, 64)), OK);
    GT_EXPECT(gt_flush(fe, 1, GT_RECT(0, 0, 64, 64)), OK);
    gt_cursor(fe, VIRTIO_GPU_CMD_UPDATE_CURSOR, 0, 10, 10, 1, 0, 0);
    display_sync(fe);
    int status = 0;
    assert_int_equal(vgpu_fe_daemon_signal(fx.d, SIGTERM), 0);
    if (vgpu_fe_daemon_wait(fx.d, itest_ms(10000), &status) < 0) {
        print_error("the daemon did not exit within 10 s of SIGTERM\n");
        fail();
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        print_error("SIGTERM: the daemon ended with wait status 0x%x (exit %d, signal %d)\n",
                    status, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        fail();
    }
    itest_release(fe);
}

/* After SIGTERM the daemon is gone: this teardown only echoes its log. */
static int teardown_last(void **state)
{
    itest_release_all();
    const char *log = new_log();

    if (*log != '\0')
        (void)fprintf(stderr, "---- daemon log ----\n%s--------------------\n", log);
    return 0;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_create_2d_bad),
        T(test_create_2d_huge),
        T(test_hostmem_cap),
        T(test_resource_count_cap),
        T(test_unknown_resource_id),
        T(test_rect_outside_resource),
        T(test_attach_backing_bad),
        T(test_transfer_short_backing),
        T(test_backing_memory_removed),
        T(test_scanout_id_out_of_range),
        T(test_cursor_bad),
        T(test_short_buffers),
        T(test_unsupported_commands),
        T(test_features_not_acked),
        T(test_unref_in_use),
        cmocka_unit_test_setup_teardown(test_fds_and_sigterm, setup, teardown_last),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
