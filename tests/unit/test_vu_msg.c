/* SPDX-License-Identifier: MIT */
/* vhost-user framing: the incremental receiver on a socketpair, byte by byte and with fds. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "virtio/vu_msg.h"

static int sp[2];

static int setup(void **state)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp), 0);
    return 0;
}

static int teardown(void **state)
{
    close(sp[0]);
    close(sp[1]);
    return 0;
}

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

/* Sends raw bytes with optional fds attached to the first byte. */
static void send_raw(const void *buf, size_t len, const int *fds, unsigned int nfds)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    union {
        char b[CMSG_SPACE(16 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.b;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    assert_int_equal(sendmsg(sp[1], &mh, 0), (ssize_t)len);
}

static void test_whole_message_with_fd(void **state)
{
    struct {
        struct vgpu_vu_hdr h;
        uint64_t v;
    } __attribute__((packed)) m = {{VGPU_VU_SET_VRING_KICK, 0x1, 8}, 1};
    int efd = eventfd(0, EFD_CLOEXEC);
    send_raw(&m, sizeof(m), &efd, 1);
    close(efd);

    struct vgpu_vu_rx rx;
    vgpu_vu_rx_init(&rx);
    assert_int_equal(vgpu_vu_rx_read(&rx, sp[0]), 1);
    assert_int_equal(rx.msg.hdr.request, VGPU_VU_SET_VRING_KICK);
    assert_int_equal(rx.msg.hdr.size, 8);
    assert_int_equal(rx.msg.payload.u64, 1);
    assert_int_equal(rx.msg.nfds, 1);
    int got = rx.msg.fds[0];
    assert_true(fd_is_open(got));
    assert_true(fcntl(got, F_GETFD) & FD_CLOEXEC);
    vgpu_vu_rx_reset(&rx); /* closes the unclaimed fd */
    assert_false(fd_is_open(got));
}

static void test_byte_by_byte(void **state)
{
    struct {
        struct vgpu_vu_hdr h;
        struct vhost_vring_state s;
    } __attribute__((packed)) m = {{VGPU_VU_SET_VRING_NUM, 0x1, 8}, {1, 64}};
    struct vgpu_vu_rx rx;
    vgpu_vu_rx_init(&rx);
    const uint8_t *p = (const uint8_t *)&m;
    for (size_t i = 0; i < sizeof(m); i++) {
        assert_int_equal(vgpu_vu_rx_read(&rx, sp[0]), 0); /* nothing yet / partial */
        send_raw(p + i, 1, NULL, 0);
    }
    assert_int_equal(vgpu_vu_rx_read(&rx, sp[0]), 1);
    assert_int_equal(rx.msg.payload.state.index, 1);
    assert_int_equal(rx.msg.payload.state.num, 64);
    vgpu_vu_rx_reset(&rx);
}

static void test_does_not_read_next_message(void **state)
{
    struct vgpu_vu_hdr two[2] = {{VGPU_VU_GET_FEATURES, 0x1, 0}, {VGPU_VU_SET_OWNER, 0x1, 0}};
    send_raw(two, sizeof(two), NULL, 0);
    struct vgpu_vu_rx rx;
    vgpu_vu_rx_init(&rx);
    assert_int_equal(vgpu_vu_rx_read(&rx, sp[0]), 1);
    assert_int_equal(rx.msg.hdr.request, VGPU_VU_GET_FEATURES);
    vgpu_vu_rx_reset(&rx);
    assert_int_equal(vgpu_vu_rx_read(&rx, sp[0]), 1);
    assert_int_equal(rx.msg.hdr.request, VGPU_VU_SET_OWNER);
    vgpu_vu_rx_reset(&rx);
    assert_int_equal(vgpu_vu_rx_read(&rx, sp[0]), 0);
}

static void test_bad_headers(void **state)
{
    const struct vgpu_vu_hdr bad[] = {
        {VGPU_VU_GET_FEATURES, 0x2, 0},                       /* version 2 */
        {VGPU_VU_GET_FEATURES, 0x0, 0},                       /* version 0 */
        {VGPU_VU_GET_FEATURES, 0x5, 0},                       /* a reply sent to us */
        {VGPU_VU_SET_FEATURES, 0x1, VGPU_VU_MAX_PAYLOAD + 1}, /* over the bound */
        {VGPU_VU_SET_FEATURES, 0x1, 0x7fffffff},              /* huge */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(vgpu_vu_hdr_check(&bad[i]), -EPROTO);
        send_raw(&bad[i], sizeof(bad[i]), NULL, 0);
        struct vgpu_vu_rx rx;
        vgpu_vu_rx_init(&rx);
        assert_int_equal(vgpu_vu_rx_read(&rx, sp[0]), -EPROTO);
        vgpu_vu_rx_reset(&rx);
    }
    const struct vgpu_vu_hdr good = {VGPU_VU_GET_FEATURES, 0x1 | VGPU_VU_FLAG_NEED_REPLY, 0};
    assert_int_equal(vgpu_vu_hdr_check(&good), 0);
}

static void test_too_many_fds_are_closed(void **state)
{
    struct vgpu_vu_hdr h = {VGPU_VU_SET_MEM_TABLE, 0x1, 0};
    int fds[9];
    for (int i = 0; i < 9; i++)
        fds[i] = eventfd(0, EFD_CLOEXEC);
    send_raw(&h, sizeof(h), fds, 9);
    int before_max = fds[8];
    for (int i = 0; i < 9; i++)
        close(fds[i]);

    struct vgpu_vu_rx rx;
    vgpu_vu_rx_init(&rx);
    assert_int_equal(vgpu_vu_rx_read(&rx, sp[0]), -EPROTO);
    vgpu_vu_rx_reset(&rx);
    /* Every received fd was closed: a new fd reuses the lowest numbers again. */
    int probe = eventfd(0, EFD_CLOEXEC);
    assert_true(probe <= before_max);
    close(probe);
}

static void test_eof(void **state)
{
    struct vgpu_vu_rx rx;
    vgpu_vu_rx_init(&rx);
    struct vgpu_vu_hdr h = {VGPU_VU_SET_FEATURES, 0x1, 8};
    send_raw(&h, sizeof(h), NULL, 0);
    assert_int_equal(vgpu_vu_rx_read(&rx, sp[0]), 0); /* header only: payload missing */
    shutdown(sp[1], SHUT_WR);
    assert_int_equal(vgpu_vu_rx_read(&rx, sp[0]), -ECONNRESET);
    assert_true(rx.have == VGPU_VU_HDR_SIZE);
    vgpu_vu_rx_reset(&rx);
}

static void test_send_reply(void **state)
{
    struct vgpu_vu_hdr h = {VGPU_VU_GET_FEATURES, VGPU_VU_VERSION | VGPU_VU_FLAG_REPLY, 8};
    uint64_t v = 0x123456789abcdefull;
    int efd = eventfd(0, EFD_CLOEXEC);
    assert_int_equal(vgpu_vu_send(sp[0], &h, &v, &efd, 1), 0);
    close(efd);

    char buf[64];
    union {
        char b[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b)};
    assert_int_equal(recvmsg(sp[1], &mh, 0), 20);
    struct vgpu_vu_hdr got;
    memcpy(&got, buf, sizeof(got));
    assert_int_equal(got.flags, 0x5);
    assert_int_equal(got.size, 8);
    uint64_t gv;
    memcpy(&gv, buf + 12, 8);
    assert_true(gv == v);
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    assert_non_null(c);
    int rfd;
    memcpy(&rfd, CMSG_DATA(c), sizeof(rfd));
    assert_true(fd_is_open(rfd));
    close(rfd);

    /* A peer that went away is an error, never a SIGPIPE. */
    close(sp[1]);
    sp[1] = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(vgpu_vu_send(sp[0], &h, &v, NULL, 0), -EPIPE);
}

static void test_request_names(void **state)
{
    assert_string_equal(vgpu_vu_request_name(VGPU_VU_GPU_SET_SOCKET), "GPU_SET_SOCKET");
    assert_string_equal(vgpu_vu_request_name(VGPU_VU_ADD_MEM_REG), "ADD_MEM_REG");
    assert_string_equal(vgpu_vu_request_name(1000), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_whole_message_with_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_byte_by_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_does_not_read_next_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_fds_are_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_names, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
