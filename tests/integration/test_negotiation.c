/* SPDX-License-Identifier: MIT */
/*
 * The daemon against the exact message sequences QEMU 10 sends for vhost-user-gpu-pci
 * (reference doc 1.6), with real round trips on both virtqueues in every ring mode a Linux
 * guest uses.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/virtio_config.h>

#include "itest.h"

#define BIT(n) (1ull << (n))

struct session {
    struct vgpu_fe_daemon *d;
    struct vgpu_fe *fe;
};

static int teardown(void **state)
{
    struct session *s = *state;

    itest_release_all();
    if (s != NULL) {
        vgpu_fe_daemon_destroy(s->d);
        free(s);
    }
    *state = NULL;
    return 0;
}

/* Spawns an --fd daemon with a session configured by cfg (NULL: defaults). */
static struct session *start_session(void **state, const struct vgpu_fe_config *cfg)
{
    struct session *s = calloc(1, sizeof(*s));

    assert_non_null(s);
    *state = s;
    s->d = itest_spawn_fd(cfg, 0, &s->fe);
    return s;
}

/* Destroys the session and checks the --fd daemon exits 0 on the disconnect. */
static void finish_session(struct session *s)
{
    struct vgpu_fe *fe = s->fe;

    s->fe = NULL;
    itest_finish_fd(s->d, fe);
}

static void test_offer(void **state)
{
    struct session *s = start_session(state, NULL);
    struct vgpu_fe *fe = s->fe;

    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    const struct vgpu_fe_info *i = vgpu_fe_info(fe);

    /* GET_FEATURES: VERSION_1, INDIRECT_DESC, EVENT_IDX, PROTOCOL_FEATURES */
    uint64_t need = BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_RING_F_INDIRECT_DESC) |
                    BIT(VIRTIO_RING_F_EVENT_IDX) | BIT(VGPU_FE_F_PROTOCOL_FEATURES);
    assert_int_equal(i->features & need, need);
    /* A split-ring-only back-end must not offer the packed layout. */
    assert_false(i->features & BIT(VIRTIO_F_RING_PACKED));

    uint64_t pneed = BIT(VGPU_FE_PROTO_MQ) | BIT(VGPU_FE_PROTO_REPLY_ACK) |
                     BIT(VGPU_FE_PROTO_BACKEND_REQ) | BIT(VGPU_FE_PROTO_CONFIG) |
                     BIT(VGPU_FE_PROTO_RESET_DEVICE) | BIT(VGPU_FE_PROTO_CONFIGURE_MEM_SLOTS);
    assert_int_equal(i->protocol_features & pneed, pneed);
    assert_int_equal(i->protocol_acked & pneed, pneed);
    assert_int_equal(i->queue_num, 2);
    assert_int_equal(i->max_mem_slots, 32);

    /* GET_CONFIG replies were exactly 28 bytes (checked by the front-end). */
    assert_int_equal(i->config.num_scanouts, 1);
    assert_int_equal(i->config.num_capsets, 0);
    assert_int_equal(i->config.events_read, 0);

    /* SET_FEATURES carried what the guest acked. */
    assert_int_equal(i->acked_features, need);
    assert_true(vgpu_fe_backend_fd(fe) >= 0);
    assert_true(vgpu_fe_display_fd(fe) >= 0);

    /* QEMU forwards a guest write of events_clear as SET_CONFIG with NEED_REPLY. */
    struct virtio_gpu_config c = i->config;
    c.events_clear = 1;
    FE_CHECK(fe, vgpu_fe_set_config(fe, 0, &c, sizeof(c)));
    /* A config read in the middle of a session, as a guest may do at any time. */
    uint32_t n = 0;
    FE_CHECK(fe, vgpu_fe_get_config(fe, 12, sizeof(n), &n));
    assert_int_equal(n, 0);

    itest_roundtrip(fe, 0);
    finish_session(s);
}

/* Ring modes for test_modes. */
enum {
    MODE_INDIRECT = 1u << 0,
    MODE_NO_EVENT_IDX = 1u << 1,
    MODE_ALWAYS_KICK = 1u << 2,
};

static const unsigned int mode_direct = 0;
static const unsigned int mode_indirect = MODE_INDIRECT;
static const unsigned int mode_direct_noevidx = MODE_NO_EVENT_IDX;
static const unsigned int mode_indirect_noevidx = MODE_INDIRECT | MODE_NO_EVENT_IDX;
static const unsigned int mode_direct_kick = MODE_ALWAYS_KICK;
static const unsigned int mode_indirect_noevidx_kick =
    MODE_INDIRECT | MODE_NO_EVENT_IDX | MODE_ALWAYS_KICK;

/*
 * Posts n control commands at once (one kick decision for the batch), then collects all n
 * responses, in whatever order the daemon completes them.
 */
static void batch(struct vgpu_fe *fe, unsigned int n, unsigned int post_flags, uint64_t fence0)
{
    uint64_t mark = vgpu_fe_alloc_mark(fe);
    uint64_t req_gpa[64] = {0}, resp_gpa[64] = {0};
    int head_of[64];

    assert_true(n <= 64);
    for (unsigned int k = 0; k < n; k++) {
        req_gpa[k] = vgpu_fe_alloc(fe, sizeof(struct virtio_gpu_ctrl_hdr), 64);
        resp_gpa[k] = vgpu_fe_alloc(fe, sizeof(struct virtio_gpu_ctrl_hdr), 64);
        assert_true(req_gpa[k] != 0 && resp_gpa[k] != 0);
        itest_fill_unspec(vgpu_fe_gpa_ptr(fe, req_gpa[k], 24), fence0 + k);
        struct vgpu_fe_buf bufs[2] = {{req_gpa[k], 24}, {resp_gpa[k], 24}};
        head_of[k] =
            vgpu_fe_vq_post(fe, VGPU_FE_CTRLQ, bufs, 1, 1, post_flags | VGPU_FE_POST_NO_KICK);
        FE_CHECK(fe, head_of[k]);
    }
    int kicked = vgpu_fe_vq_kick_if_needed(fe, VGPU_FE_CTRLQ);
    FE_CHECK(fe, kicked);
    /* The queue was idle, so EVENT_IDX's avail_event (or the flags) must ask for this kick. */
    assert_int_equal(kicked, 1);
    for (unsigned int got = 0; got < n; got++) {
        uint16_t head;
        uint32_t len;
        FE_CHECK(fe, vgpu_fe_vq_wait_used(fe, VGPU_FE_CTRLQ, itest_ms(5000), &head, &len));
        assert_int_equal(len, 24);
        unsigned int k = 0;
        while (k < n && head_of[k] != (int)head)
            k++;
        assert_true(k < n);
        head_of[k] = -1;
        itest_check_unspec(vgpu_fe_gpa_ptr(fe, resp_gpa[k], 24), fence0 + k);
    }
    assert_int_equal(vgpu_fe_vq_inflight(fe, VGPU_FE_CTRLQ), 0);
    vgpu_fe_alloc_release(fe, mark);
}

static void test_modes(void **state)
{
    unsigned int mode = *(const unsigned int *)*state;
    struct vgpu_fe_config cfg;

    *state = NULL;
    vgpu_fe_config_init(&cfg);
    if (mode & MODE_NO_EVENT_IDX)
        cfg.guest_features &= ~BIT(VIRTIO_RING_F_EVENT_IDX);
    cfg.always_kick = (mode & MODE_ALWAYS_KICK) != 0;
    unsigned int pf = (mode & MODE_INDIRECT) ? VGPU_FE_POST_INDIRECT : 0;

    struct session *s = start_session(state, &cfg);
    struct vgpu_fe *fe = s->fe;
    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    assert_int_equal((vgpu_fe_info(fe)->acked_features >> VIRTIO_RING_F_EVENT_IDX) & 1,
                     (mode & MODE_NO_EVENT_IDX) ? 0 : 1);

    /* More than three times around both rings: index wrap-around on both sides. */
    for (unsigned int k = 0; k < 200; k++) {
        itest_ctrl_roundtrip(fe, pf, 1000 + k);
        if (k % 4 == 0)
            itest_cursor_roundtrip(fe, pf);
    }
    /* Direct chains take two descriptors each, indirect ones one. */
    unsigned int per_batch = (mode & MODE_INDIRECT) ? 48 : 24;
    for (unsigned int b = 0; b < 4; b++)
        batch(fe, per_batch, pf, 5000 + 100 * b);
    /* Every completion was announced on the call eventfd (strict_notify). */
    assert_true(vgpu_fe_vq_calls(fe, VGPU_FE_CTRLQ) > 0);
    /* A full ring of commands in one batch. */
    batch(fe, (mode & MODE_INDIRECT) ? 64 : 32, pf, 9000);
    finish_session(s);
}

/* Guest memory in two regions; buffers, an indirect table and rings across the boundary. */
static void test_two_regions(void **state)
{
    struct vgpu_fe_config cfg;

    vgpu_fe_config_init(&cfg);
    cfg.two_regions = true;
    struct session *s = start_session(state, &cfg);
    struct vgpu_fe *fe = s->fe;
    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    assert_int_equal(vgpu_fe_num_regions(fe), 2);
    itest_roundtrip(fe, 0);

    const uint64_t b = vgpu_fe_region(fe, 1)->gpa;
    uint16_t head;
    uint32_t len;

    /* Request header straddles the boundary (12 + 12 bytes), response in region 1. */
    itest_fill_unspec(vgpu_fe_gpa_ptr(fe, b - 12, 24), 11);
    memset(vgpu_fe_gpa_ptr(fe, b + 256, 24), 0xa5, 24);
    struct vgpu_fe_buf c1[2] = {{b - 12, 24}, {b + 256, 24}};
    int h = vgpu_fe_vq_post(fe, VGPU_FE_CTRLQ, c1, 1, 1, 0);
    FE_CHECK(fe, h);
    FE_CHECK(fe, vgpu_fe_vq_wait_used(fe, VGPU_FE_CTRLQ, itest_ms(5000), &head, &len));
    assert_int_equal(head, h);
    assert_int_equal(len, 24);
    itest_check_unspec(vgpu_fe_gpa_ptr(fe, b + 256, 24), 11);

    /* Response straddles the boundary (8 + 16 bytes), request in region 1. */
    itest_fill_unspec(vgpu_fe_gpa_ptr(fe, b + 512, 24), 12);
    memset(vgpu_fe_gpa_ptr(fe, b - 8, 24), 0xa5, 24);
    struct vgpu_fe_buf c2[2] = {{b + 512, 24}, {b - 8, 24}};
    h = vgpu_fe_vq_post(fe, VGPU_FE_CTRLQ, c2, 1, 1, VGPU_FE_POST_INDIRECT);
    FE_CHECK(fe, h);
    FE_CHECK(fe, vgpu_fe_vq_wait_used(fe, VGPU_FE_CTRLQ, itest_ms(5000), &head, &len));
    assert_int_equal(head, h);
    assert_int_equal(len, 24);
    itest_check_unspec(vgpu_fe_gpa_ptr(fe, b - 8, 24), 12);

    /* The request split in two descriptors, one per region. */
    itest_fill_unspec(vgpu_fe_gpa_ptr(fe, b + 1024, 24), 13);
    memcpy(vgpu_fe_gpa_ptr(fe, b - 4096, 10), vgpu_fe_gpa_ptr(fe, b + 1024, 10), 10);
    memcpy(vgpu_fe_gpa_ptr(fe, b + 2048, 14), (uint8_t *)vgpu_fe_gpa_ptr(fe, b + 1024, 24) + 10,
           14);
    struct vgpu_fe_buf c3[3] = {{b - 4096, 10}, {b + 2048, 14}, {b + 4096, 24}};
    h = vgpu_fe_vq_post(fe, VGPU_FE_CTRLQ, c3, 2, 1, 0);
    FE_CHECK(fe, h);
    FE_CHECK(fe, vgpu_fe_vq_wait_used(fe, VGPU_FE_CTRLQ, itest_ms(5000), &head, &len));
    assert_int_equal(head, h);
    assert_int_equal(len, 24);
    itest_check_unspec(vgpu_fe_gpa_ptr(fe, b + 4096, 24), 13);

    /* MOVE_CURSOR straddling the boundary. */
    struct virtio_gpu_update_cursor mc;
    memset(&mc, 0, sizeof(mc));
    mc.hdr.type = VIRTIO_GPU_CMD_MOVE_CURSOR;
    memcpy(vgpu_fe_gpa_ptr(fe, b - 20, sizeof(mc)), &mc, sizeof(mc));
    struct vgpu_fe_buf c4[1] = {{b - 20, sizeof(mc)}};
    h = vgpu_fe_vq_post(fe, VGPU_FE_CURSORQ, c4, 1, 0, 0);
    FE_CHECK(fe, h);
    FE_CHECK(fe, vgpu_fe_vq_wait_used(fe, VGPU_FE_CURSORQ, itest_ms(5000), &head, &len));
    assert_int_equal(head, h);
    assert_int_equal(len, 0);

    /* Restart with the rings themselves in region 1 (second user-address range). */
    FE_CHECK(fe, vgpu_fe_stop(fe));
    uint64_t skip = b + 64 * 1024ull - vgpu_fe_alloc_mark(fe);
    assert_true(vgpu_fe_alloc(fe, skip, 16) != 0);
    FE_CHECK(fe, vgpu_fe_start(fe));
    uint64_t desc, avail, used;
    vgpu_fe_vq_addrs(fe, VGPU_FE_CTRLQ, &desc, &avail, &used);
    assert_true(desc >= b && avail >= b && used >= b);
    for (unsigned int k = 0; k < 70; k++)
        itest_ctrl_roundtrip(fe, k & 1 ? VGPU_FE_POST_INDIRECT : 0, 100 + k);
    itest_cursor_roundtrip(fe, 0);
    finish_session(s);
}

/*
 * An indirect table that itself straddles the region boundary: valid for the device (the
 * table is contiguous in guest-physical space), and a kmalloc'd table can land there.
 */
static void test_indirect_table_across_regions(void **state)
{
    struct vgpu_fe_config cfg;

    vgpu_fe_config_init(&cfg);
    cfg.two_regions = true;
    struct session *s = start_session(state, &cfg);
    struct vgpu_fe *fe = s->fe;
    FE_CHECK(fe, vgpu_fe_negotiate(fe));

    const uint64_t b = vgpu_fe_region(fe, 1)->gpa;
    uint64_t req = b + 8192, resp = b - 8192;
    itest_fill_unspec(vgpu_fe_gpa_ptr(fe, req, 24), 21);
    struct vring_desc *t = vgpu_fe_gpa_ptr(fe, b - 16, 32);
    t[0] = (struct vring_desc){.addr = req, .len = 24, .flags = VRING_DESC_F_NEXT, .next = 1};
    t[1] = (struct vring_desc){.addr = resp, .len = 24, .flags = VRING_DESC_F_WRITE, .next = 0};
    int d0 = vgpu_fe_vq_alloc_desc(fe, VGPU_FE_CTRLQ);
    FE_CHECK(fe, d0);
    vgpu_fe_vq_desc(fe, VGPU_FE_CTRLQ)[d0] =
        (struct vring_desc){.addr = b - 16, .len = 32, .flags = VRING_DESC_F_INDIRECT};
    FE_CHECK(fe, vgpu_fe_vq_publish(fe, VGPU_FE_CTRLQ, (uint16_t)d0, 0));
    uint16_t head;
    uint32_t len;
    FE_CHECK(fe, vgpu_fe_vq_wait_used(fe, VGPU_FE_CTRLQ, itest_ms(5000), &head, &len));
    vgpu_fe_vq_free_desc(fe, VGPU_FE_CTRLQ, (uint16_t)d0);
    assert_int_equal(head, d0);
    assert_int_equal(len, 24);
    itest_check_unspec(vgpu_fe_gpa_ptr(fe, resp, 24), 21);
    itest_roundtrip(fe, 0);
    finish_session(s);
}

/* Only F_CONFIG: QEMU then uses SET_MEM_TABLE and never sets NEED_REPLY. */
static void test_reduced_protocol(void **state)
{
    struct vgpu_fe_config cfg;

    vgpu_fe_config_init(&cfg);
    cfg.protocol_mask = BIT(VGPU_FE_PROTO_CONFIG);
    cfg.two_regions = true;
    struct session *s = start_session(state, &cfg);
    struct vgpu_fe *fe = s->fe;
    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    const struct vgpu_fe_info *i = vgpu_fe_info(fe);
    assert_int_equal(i->protocol_acked, BIT(VGPU_FE_PROTO_CONFIG));
    assert_int_equal(i->queue_num, 0);
    assert_int_equal(i->max_mem_slots, 0);
    assert_int_equal(vgpu_fe_backend_fd(fe), -1);
    assert_int_equal(i->config.num_scanouts, 1);
    itest_roundtrip(fe, 0);
    itest_roundtrip(fe, VGPU_FE_POST_INDIRECT);
    /* Restart re-sends SET_MEM_TABLE with the same regions, as QEMU does. */
    FE_CHECK(fe, vgpu_fe_stop(fe));
    assert_int_equal(i->last_avail[0], 2);
    assert_int_equal(i->last_avail[1], 2);
    FE_CHECK(fe, vgpu_fe_start(fe));
    itest_roundtrip(fe, 0);
    /* Nothing unasked-for came back on the socket. */
    FE_CHECK(fe, vgpu_fe_expect_silence(fe, 50));
    finish_session(s);
}

/* QEMU 7.2's flavour: bits 0-16 only, RING_RESET (bit 40) forwarded, no injected kick. */
static void test_qemu72_style(void **state)
{
    struct vgpu_fe_config cfg;

    vgpu_fe_config_init(&cfg);
    cfg.protocol_mask = VGPU_FE_PROTO_QEMU72;
    cfg.force_features = BIT(VIRTIO_F_RING_RESET);
    cfg.no_injected_kick = true;
    struct session *s = start_session(state, &cfg);
    struct vgpu_fe *fe = s->fe;
    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    assert_true(vgpu_fe_info(fe)->acked_features & BIT(VIRTIO_F_RING_RESET));
    itest_roundtrip(fe, 0);
    itest_roundtrip(fe, VGPU_FE_POST_INDIRECT);
    finish_session(s);
}

static const bool with_reset = true;
static const bool without_reset = false;

/*
 * Sequence D then E (guest reset / driver reload), GET_VRING_BASE counting chains. With
 * RESET_DEVICE after each stop as QEMU 10 sends it, and without (an older front-end).
 */
static void test_stop_restart(void **state)
{
    struct vgpu_fe_config cfg;

    vgpu_fe_config_init(&cfg);
    cfg.reset_device = *(const bool *)*state;
    *state = NULL;
    struct session *s = start_session(state, &cfg);
    struct vgpu_fe *fe = s->fe;
    const struct vgpu_fe_info *i = vgpu_fe_info(fe);

    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    for (unsigned int k = 0; k < 5; k++)
        itest_ctrl_roundtrip(fe, k & 1 ? VGPU_FE_POST_INDIRECT : 0, 300 + k);
    for (unsigned int k = 0; k < 3; k++)
        itest_cursor_roundtrip(fe, 0);
    FE_CHECK(fe, vgpu_fe_stop(fe));
    assert_int_equal(i->last_avail[0], 5);
    assert_int_equal(i->last_avail[1], 3);
    assert_int_equal(vgpu_fe_display_fd(fe), -1);

    /* A stopped ring is left alone: no processing, no writes to guest memory. */
    struct virtio_gpu_ctrl_hdr req;
    itest_fill_unspec(&req, 1);
    uint64_t req_gpa = vgpu_fe_alloc(fe, 24, 64), resp_gpa = vgpu_fe_alloc(fe, 24, 64);
    memcpy(vgpu_fe_gpa_ptr(fe, req_gpa, 24), &req, 24);
    struct vgpu_fe_buf bufs[2] = {{req_gpa, 24}, {resp_gpa, 24}};
    uint16_t used_before = vgpu_fe_vq_used_idx(fe, VGPU_FE_CTRLQ);
    FE_CHECK(fe, vgpu_fe_vq_post(fe, VGPU_FE_CTRLQ, bufs, 1, 1, 0));
    FE_CHECK(fe, vgpu_fe_vq_kick(fe, VGPU_FE_CTRLQ));
    uint16_t head;
    uint32_t len;
    FE_EXPECT(fe, vgpu_fe_vq_wait_used(fe, VGPU_FE_CTRLQ, itest_ms(300), &head, &len), -ETIMEDOUT);
    assert_int_equal(vgpu_fe_vq_used_idx(fe, VGPU_FE_CTRLQ), used_before);

    /* E: new display socket, new ring addresses, base 0. */
    uint64_t old_desc;
    vgpu_fe_vq_addrs(fe, VGPU_FE_CTRLQ, &old_desc, NULL, NULL);
    FE_CHECK(fe, vgpu_fe_start(fe));
    uint64_t new_desc;
    vgpu_fe_vq_addrs(fe, VGPU_FE_CTRLQ, &new_desc, NULL, NULL);
    assert_true(new_desc != old_desc);
    assert_true(vgpu_fe_display_fd(fe) >= 0);
    for (unsigned int k = 0; k < 2; k++)
        itest_ctrl_roundtrip(fe, 0, 400 + k);
    itest_cursor_roundtrip(fe, VGPU_FE_POST_INDIRECT);
    FE_CHECK(fe, vgpu_fe_stop(fe));
    assert_int_equal(i->last_avail[0], 2);
    assert_int_equal(i->last_avail[1], 1);

    /* Several resets in a row, as a guest rebooting repeatedly. */
    for (unsigned int k = 0; k < 10; k++) {
        FE_CHECK(fe, vgpu_fe_start(fe));
        itest_roundtrip(fe, k & 1 ? VGPU_FE_POST_INDIRECT : 0);
        FE_CHECK(fe, vgpu_fe_stop(fe));
        assert_int_equal(i->last_avail[0], 1);
        assert_int_equal(i->last_avail[1], 1);
    }
    FE_CHECK(fe, vgpu_fe_start(fe));
    itest_roundtrip(fe, 0);
    finish_session(s);
}

/* A session that ends while started (QEMU killed): the --fd daemon still exits 0. */
static void test_disconnect_while_busy(void **state)
{
    struct session *s = start_session(state, NULL);
    struct vgpu_fe *fe = s->fe;

    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    itest_roundtrip(fe, 0);
    /* Leave a command in flight. */
    struct virtio_gpu_ctrl_hdr req;
    itest_fill_unspec(&req, 5);
    uint64_t g = vgpu_fe_alloc(fe, 48, 64);
    memcpy(vgpu_fe_gpa_ptr(fe, g, 24), &req, 24);
    struct vgpu_fe_buf bufs[2] = {{g, 24}, {g + 24, 24}};
    FE_CHECK(fe, vgpu_fe_vq_post(fe, VGPU_FE_CTRLQ, bufs, 1, 1, 0));
    finish_session(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_offer, teardown),
        cmocka_unit_test_prestate_setup_teardown(test_modes, NULL, teardown, (void *)&mode_direct),
        cmocka_unit_test_prestate_setup_teardown(test_modes, NULL, teardown,
                                                 (void *)&mode_indirect),
        cmocka_unit_test_prestate_setup_teardown(test_modes, NULL, teardown,
                                                 (void *)&mode_direct_noevidx),
        cmocka_unit_test_prestate_setup_teardown(test_modes, NULL, teardown,
                                                 (void *)&mode_indirect_noevidx),
        cmocka_unit_test_prestate_setup_teardown(test_modes, NULL, teardown,
                                                 (void *)&mode_direct_kick),
        cmocka_unit_test_prestate_setup_teardown(test_modes, NULL, teardown,
                                                 (void *)&mode_indirect_noevidx_kick),
        cmocka_unit_test_teardown(test_two_regions, teardown),
        cmocka_unit_test_teardown(test_indirect_table_across_regions, teardown),
        cmocka_unit_test_teardown(test_reduced_protocol, teardown),
        cmocka_unit_test_teardown(test_qemu72_style, teardown),
        cmocka_unit_test_prestate_setup_teardown(test_stop_restart, NULL, teardown,
                                                 (void *)&with_reset),
        cmocka_unit_test_prestate_setup_teardown(test_stop_restart, NULL, teardown,
                                                 (void *)&without_reset),
        cmocka_unit_test_teardown(test_disconnect_while_busy, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
