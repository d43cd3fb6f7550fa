/* SPDX-License-Identifier: MIT */
/*
 * A hostile or broken front-end and a hostile guest against one --socket-path daemon. After each
 * bad input the daemon must still serve a valid session: the same connection where the rule is
 * "error reply, connection stays", a fresh one where the rule is "malformed: close". Every fd
 * handed to the daemon on the way must be closed by it: the fd count, measured with a connected
 * session, ends where it started.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/virtio_config.h>

#include "itest.h"

#define BIT(n) (1ull << (n))
#define MIB (1024ull * 1024ull)

static struct itest_shared fx;

/* A session's fd count, measured while it is negotiated and has done a round trip. */
static int connected_fd_count(void)
{
    struct vgpu_fe *fe = itest_connect(fx.d, NULL);

    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    itest_roundtrip(fe, 0);
    int n = vgpu_fe_daemon_fd_count(fx.d);
    itest_release(fe);
    return n;
}

static int group_setup(void **state)
{
    if (itest_shared_start(&fx, NULL) < 0)
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

static bool log_has_problem(const char *log)
{
    return strstr(log, " warn: ") != NULL || strstr(log, " error: ") != NULL;
}

static struct vgpu_fe *connect_default(void)
{
    return itest_connect(fx.d, NULL);
}

/* Sends a malformed message and expects the daemon to close the connection. */
static void expect_closed_after(struct vgpu_fe *fe, const char *what)
{
    int r = vgpu_fe_wait_closed(fe, itest_ms(3000));

    if (r < 0) {
        print_error("%s: the daemon did not close the connection: %s\n", what,
                    vgpu_fe_last_error(fe));
        fail();
    }
    itest_release(fe);
    itest_check_serves(fx.d, NULL);
}

/* ---- connection stays: error replies ---- */

static void test_unknown_request(void **state)
{
    struct vgpu_fe *fe = connect_default();
    uint64_t v = 0;

    FE_CHECK(fe, vgpu_fe_realize(fe));
    /* Unknown request with NEED_REPLY: u64 error reply. */
    FE_CHECK(fe,
             vgpu_fe_send(fe, 1000, VGPU_FE_VERSION | VGPU_FE_FLAG_NEED_REPLY, NULL, 0, NULL, 0));
    FE_CHECK(fe, vgpu_fe_recv_reply(fe, 1000, &v, sizeof(v)));
    assert_true(v != 0);
    /* With a payload and an fd (which the daemon must close). */
    int efd = eventfd(0, EFD_CLOEXEC);
    uint64_t payload[2] = {1, 2};
    FE_CHECK(fe, vgpu_fe_send(fe, 1000, VGPU_FE_VERSION | VGPU_FE_FLAG_NEED_REPLY, payload,
                              sizeof(payload), &efd, 1));
    close(efd);
    v = 0;
    FE_CHECK(fe, vgpu_fe_recv_reply(fe, 1000, &v, sizeof(v)));
    assert_true(v != 0);
    /* Known to vhost-user but not for a GPU: SEND_RARP, NET_SET_MTU (u64 payloads). */
    for (uint32_t req = 19; req <= 20; req++) {
        uint64_t arg = 0;
        FE_CHECK(fe, vgpu_fe_send(fe, req, VGPU_FE_VERSION | VGPU_FE_FLAG_NEED_REPLY, &arg,
                                  sizeof(arg), NULL, 0));
        FE_CHECK(fe, vgpu_fe_recv_reply(fe, req, &v, sizeof(v)));
        assert_true(v != 0);
    }
    /* Unknown request without NEED_REPLY: no reply at all, the connection stays. */
    FE_CHECK(fe, vgpu_fe_send(fe, 1000, VGPU_FE_VERSION, payload, sizeof(payload), NULL, 0));
    FE_CHECK(fe, vgpu_fe_expect_silence(fe, 100));
    /* The session goes on. */
    FE_CHECK(fe, vgpu_fe_probe(fe));
    FE_CHECK(fe, vgpu_fe_start(fe));
    itest_roundtrip(fe, 0);
    itest_release(fe);
}

/* A region for ADD_MEM_REG tests, far away from the session's own memory. */
static struct vgpu_fe_region far_region(const struct vgpu_fe *fe, uint64_t gpa, uint64_t size)
{
    return (struct vgpu_fe_region){
        .gpa = gpa, .size = size, .uva = 0x7f0000000000ull + gpa, .mmap_offset = 0};
}

static void test_add_mem_reg_bad(void **state)
{
    struct vgpu_fe *fe = connect_default();
    int mfd;

    FE_CHECK(fe, vgpu_fe_realize(fe));
    assert_true(vgpu_fe_has_protocol_feature(fe, VGPU_FE_PROTO_CONFIGURE_MEM_SLOTS));
    assert_true(vgpu_fe_has_protocol_feature(fe, VGPU_FE_PROTO_REPLY_ACK));
    mfd = vgpu_fe_mem_fd(fe);
    const uint64_t msize = vgpu_fe_mem_size(fe);

    struct vgpu_fe_region r = far_region(fe, 1ull << 32, 0);
    FE_EXPECT(fe, vgpu_fe_add_mem_reg(fe, &r, mfd), -EREMOTEIO); /* size 0 */
    r = far_region(fe, 0xfffffffffffff000ull, 0x2000);
    FE_EXPECT(fe, vgpu_fe_add_mem_reg(fe, &r, mfd), -EREMOTEIO); /* gpa + size overflows */
    r = far_region(fe, 1ull << 32, 2 * MIB);
    r.uva = 0xffffffffffffff00ull;
    FE_EXPECT(fe, vgpu_fe_add_mem_reg(fe, &r, mfd), -EREMOTEIO); /* uva + size overflows */
    r = far_region(fe, 1ull << 32, 2 * MIB);
    r.mmap_offset = msize;
    FE_EXPECT(fe, vgpu_fe_add_mem_reg(fe, &r, mfd), -EREMOTEIO); /* beyond the memfd */
    r.mmap_offset = 0xfffffffffffff000ull;
    FE_EXPECT(fe, vgpu_fe_add_mem_reg(fe, &r, mfd), -EREMOTEIO); /* offset + size overflows */
    r = far_region(fe, 1ull << 32, 2 * MIB);
    int efd = eventfd(0, EFD_CLOEXEC);
    FE_EXPECT(fe, vgpu_fe_add_mem_reg(fe, &r, efd), -EREMOTEIO); /* not mappable */
    close(efd);

    /* The real memory, then regions overlapping it. */
    FE_CHECK(fe, vgpu_fe_probe(fe));
    FE_CHECK(fe, vgpu_fe_start(fe));
    itest_roundtrip(fe, 0);
    const struct vgpu_fe_region *r0 = vgpu_fe_region(fe, 0);
    FE_EXPECT(fe, vgpu_fe_add_mem_reg(fe, r0, mfd), -EREMOTEIO); /* the same region again */
    r = far_region(fe, r0->gpa + msize / 2, msize); /* overlaps in guest-physical space */
    FE_EXPECT(fe, vgpu_fe_add_mem_reg(fe, &r, mfd), -EREMOTEIO);
    r = far_region(fe, 1ull << 33, 2 * MIB); /* overlaps in user space */
    r.uva = r0->uva + 4096;
    FE_EXPECT(fe, vgpu_fe_add_mem_reg(fe, &r, mfd), -EREMOTEIO);
    itest_roundtrip(fe, 0);

    /* Fill the table (32 slots), one more is refused, then remove them again. */
    uint64_t max = vgpu_fe_info(fe)->max_mem_slots;
    unsigned int added = 0;
    for (uint64_t i = vgpu_fe_num_regions(fe); i < max; i++) {
        r = far_region(fe, (1ull << 34) + i * 4 * MIB, 2 * MIB);
        FE_CHECK(fe, vgpu_fe_add_mem_reg(fe, &r, mfd));
        added++;
    }
    r = far_region(fe, (1ull << 35), 2 * MIB);
    FE_EXPECT(fe, vgpu_fe_add_mem_reg(fe, &r, mfd), -EREMOTEIO); /* table full */
    itest_roundtrip(fe, 0);
    for (unsigned int k = 0; k < added; k++) {
        uint64_t i = vgpu_fe_num_regions(fe) + k;
        r = far_region(fe, (1ull << 34) + i * 4 * MIB, 2 * MIB);
        FE_CHECK(fe, vgpu_fe_rem_mem_reg(fe, &r));
    }
    /* Removing what is not there. */
    r = far_region(fe, 1ull << 36, 2 * MIB);
    FE_EXPECT(fe, vgpu_fe_rem_mem_reg(fe, &r), -EREMOTEIO);
    itest_roundtrip(fe, 0);
    itest_release(fe);
}

/* ADD_MEM_REG although CONFIGURE_MEM_SLOTS was not negotiated: error reply, connection stays. */
static void test_add_mem_reg_not_negotiated(void **state)
{
    struct vgpu_fe_config cfg;

    vgpu_fe_config_init(&cfg);
    cfg.protocol_mask = BIT(VGPU_FE_PROTO_CONFIG) | BIT(VGPU_FE_PROTO_REPLY_ACK) |
                        BIT(VGPU_FE_PROTO_MQ) | BIT(VGPU_FE_PROTO_RESET_DEVICE);
    struct vgpu_fe *fe = itest_connect(fx.d, &cfg);
    FE_CHECK(fe, vgpu_fe_realize(fe));
    assert_false(vgpu_fe_has_protocol_feature(fe, VGPU_FE_PROTO_CONFIGURE_MEM_SLOTS));
    FE_EXPECT(fe, vgpu_fe_add_mem_reg(fe, vgpu_fe_region(fe, 0), vgpu_fe_mem_fd(fe)), -EREMOTEIO);
    /* GET_MAX_MEM_SLOTS is not for this session either: an error, or at least no crash. */
    FE_CHECK(fe, vgpu_fe_probe(fe));
    FE_CHECK(fe, vgpu_fe_start(fe)); /* SET_MEM_TABLE */
    itest_roundtrip(fe, 0);
    itest_release(fe);
}

static void test_get_config_out_of_range(void **state)
{
    struct vgpu_fe *fe = connect_default();
    uint8_t buf[256];

    FE_CHECK(fe, vgpu_fe_realize(fe));
    FE_EXPECT(fe, vgpu_fe_get_config(fe, 8, 16, buf), -EREMOTEIO);
    FE_EXPECT(fe, vgpu_fe_get_config(fe, 16, 4, buf), -EREMOTEIO);
    FE_EXPECT(fe, vgpu_fe_get_config(fe, 0xfffffff0u, 32, buf), -EREMOTEIO);
    FE_EXPECT(fe, vgpu_fe_get_config(fe, 0, 17, buf), -EREMOTEIO);
    /* SET_CONFIG out of range: error ack. */
    memset(buf, 0, sizeof(buf));
    FE_EXPECT(fe, vgpu_fe_set_config(fe, 12, buf, 8), -EREMOTEIO);
    FE_CHECK(fe, vgpu_fe_probe(fe));
    assert_int_equal(vgpu_fe_info(fe)->config.num_scanouts, 1);
    FE_CHECK(fe, vgpu_fe_start(fe));
    itest_roundtrip(fe, 0);
    itest_release(fe);
}

/* VIRTIO_F_RING_PACKED (34) in SET_FEATURES: refused with an error ack. */
static void test_packed_ring(void **state)
{
    struct vgpu_fe *fe = connect_default();
    uint64_t v;

    FE_CHECK(fe, vgpu_fe_realize(fe));
    uint64_t f =
        BIT(VIRTIO_F_VERSION_1) | BIT(VGPU_FE_F_PROTOCOL_FEATURES) | BIT(VIRTIO_F_RING_PACKED);
    FE_CHECK(fe, vgpu_fe_send(fe, VGPU_FE_SET_FEATURES, VGPU_FE_VERSION | VGPU_FE_FLAG_NEED_REPLY,
                              &f, sizeof(f), NULL, 0));
    FE_CHECK(fe, vgpu_fe_recv_reply(fe, VGPU_FE_SET_FEATURES, &v, sizeof(v)));
    assert_true(v != 0);
    /* The next SET_FEATURES (without the bit) is accepted and the session works. */
    FE_CHECK(fe, vgpu_fe_probe(fe));
    FE_CHECK(fe, vgpu_fe_start(fe));
    itest_roundtrip(fe, 0);
    itest_release(fe);
}

/* Fds replaced over and over (each replaced one must be closed by the daemon). */
static void test_fd_churn(void **state)
{
    struct vgpu_fe *fe = connect_default();

    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    for (int i = 0; i < 10; i++) {
        int efd = eventfd(0, EFD_CLOEXEC);
        FE_CHECK(fe, vgpu_fe_set_vring_err(fe, 0, efd));
        close(efd);
        FE_CHECK(fe, vgpu_fe_set_vring_call(fe, 1, vgpu_fe_vq_call_fd(fe, 1)));
        FE_CHECK(fe, vgpu_fe_set_vring_kick(fe, 1, vgpu_fe_vq_kick_fd(fe, 1)));
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        FE_CHECK(fe, vgpu_fe_set_backend_req_fd(fe, sv[1]));
        close(sv[0]);
        close(sv[1]);
        /* A display socket handed over and replaced at once. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        FE_CHECK(fe, vgpu_fe_gpu_set_socket(fe, sv[1]));
        close(sv[0]);
        close(sv[1]);
    }
    itest_cursor_roundtrip(fe, 0);
    /* The kick fd of q1 was re-sent: the ring keeps going. */
    FE_CHECK(fe, vgpu_fe_stop(fe));
    FE_CHECK(fe, vgpu_fe_start(fe));
    itest_roundtrip(fe, 0);
    itest_release(fe);
}

/* ---- connection closed: malformed messages ---- */

static void send_hdr_expect_close(uint32_t req, uint32_t flags, const void *payload, uint32_t size,
                                  bool realize_first, const char *what)
{
    struct vgpu_fe *fe = connect_default();

    if (realize_first)
        FE_CHECK(fe, vgpu_fe_realize(fe));
    FE_CHECK(fe, vgpu_fe_send(fe, req, flags, payload, size, NULL, 0));
    expect_closed_after(fe, what);
}

static void test_bad_version_flags(void **state)
{
    static const uint32_t flags[] = {0x0, 0x2, 0x3, VGPU_FE_REPLY_FLAGS};

    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        send_hdr_expect_close(VGPU_FE_GET_FEATURES, flags[i], NULL, 0, false, "bad flags");
}

static void test_wrong_payload_size(void **state)
{
    uint8_t p[64];

    memset(p, 0, sizeof(p));
    /* Larger than the request allows. */
    send_hdr_expect_close(VGPU_FE_SET_FEATURES, VGPU_FE_VERSION, p, 16, false,
                          "SET_FEATURES size 16");
    send_hdr_expect_close(VGPU_FE_GET_FEATURES, VGPU_FE_VERSION, p, 8, false,
                          "GET_FEATURES size 8");
    /* Smaller than the request needs. */
    send_hdr_expect_close(VGPU_FE_SET_FEATURES, VGPU_FE_VERSION, p, 4, false,
                          "SET_FEATURES size 4");
    send_hdr_expect_close(VGPU_FE_SET_VRING_NUM, VGPU_FE_VERSION, p, 4, true,
                          "SET_VRING_NUM size 4");
    send_hdr_expect_close(VGPU_FE_SET_VRING_ADDR, VGPU_FE_VERSION, p, 32, true,
                          "SET_VRING_ADDR size 32");
    /* GET_CONFIG whose message size disagrees with its own size field. */
    uint32_t cfg[3] = {0, 16, 0};
    memcpy(p, cfg, sizeof(cfg));
    send_hdr_expect_close(VGPU_FE_GET_CONFIG, VGPU_FE_VERSION, p, 20, true,
                          "GET_CONFIG size 20 for 16 config bytes");
    /* SET_MEM_TABLE claiming more regions than it carries. */
    uint32_t mt[2] = {3, 0};
    memcpy(p, mt, sizeof(mt));
    send_hdr_expect_close(VGPU_FE_SET_MEM_TABLE, VGPU_FE_VERSION, p, 40, true,
                          "SET_MEM_TABLE nregions 3 in 40 bytes");
}

static void test_huge_size(void **state)
{
    struct vgpu_fe *fe = connect_default();
    uint8_t msg[12 + 100];
    struct vgpu_fe_hdr hdr = {
        .request = VGPU_FE_SET_FEATURES, .flags = VGPU_FE_VERSION, .size = 0x7fffffffu};

    memset(msg, 0x5a, sizeof(msg));
    memcpy(msg, &hdr, sizeof(hdr));
    FE_CHECK(fe, vgpu_fe_send_bytes(fe, msg, sizeof(msg), NULL, 0));
    expect_closed_after(fe, "size 0x7fffffff");
}

static void test_truncated(void **state)
{
    /* Header then EOF in the middle of the payload, with an fd that must not leak. */
    struct vgpu_fe *fe = connect_default();
    FE_CHECK(fe, vgpu_fe_realize(fe));
    struct vgpu_fe_hdr hdr = {
        .request = VGPU_FE_SET_VRING_CALL, .flags = VGPU_FE_VERSION, .size = 8};
    uint8_t msg[12 + 4] = {0};
    memcpy(msg, &hdr, sizeof(hdr));
    int efd = eventfd(0, EFD_CLOEXEC);
    FE_CHECK(fe, vgpu_fe_send_bytes(fe, msg, sizeof(msg), &efd, 1));
    close(efd);
    itest_release(fe);
    itest_check_serves(fx.d, NULL);

    /* Half a header then EOF. */
    fe = connect_default();
    FE_CHECK(fe, vgpu_fe_send_bytes(fe, msg, 6, NULL, 0));
    itest_release(fe);
    itest_check_serves(fx.d, NULL);

    /* A complete header, no payload, EOF. */
    fe = connect_default();
    FE_CHECK(fe, vgpu_fe_send_bytes(fe, msg, 12, NULL, 0));
    itest_release(fe);
    itest_check_serves(fx.d, NULL);
}

static void test_too_many_fds(void **state)
{
    struct vgpu_fe *fe = connect_default();
    int fds[9];

    FE_CHECK(fe, vgpu_fe_realize(fe));
    for (int i = 0; i < 9; i++) {
        fds[i] = eventfd(0, EFD_CLOEXEC);
        assert_true(fds[i] >= 0);
    }
    uint64_t idx = 0;
    FE_CHECK(fe,
             vgpu_fe_send(fe, VGPU_FE_SET_VRING_CALL, VGPU_FE_VERSION, &idx, sizeof(idx), fds, 9));
    for (int i = 0; i < 9; i++)
        close(fds[i]);
    expect_closed_after(fe, "9 fds");
}

static void test_missing_fd(void **state)
{
    uint64_t idx = 0;

    send_hdr_expect_close(VGPU_FE_SET_VRING_KICK, VGPU_FE_VERSION, &idx, sizeof(idx), true,
                          "SET_VRING_KICK without fd or no-fd bit");
    send_hdr_expect_close(VGPU_FE_SET_VRING_CALL, VGPU_FE_VERSION, &idx, sizeof(idx), true,
                          "SET_VRING_CALL without fd or no-fd bit");
    send_hdr_expect_close(VGPU_FE_GPU_SET_SOCKET, VGPU_FE_VERSION, NULL, 0, true,
                          "GPU_SET_SOCKET without fd");
    send_hdr_expect_close(
        VGPU_FE_ADD_MEM_REG, VGPU_FE_VERSION | VGPU_FE_FLAG_NEED_REPLY,
        (const uint8_t[40]){0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20}, 40, true,
        "ADD_MEM_REG without fd");
}

static void test_vring_index_out_of_range(void **state)
{
    struct vhost_vring_state s = {.index = 5, .num = 64};

    send_hdr_expect_close(VGPU_FE_SET_VRING_NUM, VGPU_FE_VERSION, &s, sizeof(s), true,
                          "SET_VRING_NUM index 5");
    send_hdr_expect_close(VGPU_FE_GET_VRING_BASE, VGPU_FE_VERSION, &s, sizeof(s), true,
                          "GET_VRING_BASE index 5");
    s.index = 2;
    send_hdr_expect_close(VGPU_FE_SET_VRING_ENABLE, VGPU_FE_VERSION, &s, sizeof(s), true,
                          "SET_VRING_ENABLE index 2");
    struct vhost_vring_addr a = {.index = 2};
    send_hdr_expect_close(VGPU_FE_SET_VRING_ADDR, VGPU_FE_VERSION, &a, sizeof(a), true,
                          "SET_VRING_ADDR index 2");
    /* With an fd attached, which must be closed. */
    struct vgpu_fe *fe = connect_default();
    FE_CHECK(fe, vgpu_fe_realize(fe));
    int efd = eventfd(0, EFD_CLOEXEC);
    uint64_t idx = 5;
    FE_CHECK(fe,
             vgpu_fe_send(fe, VGPU_FE_SET_VRING_CALL, VGPU_FE_VERSION, &idx, sizeof(idx), &efd, 1));
    close(efd);
    expect_closed_after(fe, "SET_VRING_CALL index 5");
}

/* ---- bad ring addresses ---- */

/*
 * Restarts the session with q0's rings announced at desc_uva (a bad address), q1 normal.
 * Returns with both rings enabled and the real call fds installed.
 */
static void start_with_bad_desc(struct vgpu_fe *fe, uint64_t desc_uva)
{
    FE_CHECK(fe, vgpu_fe_set_features(fe, vgpu_fe_info(fe)->acked_features));
    for (unsigned int q = 0; q < VGPU_FE_NUM_QUEUES; q++) {
        uint64_t desc, avail, used;
        FE_CHECK(fe, vgpu_fe_vq_reset(fe, q));
        vgpu_fe_vq_addrs(fe, q, &desc, &avail, &used);
        FE_CHECK(fe, vgpu_fe_set_vring_num(fe, q, vgpu_fe_vq_size(fe, q)));
        FE_CHECK(fe, vgpu_fe_set_vring_base(fe, q, 0));
        struct vhost_vring_addr a = {
            .index = q,
            .desc_user_addr = q == 0 ? desc_uva : vgpu_fe_gpa_uva(fe, desc),
            .avail_user_addr = vgpu_fe_gpa_uva(fe, avail),
            .used_user_addr = vgpu_fe_gpa_uva(fe, used),
            .log_guest_addr = used,
        };
        FE_CHECK(fe, vgpu_fe_set_vring_addr(fe, &a));
        /* The ring cannot start: an error ack to the KICK is as good as no reaction. */
        int r = vgpu_fe_set_vring_kick(fe, q, vgpu_fe_vq_kick_fd(fe, q));
        if (q != 0 || r != -EREMOTEIO)
            FE_CHECK(fe, r);
        FE_CHECK(fe, vgpu_fe_vq_kick(fe, q));
    }
    for (unsigned int q = 0; q < VGPU_FE_NUM_QUEUES; q++)
        FE_CHECK(fe, vgpu_fe_set_vring_enable(fe, q, true));
    for (unsigned int q = 0; q < VGPU_FE_NUM_QUEUES; q++)
        FE_CHECK(fe, vgpu_fe_set_vring_call(fe, q, vgpu_fe_vq_call_fd(fe, q)));
}

/* Posts a good control command and expects no answer: the queue is not running. */
static void expect_ctrl_dead(struct vgpu_fe *fe)
{
    struct virtio_gpu_ctrl_hdr req;
    uint16_t head;
    uint32_t len;
    uint64_t g = vgpu_fe_alloc(fe, 48, 64);

    itest_fill_unspec(&req, 9);
    memcpy(vgpu_fe_gpa_ptr(fe, g, 24), &req, 24);
    struct vgpu_fe_buf bufs[2] = {{g, 24}, {g + 24, 24}};
    FE_CHECK(fe, vgpu_fe_vq_post(fe, VGPU_FE_CTRLQ, bufs, 1, 1, 0));
    FE_CHECK(fe, vgpu_fe_vq_kick(fe, VGPU_FE_CTRLQ));
    FE_EXPECT(fe, vgpu_fe_vq_wait_used(fe, VGPU_FE_CTRLQ, itest_ms(300), &head, &len), -ETIMEDOUT);
}

static void test_bad_vring_addr(void **state)
{
    struct vgpu_fe *fe = connect_default();
    const uint64_t msize = vgpu_fe_mem_size(fe);
    const struct vgpu_fe_region *r0 = vgpu_fe_region(fe, 0);
    const uint64_t bad[] = {
        r0->uva + msize + 64 * 1024ull, /* after the region */
        0x1000,                         /* nowhere near */
        r0->uva + msize - 16ull * 32,   /* table runs past the end of the region */
        r0->uva - 4096,                 /* before the region */
    };

    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    itest_roundtrip(fe, 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        FE_CHECK(fe, vgpu_fe_stop(fe));
        new_log();
        start_with_bad_desc(fe, bad[i]);
        expect_ctrl_dead(fe);
        /* The other queue and the process live on, and the problem was logged. */
        itest_cursor_roundtrip(fe, 0);
        const char *log = new_log();
        (void)fprintf(stderr, "---- daemon log (bad ring address %zu) ----\n%s", i, log);
        assert_true(log_has_problem(log));
        assert_true(vgpu_fe_daemon_is_alive(fx.d));
        /* A re-negotiation with good addresses restores the queue. */
        FE_CHECK(fe, vgpu_fe_stop(fe));
        FE_CHECK(fe, vgpu_fe_start(fe));
        itest_roundtrip(fe, 0);
    }
    itest_release(fe);
}

/* ---- bad descriptor chains from the guest ---- */

struct chain_ctx {
    struct vgpu_fe *fe;
    unsigned int q;
    uint16_t descs[80];
    unsigned int ndescs;
};

static uint16_t take(struct chain_ctx *c)
{
    int i = vgpu_fe_vq_alloc_desc(c->fe, c->q);

    FE_CHECK(c->fe, i);
    assert_true(c->ndescs < 80);
    c->descs[c->ndescs++] = (uint16_t)i;
    return (uint16_t)i;
}

static struct vring_desc *desc(struct chain_ctx *c, uint16_t i)
{
    return &vgpu_fe_vq_desc(c->fe, c->q)[i];
}

/* Publishes head, expects it back with len 0 and the poisoned response buffer untouched. */
static void expect_refused(struct chain_ctx *c, uint16_t head, uint64_t resp_gpa, const char *what)
{
    uint16_t got;
    uint32_t len;

    FE_CHECK(c->fe, vgpu_fe_vq_publish(c->fe, c->q, head, 0));
    int r = vgpu_fe_vq_wait_used(c->fe, c->q, itest_ms(3000), &got, &len);
    if (r < 0) {
        print_error("%s: no used entry: %s\n", what, vgpu_fe_last_error(c->fe));
        fail();
    }
    if (got != head || len != 0) {
        print_error("%s: used entry head %u len %u, expected head %u len 0\n", what, got, len,
                    head);
        fail();
    }
    if (resp_gpa != 0) {
        const uint8_t *p = vgpu_fe_gpa_ptr(c->fe, resp_gpa, 24);
        for (int i = 0; i < 24; i++) {
            if (p[i] != 0xa5) {
                print_error("%s: the refused chain's writable buffer was written\n", what);
                fail();
            }
        }
    }
    for (unsigned int i = 0; i < c->ndescs; i++)
        vgpu_fe_vq_free_desc(c->fe, c->q, c->descs[i]);
    c->ndescs = 0;
    /* The queue goes on. */
    if (c->q == VGPU_FE_CTRLQ)
        itest_ctrl_roundtrip(c->fe, 0, 4242);
    else
        itest_cursor_roundtrip(c->fe, 0);
}

static void test_bad_chains(void **state)
{
    struct vgpu_fe *fe = connect_default();
    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    struct chain_ctx cc = {.fe = fe, .q = VGPU_FE_CTRLQ};
    struct chain_ctx *c = &cc;
    const uint64_t msize = vgpu_fe_mem_size(fe);
    const unsigned int num = vgpu_fe_vq_size(fe, VGPU_FE_CTRLQ);
    uint64_t req = vgpu_fe_alloc(fe, 24, 64), resp = vgpu_fe_alloc(fe, 24, 64);
    uint64_t table = vgpu_fe_alloc(fe, (size_t)16 * (num + 8), 16);
    itest_fill_unspec(vgpu_fe_gpa_ptr(fe, req, 24), 1);
    uint16_t a, b, h;

#define POISON() memset(vgpu_fe_gpa_ptr(fe, resp, 24), 0xa5, 24)

    /* A loop: a -> b -> a. */
    POISON();
    a = take(c), b = take(c);
    *desc(c, a) = (struct vring_desc){req, 24, VRING_DESC_F_NEXT, b};
    *desc(c, b) = (struct vring_desc){resp, 24, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, a};
    expect_refused(c, a, resp, "descriptor loop");

    /* A self-loop on the head. */
    POISON();
    a = take(c);
    *desc(c, a) = (struct vring_desc){req, 24, VRING_DESC_F_NEXT, a};
    expect_refused(c, a, 0, "self loop");

    /* next index beyond the ring. */
    POISON();
    a = take(c);
    *desc(c, a) = (struct vring_desc){req, 24, VRING_DESC_F_NEXT, (uint16_t)(num + 3)};
    expect_refused(c, a, 0, "next out of range");

    /* A buffer outside guest memory. */
    POISON();
    a = take(c), b = take(c);
    *desc(c, a) = (struct vring_desc){msize + 4096, 24, VRING_DESC_F_NEXT, b};
    *desc(c, b) = (struct vring_desc){resp, 24, VRING_DESC_F_WRITE, 0};
    expect_refused(c, a, resp, "buffer outside guest memory");

    /* A buffer running past the end of guest memory. */
    POISON();
    a = take(c), b = take(c);
    *desc(c, a) = (struct vring_desc){msize - 8, 24, VRING_DESC_F_NEXT, b};
    *desc(c, b) = (struct vring_desc){resp, 24, VRING_DESC_F_WRITE, 0};
    expect_refused(c, a, resp, "buffer across the end of guest memory");

    /* addr + len overflowing 64 bits. */
    POISON();
    a = take(c), b = take(c);
    *desc(c, a) = (struct vring_desc){req, 24, VRING_DESC_F_NEXT, b};
    *desc(c, b) = (struct vring_desc){0xfffffffffffffff0ull, 0x100, VRING_DESC_F_WRITE, 0};
    expect_refused(c, a, 0, "writable buffer wrapping the address space");

    /* Writable before readable. */
    POISON();
    a = take(c), b = take(c);
    *desc(c, a) = (struct vring_desc){resp, 24, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, b};
    *desc(c, b) = (struct vring_desc){req, 24, 0, 0};
    expect_refused(c, a, resp, "readable after writable");

    /*
     * Indirect: an over-long chain. The daemon bounds indirect tables by 32768 entries (its
     * largest queue size), not by this queue's size, as QEMU and libvhost-user do: Linux may
     * put more than num buffers in one indirect table. One entry over that bound is refused.
     */
    POISON();
    {
        const unsigned int n = 32768 + 1;
        uint64_t big = vgpu_fe_alloc(fe, 16 * (size_t)n, 16);
        assert_true(big != 0);
        struct vring_desc *t = vgpu_fe_gpa_ptr(fe, big, 16 * (size_t)n);
        for (unsigned int i = 0; i + 1 < n; i++)
            t[i] = (struct vring_desc){req, 1, VRING_DESC_F_NEXT, (uint16_t)(i + 1)};
        t[n - 1] = (struct vring_desc){resp, 24, VRING_DESC_F_WRITE, 0};
        h = take(c);
        *desc(c, h) = (struct vring_desc){big, 16 * n, VRING_DESC_F_INDIRECT, 0};
        expect_refused(c, h, resp, "indirect chain of 32769 descriptors");
    }

    /* Indirect: a loop inside the table. */
    POISON();
    {
        struct vring_desc *t = vgpu_fe_gpa_ptr(fe, table, sizeof(struct vring_desc) * 2);
        t[0] = (struct vring_desc){req, 24, VRING_DESC_F_NEXT, 1};
        t[1] = (struct vring_desc){resp, 24, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0};
        h = take(c);
        *desc(c, h) = (struct vring_desc){table, 32, VRING_DESC_F_INDIRECT, 0};
        expect_refused(c, h, resp, "loop in an indirect table");
    }

    /* Indirect: next beyond the table. */
    POISON();
    {
        struct vring_desc *t = vgpu_fe_gpa_ptr(fe, table, sizeof(struct vring_desc) * 2);
        t[0] = (struct vring_desc){req, 24, VRING_DESC_F_NEXT, 2};
        t[1] = (struct vring_desc){resp, 24, VRING_DESC_F_WRITE, 0};
        h = take(c);
        *desc(c, h) = (struct vring_desc){table, 32, VRING_DESC_F_INDIRECT, 0};
        expect_refused(c, h, resp, "next beyond the indirect table");
    }

    /* Nested indirect. */
    POISON();
    {
        struct vring_desc *t = vgpu_fe_gpa_ptr(fe, table, sizeof(struct vring_desc) * 4);
        t[0] = (struct vring_desc){table + 32, 32, VRING_DESC_F_INDIRECT, 0};
        t[2] = (struct vring_desc){req, 24, VRING_DESC_F_NEXT, 1};
        t[3] = (struct vring_desc){resp, 24, VRING_DESC_F_WRITE, 0};
        h = take(c);
        *desc(c, h) = (struct vring_desc){table, 16, VRING_DESC_F_INDIRECT, 0};
        expect_refused(c, h, resp, "nested indirect table");
    }

    /* Indirect table length not a multiple of 16, and 0. */
    POISON();
    {
        struct vring_desc *t = vgpu_fe_gpa_ptr(fe, table, sizeof(struct vring_desc) * 2);
        t[0] = (struct vring_desc){req, 24, VRING_DESC_F_NEXT, 1};
        t[1] = (struct vring_desc){resp, 24, VRING_DESC_F_WRITE, 0};
        h = take(c);
        *desc(c, h) = (struct vring_desc){table, 24, VRING_DESC_F_INDIRECT, 0};
        expect_refused(c, h, resp, "indirect length 24");
        POISON();
        h = take(c);
        *desc(c, h) = (struct vring_desc){table, 0, VRING_DESC_F_INDIRECT, 0};
        expect_refused(c, h, resp, "indirect length 0");
    }

    /* Indirect table outside guest memory. */
    POISON();
    h = take(c);
    *desc(c, h) = (struct vring_desc){msize + 8192, 32, VRING_DESC_F_INDIRECT, 0};
    expect_refused(c, h, 0, "indirect table outside guest memory");

    /* INDIRECT together with NEXT in one descriptor. */
    POISON();
    {
        struct vring_desc *t = vgpu_fe_gpa_ptr(fe, table, sizeof(struct vring_desc) * 2);
        t[0] = (struct vring_desc){req, 24, VRING_DESC_F_NEXT, 1};
        t[1] = (struct vring_desc){resp, 24, VRING_DESC_F_WRITE, 0};
        a = take(c), b = take(c);
        *desc(c, a) = (struct vring_desc){table, 32, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, b};
        *desc(c, b) = (struct vring_desc){resp, 24, VRING_DESC_F_WRITE, 0};
        expect_refused(c, a, resp, "INDIRECT with NEXT");
    }

    /* The cursor queue refuses a loop the same way. */
    struct chain_ctx cur = {.fe = fe, .q = VGPU_FE_CURSORQ};
    uint64_t mc = vgpu_fe_alloc(fe, 56, 64);
    a = take(&cur), b = take(&cur);
    *desc(&cur, a) = (struct vring_desc){mc, 56, VRING_DESC_F_NEXT, b};
    *desc(&cur, b) = (struct vring_desc){mc, 56, VRING_DESC_F_NEXT, a};
    expect_refused(&cur, a, 0, "cursor queue loop");

    /* Nothing was left half-done. */
    assert_int_equal(vgpu_fe_vq_inflight(fe, VGPU_FE_CTRLQ), 0);
    assert_int_equal(vgpu_fe_vq_inflight(fe, VGPU_FE_CURSORQ), 0);
    itest_roundtrip(fe, VGPU_FE_POST_INDIRECT);
    itest_release(fe);
#undef POISON
}

/* ---- corrupt ring indices: the queue stops, the rest lives ---- */

static void broken_ring_then_recover(struct vgpu_fe *fe, const char *what)
{
    expect_ctrl_dead(fe);
    itest_cursor_roundtrip(fe, 0);
    assert_true(vgpu_fe_daemon_is_alive(fx.d));
    print_message("%s: err eventfd count %lld\n", what,
                  (long long)vgpu_fe_vq_err_count(fe, VGPU_FE_CTRLQ));
    FE_CHECK(fe, vgpu_fe_stop(fe));
    FE_CHECK(fe, vgpu_fe_start(fe));
    itest_roundtrip(fe, 0);
}

static void test_avail_idx_jump(void **state)
{
    struct vgpu_fe *fe = connect_default();

    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    itest_roundtrip(fe, 0);
    uint16_t idx = vgpu_fe_vq_avail_idx(fe, VGPU_FE_CTRLQ);
    vgpu_fe_vq_set_avail_idx(fe, VGPU_FE_CTRLQ,
                             (uint16_t)(idx + vgpu_fe_vq_size(fe, VGPU_FE_CTRLQ) + 5));
    FE_CHECK(fe, vgpu_fe_vq_kick(fe, VGPU_FE_CTRLQ));
    broken_ring_then_recover(fe, "avail idx jump");
    itest_release(fe);
}

static void test_head_out_of_range(void **state)
{
    struct vgpu_fe *fe = connect_default();

    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    itest_roundtrip(fe, 0);
    FE_CHECK(fe, vgpu_fe_vq_publish(fe, VGPU_FE_CTRLQ,
                                    (uint16_t)(vgpu_fe_vq_size(fe, VGPU_FE_CTRLQ) + 7), 0));
    FE_CHECK(fe, vgpu_fe_vq_kick(fe, VGPU_FE_CTRLQ));
    broken_ring_then_recover(fe, "head out of range");
    itest_release(fe);
}

/* Last: every fd handed over above was closed by the daemon. */
static void test_fd_count_flat(void **state)
{
    int n = connected_fd_count();

    if (n != fx.fd_ref) {
        char buf[8192];
        vgpu_fe_daemon_fd_list(fx.d, buf, sizeof(buf));
        print_error("daemon fds: %d now, %d before the bad inputs:\n%s", n, fx.fd_ref, buf);
        fail();
    }
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_unknown_request),
        T(test_add_mem_reg_bad),
        T(test_add_mem_reg_not_negotiated),
        T(test_get_config_out_of_range),
        T(test_packed_ring),
        T(test_fd_churn),
        T(test_bad_version_flags),
        T(test_wrong_payload_size),
        T(test_huge_size),
        T(test_truncated),
        T(test_too_many_fds),
        T(test_missing_fd),
        T(test_vring_index_out_of_range),
        T(test_bad_vring_addr),
        T(test_bad_chains),
        T(test_avail_idx_jump),
        T(test_head_out_of_range),
        T(test_fd_count_flat),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
