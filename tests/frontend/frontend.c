/* SPDX-License-Identifier: MIT */
/*
 * One vhost-user session played the way QEMU 10's vhost-user-gpu-pci plays it
 * (hw/virtio/vhost-user.c, hw/virtio/vhost.c, hw/display/vhost-user-gpu.c), with every reply
 * checked as strictly as QEMU checks it: flags exactly 0x5, the request echoed, the exact size.
 */
#include "frontend.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/virtio_config.h>

#include "frontend_priv.h"

#define MIB (1024ull * 1024ull)
/* The allocator never hands out the first 64 KiB, so gpa 0 can mean failure. */
#define ALLOC_START (64ull * 1024ull)
/* Largest fd array one sendmsg may carry (SCM_MAX_FD). */
#define SEND_MAX_FDS 253u
/* Receive side: anything beyond this is closed and reported. */
#define RECV_MAX_FDS 16u

int fe_fail(struct vgpu_fe *fe, int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(fe->err, sizeof(fe->err), fmt, ap);
    va_end(ap);
    if (getenv("VGPU_FE_DEBUG") != NULL)
        (void)fprintf(stderr, "frontend: %s (%s)\n", fe->err, strerror(-err));
    return err;
}

static bool has_proto(const struct vgpu_fe *fe, unsigned int bit)
{
    return (fe->info.protocol_acked >> bit) & 1u;
}

bool vgpu_fe_has_protocol_feature(const struct vgpu_fe *fe, unsigned int bit)
{
    return has_proto(fe, bit);
}

bool fe_has_feature(const struct vgpu_fe *fe, unsigned int bit)
{
    return (fe->info.acked_features >> bit) & 1u;
}

static const char *request_name(uint32_t req)
{
    static const char *const names[] = {
        [VGPU_FE_GET_FEATURES] = "GET_FEATURES",
        [VGPU_FE_SET_FEATURES] = "SET_FEATURES",
        [VGPU_FE_SET_OWNER] = "SET_OWNER",
        [VGPU_FE_RESET_OWNER] = "RESET_OWNER",
        [VGPU_FE_SET_MEM_TABLE] = "SET_MEM_TABLE",
        [VGPU_FE_SET_VRING_NUM] = "SET_VRING_NUM",
        [VGPU_FE_SET_VRING_ADDR] = "SET_VRING_ADDR",
        [VGPU_FE_SET_VRING_BASE] = "SET_VRING_BASE",
        [VGPU_FE_GET_VRING_BASE] = "GET_VRING_BASE",
        [VGPU_FE_SET_VRING_KICK] = "SET_VRING_KICK",
        [VGPU_FE_SET_VRING_CALL] = "SET_VRING_CALL",
        [VGPU_FE_SET_VRING_ERR] = "SET_VRING_ERR",
        [VGPU_FE_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
        [VGPU_FE_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES",
        [VGPU_FE_GET_QUEUE_NUM] = "GET_QUEUE_NUM",
        [VGPU_FE_SET_VRING_ENABLE] = "SET_VRING_ENABLE",
        [VGPU_FE_SET_BACKEND_REQ_FD] = "SET_BACKEND_REQ_FD",
        [VGPU_FE_GET_CONFIG] = "GET_CONFIG",
        [VGPU_FE_SET_CONFIG] = "SET_CONFIG",
        [VGPU_FE_GPU_SET_SOCKET] = "GPU_SET_SOCKET",
        [VGPU_FE_RESET_DEVICE] = "RESET_DEVICE",
        [VGPU_FE_GET_MAX_MEM_SLOTS] = "GET_MAX_MEM_SLOTS",
        [VGPU_FE_ADD_MEM_REG] = "ADD_MEM_REG",
        [VGPU_FE_REM_MEM_REG] = "REM_MEM_REG",
    };

    if (req < sizeof(names) / sizeof(names[0]) && names[req] != NULL)
        return names[req];
    return "request";
}

/* ------------------------------------------------------------------------------------------ */
/* Socket I/O with deadlines                                                                  */

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Waits until fd has events or the deadline passes. 1 ready, 0 timeout, -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = events};
        int r = poll(&pfd, 1, fe_remaining(deadline));
        if (r > 0)
            return 1;
        if (r == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

/* Sends all len bytes; the fds ride on the first sendmsg. */
static int send_all(int sock, const void *buf, size_t len, const int *fds, unsigned int nfds,
                    int timeout_ms)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * SEND_MAX_FDS)];
        struct cmsghdr align;
    } ctrl;
    const uint8_t *p = buf;
    size_t off = 0;
    bool fds_pending = nfds > 0;
    int64_t deadline = fe_deadline(timeout_ms);

    if (sock < 0)
        return -ENOTCONN;
    if (nfds > SEND_MAX_FDS)
        return -EINVAL;
    while (off < len) {
        struct iovec iov = {.iov_base = (void *)(p + off), .iov_len = len - off};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        if (fds_pending) {
            memset(&ctrl, 0, sizeof(ctrl));
            msg.msg_control = ctrl.buf;
            msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
            struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
            memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
        }
        ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                int r = wait_fd(sock, POLLOUT, deadline);
                if (r < 0)
                    return r;
                if (r == 0)
                    return -ETIMEDOUT;
                continue;
            }
            return -errno;
        }
        off += (size_t)n;
        fds_pending = false;
    }
    return 0;
}

/*
 * Receives exactly len bytes. Fds that arrive are stored in fds[*nfds..max) and the rest
 * closed (*extra_fds counts those). -ECONNRESET on EOF, -ETIMEDOUT.
 */
static int recv_all(int sock, void *buf, size_t len, int64_t deadline, int *fds, unsigned int *nfds,
                    unsigned int max, unsigned int *extra_fds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * RECV_MAX_FDS)];
        struct cmsghdr align;
    } ctrl;
    uint8_t *p = buf;
    size_t off = 0;

    if (sock < 0)
        return -ENOTCONN;
    while (off < len) {
        struct iovec iov = {.iov_base = p + off, .iov_len = len - off};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = ctrl.buf,
                             .msg_controllen = sizeof(ctrl.buf)};
        ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                int r = wait_fd(sock, POLLIN, deadline);
                if (r < 0)
                    return r;
                if (r == 0)
                    return -ETIMEDOUT;
                continue;
            }
            return -errno;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < cnt; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                if (fds != NULL && *nfds < max) {
                    fds[(*nfds)++] = fd;
                } else {
                    close(fd);
                    (*extra_fds)++;
                }
            }
        }
        if (msg.msg_flags & MSG_CTRUNC)
            (*extra_fds)++;
        if (n == 0)
            return -ECONNRESET;
        off += (size_t)n;
    }
    return 0;
}

/* Reads and discards len bytes. */
static int drain(int sock, size_t len, int64_t deadline, unsigned int *extra_fds)
{
    uint8_t chunk[4096];

    while (len > 0) {
        size_t n = len < sizeof(chunk) ? len : sizeof(chunk);
        int r = recv_all(sock, chunk, n, deadline, NULL, NULL, 0, extra_fds);
        if (r < 0)
            return r;
        len -= n;
    }
    return 0;
}

/* One message (header + payload) from sock; fds as recv_all. */
static int recv_msg(int sock, int timeout_ms, struct vgpu_fe_hdr *hdr, void *payload, size_t max,
                    int *fds, unsigned int *nfds, unsigned int maxfds, unsigned int *extra_fds)
{
    int64_t deadline = fe_deadline(timeout_ms);
    int r = recv_all(sock, hdr, sizeof(*hdr), deadline, fds, nfds, maxfds, extra_fds);

    if (r < 0)
        return r;
    if (hdr->size > max) {
        r = drain(sock, hdr->size, deadline, extra_fds);
        return r < 0 ? r : -EMSGSIZE;
    }
    return recv_all(sock, payload, hdr->size, deadline, fds, nfds, maxfds, extra_fds);
}

/* ------------------------------------------------------------------------------------------ */
/* Raw wire                                                                                   */

int vgpu_fe_send_bytes(struct vgpu_fe *fe, const void *buf, size_t len, const int *fds,
                       unsigned int nfds)
{
    int r = send_all(fe->sock, buf, len, fds, nfds, fe->cfg.timeout_ms);

    if (r < 0)
        return fe_fail(fe, r, "send of %zu bytes failed: %s", len, strerror(-r));
    return 0;
}

int vgpu_fe_send(struct vgpu_fe *fe, uint32_t req, uint32_t flags, const void *payload,
                 uint32_t size, const int *fds, unsigned int nfds)
{
    struct vgpu_fe_hdr hdr = {.request = req, .flags = flags, .size = size};
    uint8_t small[VGPU_FE_HDR_SIZE + 512];
    uint8_t *buf = small;

    if (size > sizeof(small) - VGPU_FE_HDR_SIZE) {
        buf = malloc(VGPU_FE_HDR_SIZE + (size_t)size);
        if (buf == NULL)
            return fe_fail(fe, -ENOMEM, "no memory for a %u-byte message", size);
    }
    memcpy(buf, &hdr, sizeof(hdr));
    if (size > 0)
        memcpy(buf + VGPU_FE_HDR_SIZE, payload, size);
    int r = send_all(fe->sock, buf, VGPU_FE_HDR_SIZE + (size_t)size, fds, nfds, fe->cfg.timeout_ms);
    if (buf != small)
        free(buf);
    if (r < 0)
        return fe_fail(fe, r, "sending %s (%u) failed: %s", request_name(req), req, strerror(-r));
    return 0;
}

int vgpu_fe_recv(struct vgpu_fe *fe, int timeout_ms, struct vgpu_fe_hdr *hdr, void *payload,
                 size_t max)
{
    unsigned int extra = 0;
    int r = recv_msg(fe->sock, timeout_ms, hdr, payload, max, NULL, NULL, 0, &extra);

    if (r == -ECONNRESET)
        return fe_fail(fe, r, "the back-end closed the connection");
    if (r == -ETIMEDOUT)
        return fe_fail(fe, r, "no message from the back-end within %d ms", timeout_ms);
    if (r == -EMSGSIZE)
        return fe_fail(fe, r, "message %u with %u-byte payload, more than the %zu expected",
                       hdr->request, hdr->size, max);
    if (r < 0)
        return fe_fail(fe, r, "receive failed: %s", strerror(-r));
    if (extra > 0)
        return fe_fail(fe, -EPROTO, "reply to %u carried %u unexpected fds", hdr->request, extra);
    return 0;
}

int vgpu_fe_recv_reply(struct vgpu_fe *fe, uint32_t req, void *payload, uint32_t size)
{
    struct vgpu_fe_hdr hdr = {0};
    uint8_t buf[VGPU_FE_CONFIG_HDR_SIZE + 4096];
    int r = vgpu_fe_recv(fe, fe->cfg.timeout_ms, &hdr, buf, sizeof(buf));

    if (r == -EMSGSIZE)
        return fe_fail(fe, -EPROTO, "%s reply: size %u instead of %u", request_name(req), hdr.size,
                       size);
    if (r < 0)
        return r;
    if (hdr.flags != VGPU_FE_REPLY_FLAGS)
        return fe_fail(fe, -EPROTO, "%s reply: flags 0x%x instead of 0x5", request_name(req),
                       hdr.flags);
    if (hdr.request != req)
        return fe_fail(fe, -EPROTO, "reply to %s (%u) names request %u", request_name(req), req,
                       hdr.request);
    if (hdr.size != size)
        return fe_fail(fe, -EPROTO, "%s reply: size %u instead of %u", request_name(req), hdr.size,
                       size);
    memcpy(payload, buf, size);
    return 0;
}

int vgpu_fe_recv_ack(struct vgpu_fe *fe, uint32_t req)
{
    uint64_t v = 0;
    int r = vgpu_fe_recv_reply(fe, req, &v, sizeof(v));

    if (r < 0)
        return r;
    fe->last_ack = v;
    if (v != 0)
        return fe_fail(fe, -EREMOTEIO, "%s: the back-end acked with 0x%llx", request_name(req),
                       (unsigned long long)v);
    return 0;
}

int vgpu_fe_wait_closed(struct vgpu_fe *fe, int timeout_ms)
{
    int64_t deadline = fe_deadline(timeout_ms);

    if (fe->sock < 0)
        return fe_fail(fe, -ENOTCONN, "no socket");
    for (;;) {
        uint8_t b;
        ssize_t n = recv(fe->sock, &b, 1, MSG_PEEK);
        if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE)))
            return 0;
        if (n > 0) {
            struct vgpu_fe_hdr hdr;
            uint8_t buf[512];
            int r = vgpu_fe_recv(fe, fe_remaining(deadline), &hdr, buf, sizeof(buf));
            if (r == -ECONNRESET)
                return 0;
            return fe_fail(fe, -EPROTO,
                           "expected the back-end to close the connection, got message %u "
                           "(flags 0x%x, size %u)",
                           hdr.request, hdr.flags, hdr.size);
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return fe_fail(fe, -errno, "recv failed: %s", strerror(errno));
        int r = wait_fd(fe->sock, POLLIN, deadline);
        if (r < 0)
            return fe_fail(fe, r, "poll failed");
        if (r == 0)
            return fe_fail(fe, -ETIMEDOUT, "the back-end kept the connection open for %d ms",
                           timeout_ms);
    }
}

int vgpu_fe_expect_silence(struct vgpu_fe *fe, int timeout_ms)
{
    int r = wait_fd(fe->sock, POLLIN, fe_deadline(timeout_ms));

    if (r < 0)
        return fe_fail(fe, r, "poll failed");
    if (r == 0)
        return 0;
    uint8_t b;
    ssize_t n = recv(fe->sock, &b, 1, MSG_PEEK);
    if (n <= 0)
        return fe_fail(fe, -ECONNRESET, "the back-end closed the connection");
    struct vgpu_fe_hdr hdr;
    uint8_t buf[512];
    if (vgpu_fe_recv(fe, fe->cfg.timeout_ms, &hdr, buf, sizeof(buf)) < 0)
        return fe_fail(fe, -EPROTO, "unexpected bytes from the back-end");
    return fe_fail(fe, -EPROTO, "unexpected message %u (flags 0x%x, size %u)", hdr.request,
                   hdr.flags, hdr.size);
}

/* ------------------------------------------------------------------------------------------ */
/* Typed requests                                                                             */

static int get_u64(struct vgpu_fe *fe, uint32_t req, uint64_t *out)
{
    int r = vgpu_fe_send(fe, req, VGPU_FE_VERSION, NULL, 0, NULL, 0);

    if (r < 0)
        return r;
    return vgpu_fe_recv_reply(fe, req, out, sizeof(*out));
}

/*
 * Sends a request that has no reply body; with need_reply and REPLY_ACK negotiated, sets
 * NEED_REPLY and checks the ack (vhost_user_write + process_message_reply).
 */
static int send_maybe_ack(struct vgpu_fe *fe, uint32_t req, bool need_reply, const void *payload,
                          uint32_t size, const int *fds, unsigned int nfds)
{
    bool ack = need_reply && has_proto(fe, VGPU_FE_PROTO_REPLY_ACK);
    uint32_t flags = VGPU_FE_VERSION | (ack ? VGPU_FE_FLAG_NEED_REPLY : 0);
    int r = vgpu_fe_send(fe, req, flags, payload, size, fds, nfds);

    if (r < 0 || !ack)
        return r;
    return vgpu_fe_recv_ack(fe, req);
}

/*
 * QEMU's vhost_user_write_sync(wait_for_reply = true): NEED_REPLY with REPLY_ACK, otherwise a
 * GET_FEATURES round trip as a barrier.
 */
static int send_sync(struct vgpu_fe *fe, uint32_t req, const void *payload, uint32_t size)
{
    if (has_proto(fe, VGPU_FE_PROTO_REPLY_ACK))
        return send_maybe_ack(fe, req, true, payload, size, NULL, 0);
    int r = vgpu_fe_send(fe, req, VGPU_FE_VERSION, payload, size, NULL, 0);
    if (r < 0)
        return r;
    uint64_t dummy;
    return get_u64(fe, VGPU_FE_GET_FEATURES, &dummy);
}

int vgpu_fe_get_features(struct vgpu_fe *fe, uint64_t *out)
{
    return get_u64(fe, VGPU_FE_GET_FEATURES, out);
}

int vgpu_fe_set_features(struct vgpu_fe *fe, uint64_t features)
{
    return vgpu_fe_send(fe, VGPU_FE_SET_FEATURES, VGPU_FE_VERSION, &features, sizeof(features),
                        NULL, 0);
}

int vgpu_fe_get_protocol_features(struct vgpu_fe *fe, uint64_t *out)
{
    return get_u64(fe, VGPU_FE_GET_PROTOCOL_FEATURES, out);
}

int vgpu_fe_set_protocol_features(struct vgpu_fe *fe, uint64_t features)
{
    return vgpu_fe_send(fe, VGPU_FE_SET_PROTOCOL_FEATURES, VGPU_FE_VERSION, &features,
                        sizeof(features), NULL, 0);
}

int vgpu_fe_get_queue_num(struct vgpu_fe *fe, uint64_t *out)
{
    return get_u64(fe, VGPU_FE_GET_QUEUE_NUM, out);
}

int vgpu_fe_get_max_mem_slots(struct vgpu_fe *fe, uint64_t *out)
{
    return get_u64(fe, VGPU_FE_GET_MAX_MEM_SLOTS, out);
}

int vgpu_fe_set_owner(struct vgpu_fe *fe)
{
    return vgpu_fe_send(fe, VGPU_FE_SET_OWNER, VGPU_FE_VERSION, NULL, 0, NULL, 0);
}

int vgpu_fe_reset_device(struct vgpu_fe *fe)
{
    uint32_t req =
        has_proto(fe, VGPU_FE_PROTO_RESET_DEVICE) ? VGPU_FE_RESET_DEVICE : VGPU_FE_RESET_OWNER;

    return vgpu_fe_send(fe, req, VGPU_FE_VERSION, NULL, 0, NULL, 0);
}

static void region_payload(uint8_t out[40], const struct vgpu_fe_region *r)
{
    uint64_t v[5] = {0, r->gpa, r->size, r->uva, r->mmap_offset};

    memcpy(out, v, sizeof(v));
}

int vgpu_fe_add_mem_reg(struct vgpu_fe *fe, const struct vgpu_fe_region *r, int fd)
{
    uint8_t p[40];

    region_payload(p, r);
    return send_maybe_ack(fe, VGPU_FE_ADD_MEM_REG, true, p, sizeof(p), &fd, 1);
}

int vgpu_fe_rem_mem_reg(struct vgpu_fe *fe, const struct vgpu_fe_region *r)
{
    uint8_t p[40];

    region_payload(p, r);
    return send_maybe_ack(fe, VGPU_FE_REM_MEM_REG, true, p, sizeof(p), NULL, 0);
}

int vgpu_fe_set_mem_table(struct vgpu_fe *fe, const struct vgpu_fe_region *r, const int *fds,
                          unsigned int n)
{
    uint8_t p[8 + 32 * VGPU_FE_MAX_FDS];
    uint32_t hdr[2] = {n, 0};

    if (n > VGPU_FE_MAX_FDS)
        return fe_fail(fe, -EINVAL, "at most %u regions", VGPU_FE_MAX_FDS);
    memcpy(p, hdr, sizeof(hdr));
    for (unsigned int i = 0; i < n; i++) {
        uint64_t v[4] = {r[i].gpa, r[i].size, r[i].uva, r[i].mmap_offset};
        memcpy(p + 8 + (size_t)32 * i, v, sizeof(v));
    }
    return send_maybe_ack(fe, VGPU_FE_SET_MEM_TABLE, true, p, 8 + 32 * n, fds, n);
}

static int set_vring_state(struct vgpu_fe *fe, uint32_t req, unsigned int idx, unsigned int num)
{
    struct vhost_vring_state s = {.index = idx, .num = num};

    return vgpu_fe_send(fe, req, VGPU_FE_VERSION, &s, sizeof(s), NULL, 0);
}

int vgpu_fe_set_vring_num(struct vgpu_fe *fe, unsigned int idx, unsigned int num)
{
    return set_vring_state(fe, VGPU_FE_SET_VRING_NUM, idx, num);
}

int vgpu_fe_set_vring_base(struct vgpu_fe *fe, unsigned int idx, unsigned int base)
{
    return set_vring_state(fe, VGPU_FE_SET_VRING_BASE, idx, base);
}

int vgpu_fe_get_vring_base(struct vgpu_fe *fe, unsigned int idx, uint32_t *base)
{
    struct vhost_vring_state s = {.index = idx, .num = 0};
    int r = vgpu_fe_send(fe, VGPU_FE_GET_VRING_BASE, VGPU_FE_VERSION, &s, sizeof(s), NULL, 0);

    if (r < 0)
        return r;
    r = vgpu_fe_recv_reply(fe, VGPU_FE_GET_VRING_BASE, &s, sizeof(s));
    if (r < 0)
        return r;
    if (s.index != idx)
        return fe_fail(fe, -EPROTO, "GET_VRING_BASE reply for ring %u instead of %u", s.index, idx);
    *base = s.num;
    return 0;
}

int vgpu_fe_set_vring_addr(struct vgpu_fe *fe, const struct vhost_vring_addr *addr)
{
    if (addr->flags & (1u << VHOST_VRING_F_LOG))
        return send_sync(fe, VGPU_FE_SET_VRING_ADDR, addr, sizeof(*addr));
    return vgpu_fe_send(fe, VGPU_FE_SET_VRING_ADDR, VGPU_FE_VERSION, addr, sizeof(*addr), NULL, 0);
}

static int set_vring_file(struct vgpu_fe *fe, uint32_t req, unsigned int idx, int fd)
{
    uint64_t v = idx;

    if (fd < 0)
        v |= VGPU_FE_VRING_NOFD;
    return send_maybe_ack(fe, req, true, &v, sizeof(v), &fd, fd < 0 ? 0 : 1);
}

int vgpu_fe_set_vring_kick(struct vgpu_fe *fe, unsigned int idx, int fd)
{
    return set_vring_file(fe, VGPU_FE_SET_VRING_KICK, idx, fd);
}

int vgpu_fe_set_vring_call(struct vgpu_fe *fe, unsigned int idx, int fd)
{
    return set_vring_file(fe, VGPU_FE_SET_VRING_CALL, idx, fd);
}

int vgpu_fe_set_vring_err(struct vgpu_fe *fe, unsigned int idx, int fd)
{
    return set_vring_file(fe, VGPU_FE_SET_VRING_ERR, idx, fd);
}

int vgpu_fe_set_vring_enable(struct vgpu_fe *fe, unsigned int idx, bool enable)
{
    struct vhost_vring_state s = {.index = idx, .num = enable ? 1u : 0u};

    return send_sync(fe, VGPU_FE_SET_VRING_ENABLE, &s, sizeof(s));
}

int vgpu_fe_get_config(struct vgpu_fe *fe, uint32_t offset, uint32_t size, void *out)
{
    uint32_t total = VGPU_FE_CONFIG_HDR_SIZE + size;
    uint8_t *p = calloc(1, total);
    struct vgpu_fe_hdr hdr = {0};
    int r;

    if (p == NULL)
        return fe_fail(fe, -ENOMEM, "no memory");
    uint32_t h[3] = {offset, size, 0};
    memcpy(p, h, sizeof(h));
    r = vgpu_fe_send(fe, VGPU_FE_GET_CONFIG, VGPU_FE_VERSION, p, total, NULL, 0);
    if (r < 0)
        goto out;
    r = vgpu_fe_recv(fe, fe->cfg.timeout_ms, &hdr, p, total);
    if (r == -EMSGSIZE) {
        r = fe_fail(fe, -EPROTO, "GET_CONFIG reply: size %u instead of %u", hdr.size, total);
        goto out;
    }
    if (r < 0)
        goto out;
    if (hdr.flags != VGPU_FE_REPLY_FLAGS || hdr.request != VGPU_FE_GET_CONFIG) {
        r = fe_fail(fe, -EPROTO, "GET_CONFIG reply: request %u flags 0x%x", hdr.request, hdr.flags);
        goto out;
    }
    /* libvhost-user answers a failure with size 0; a bare 12-byte header is the other
     * plausible "no config" answer. QEMU treats both as errors. */
    if ((hdr.size == 0 || hdr.size == VGPU_FE_CONFIG_HDR_SIZE) && size > 0) {
        r = fe_fail(fe, -EREMOTEIO, "GET_CONFIG(%u, %u): error reply (size %u)", offset, size,
                    hdr.size);
        goto out;
    }
    if (hdr.size != total) {
        r = fe_fail(fe, -EPROTO, "GET_CONFIG reply: size %u instead of %u", hdr.size, total);
        goto out;
    }
    memcpy(out, p + VGPU_FE_CONFIG_HDR_SIZE, size);
out:
    free(p);
    return r;
}

int vgpu_fe_set_config(struct vgpu_fe *fe, uint32_t offset, const void *buf, uint32_t size)
{
    uint32_t total = VGPU_FE_CONFIG_HDR_SIZE + size;
    uint8_t *p = calloc(1, total);

    if (p == NULL)
        return fe_fail(fe, -ENOMEM, "no memory");
    uint32_t h[3] = {offset, size, 0};
    memcpy(p, h, sizeof(h));
    if (size > 0)
        memcpy(p + VGPU_FE_CONFIG_HDR_SIZE, buf, size);
    int r = send_maybe_ack(fe, VGPU_FE_SET_CONFIG, true, p, total, NULL, 0);
    free(p);
    return r;
}

int vgpu_fe_gpu_set_socket(struct vgpu_fe *fe, int fd)
{
    return vgpu_fe_send(fe, VGPU_FE_GPU_SET_SOCKET, VGPU_FE_VERSION, NULL, 0, &fd, 1);
}

int vgpu_fe_set_backend_req_fd(struct vgpu_fe *fe, int fd)
{
    return send_maybe_ack(fe, VGPU_FE_SET_BACKEND_REQ_FD, true, NULL, 0, &fd, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Guest memory                                                                               */

static int mem_init(struct vgpu_fe *fe)
{
    uint64_t size = fe->cfg.mem_size;

    fe->memfd = memfd_create("vgpu-fe-guest", MFD_CLOEXEC);
    if (fe->memfd < 0)
        return -errno;
    if (ftruncate(fe->memfd, (off_t)size) < 0)
        return -errno;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fe->memfd, 0);
    if (p == MAP_FAILED)
        return -errno;
    fe->mem = p;
    fe->mem_size = size;
    if (!fe->cfg.two_regions) {
        fe->nregions = 1;
        fe->regions[0] = (struct vgpu_fe_region){
            .gpa = 0, .size = size, .uva = (uint64_t)(uintptr_t)p, .mmap_offset = 0};
        return 0;
    }
    /*
     * Like QEMU, each region's user address is an address of the front-end's own mapping.
     * Separate mappings make the two user ranges non-contiguous (typically in reverse order),
     * so a back-end that translates through the wrong region fails visibly.
     */
    uint64_t half = size / 2;
    fe->nregions = 2;
    for (unsigned int i = 0; i < 2; i++) {
        void *v =
            mmap(NULL, half, PROT_READ | PROT_WRITE, MAP_SHARED, fe->memfd, (off_t)(half * i));
        if (v == MAP_FAILED)
            return -errno;
        fe->views[i] = v;
        fe->regions[i] = (struct vgpu_fe_region){
            .gpa = half * i, .size = half, .uva = (uint64_t)(uintptr_t)v, .mmap_offset = half * i};
    }
    return 0;
}

static void mem_finish(struct vgpu_fe *fe)
{
    for (unsigned int i = 0; i < 2; i++) {
        if (fe->views[i] != NULL)
            munmap(fe->views[i], fe->mem_size / 2);
    }
    if (fe->mem != NULL)
        munmap(fe->mem, fe->mem_size);
    if (fe->memfd >= 0)
        close(fe->memfd);
}

uint64_t vgpu_fe_mem_size(const struct vgpu_fe *fe)
{
    return fe->mem_size;
}

int vgpu_fe_mem_fd(const struct vgpu_fe *fe)
{
    return fe->memfd;
}

unsigned int vgpu_fe_num_regions(const struct vgpu_fe *fe)
{
    return fe->nregions;
}

const struct vgpu_fe_region *vgpu_fe_region(const struct vgpu_fe *fe, unsigned int i)
{
    return i < fe->nregions ? &fe->regions[i] : NULL;
}

uint64_t vgpu_fe_alloc(struct vgpu_fe *fe, size_t size, size_t align)
{
    if (align == 0)
        align = 16;
    if ((align & (align - 1)) != 0 || size == 0)
        return 0;
    uint64_t gpa = (fe->alloc_next + align - 1) & ~(uint64_t)(align - 1);
    /* Never straddle a region boundary: rings must sit inside one region. */
    for (unsigned int i = 1; i < fe->nregions; i++) {
        uint64_t b = fe->regions[i].gpa;
        if (gpa < b && gpa + size > b)
            gpa = b;
    }
    if (gpa + size > fe->mem_size || gpa + size < gpa)
        return 0;
    fe->alloc_next = gpa + size;
    memset(fe->mem + gpa, 0, size);
    return gpa;
}

uint64_t vgpu_fe_alloc_mark(const struct vgpu_fe *fe)
{
    return fe->alloc_next;
}

void vgpu_fe_alloc_release(struct vgpu_fe *fe, uint64_t mark)
{
    if (mark >= ALLOC_START && mark <= fe->alloc_next)
        fe->alloc_next = mark;
}

void *vgpu_fe_gpa_ptr(const struct vgpu_fe *fe, uint64_t gpa, size_t len)
{
    if (gpa >= fe->mem_size || len > fe->mem_size - gpa)
        return NULL;
    return fe->mem + gpa;
}

uint64_t vgpu_fe_gpa_uva(const struct vgpu_fe *fe, uint64_t gpa)
{
    for (unsigned int i = 0; i < fe->nregions; i++) {
        const struct vgpu_fe_region *r = &fe->regions[i];
        if (gpa >= r->gpa && gpa - r->gpa < r->size)
            return r->uva + (gpa - r->gpa);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Lifetime                                                                                   */

void vgpu_fe_config_init(struct vgpu_fe_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->mem_size = 64 * MIB;
    cfg->queue_size[0] = 64;
    cfg->queue_size[1] = 16;
    cfg->protocol_mask = VGPU_FE_PROTO_QEMU10;
    cfg->guest_features = (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_RING_F_INDIRECT_DESC) |
                          (1ull << VIRTIO_RING_F_EVENT_IDX);
    cfg->reset_device = true;
    cfg->serve_display = true;
    cfg->display_features = 0;
    cfg->strict_notify = true;
    cfg->timeout_ms = vgpu_fe_timeout_ms(5000);
    cfg->max_indirect = 16;
}

struct vgpu_fe *vgpu_fe_create(int sock, const struct vgpu_fe_config *cfg)
{
    struct vgpu_fe *fe = calloc(1, sizeof(*fe));
    int r;

    if (fe == NULL) {
        close(sock);
        errno = ENOMEM;
        return NULL;
    }
    if (cfg != NULL)
        fe->cfg = *cfg;
    else
        vgpu_fe_config_init(&fe->cfg);
    fe->sock = sock;
    fe->display_fd = -1;
    fe->backend_fd = -1;
    fe->memfd = -1;
    for (unsigned int q = 0; q < VGPU_FE_NUM_QUEUES; q++)
        fe->vq[q].kick_fd = fe->vq[q].call_fd = fe->vq[q].masked_fd = fe->vq[q].err_fd = -1;
    (void)snprintf(fe->err, sizeof(fe->err), "no error");
    set_nonblock(sock);

    if (fe->cfg.mem_size < 4 * MIB || fe->cfg.mem_size % (2 * MIB) != 0 ||
        fe->cfg.max_indirect == 0 || fe->cfg.timeout_ms <= 0) {
        r = -EINVAL;
        goto err;
    }
    r = mem_init(fe);
    if (r < 0)
        goto err;
    fe->alloc_next = ALLOC_START;
    for (unsigned int q = 0; q < VGPU_FE_NUM_QUEUES; q++) {
        r = fe_vq_init(fe, q);
        if (r < 0)
            goto err;
    }
    return fe;

err:
    vgpu_fe_destroy(fe);
    errno = -r;
    return NULL;
}

void vgpu_fe_destroy(struct vgpu_fe *fe)
{
    if (fe == NULL)
        return;
    for (unsigned int q = 0; q < VGPU_FE_NUM_QUEUES; q++)
        fe_vq_finish(fe, q);
    if (fe->display_fd >= 0)
        close(fe->display_fd);
    if (fe->backend_fd >= 0)
        close(fe->backend_fd);
    if (fe->sock >= 0)
        close(fe->sock);
    mem_finish(fe);
    free(fe);
}

const struct vgpu_fe_info *vgpu_fe_info(const struct vgpu_fe *fe)
{
    return &fe->info;
}

const struct vgpu_fe_config *vgpu_fe_config(const struct vgpu_fe *fe)
{
    return &fe->cfg;
}

const char *vgpu_fe_last_error(const struct vgpu_fe *fe)
{
    return fe->err;
}

uint64_t vgpu_fe_last_ack(const struct vgpu_fe *fe)
{
    return fe->last_ack;
}

int vgpu_fe_socket(const struct vgpu_fe *fe)
{
    return fe->sock;
}

void vgpu_fe_disconnect(struct vgpu_fe *fe)
{
    if (fe->sock >= 0)
        close(fe->sock);
    fe->sock = -1;
}

int vgpu_fe_display_fd(const struct vgpu_fe *fe)
{
    return fe->display_fd;
}

int vgpu_fe_backend_fd(const struct vgpu_fe *fe)
{
    return fe->backend_fd;
}

/* ------------------------------------------------------------------------------------------ */
/* The QEMU 10 sequences                                                                      */

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int try_r_ = (expr);                                                                       \
        if (try_r_ < 0)                                                                            \
            return try_r_;                                                                         \
    } while (0)

int vgpu_fe_realize(struct vgpu_fe *fe)
{
    uint64_t features = 0, again = 0;

    /* vhost_user_backend_init */
    TRY(vgpu_fe_get_features(fe, &features));
    fe->info.features = features;
    if (features & (1ull << VGPU_FE_F_PROTOCOL_FEATURES)) {
        uint64_t pf = 0;
        TRY(vgpu_fe_get_protocol_features(fe, &pf));
        fe->info.protocol_features = pf;
        TRY(vgpu_fe_set_protocol_features(fe, pf & fe->cfg.protocol_mask));
        fe->info.protocol_acked = pf & fe->cfg.protocol_mask;
        if (has_proto(fe, VGPU_FE_PROTO_MQ)) {
            TRY(vgpu_fe_get_queue_num(fe, &fe->info.queue_num));
            if (fe->info.queue_num < VGPU_FE_NUM_QUEUES)
                return fe_fail(fe, -EPROTO, "GET_QUEUE_NUM: %llu queues, 2 needed",
                               (unsigned long long)fe->info.queue_num);
        }
        if (has_proto(fe, VGPU_FE_PROTO_CONFIGURE_MEM_SLOTS)) {
            TRY(vgpu_fe_get_max_mem_slots(fe, &fe->info.max_mem_slots));
            if (fe->info.max_mem_slots < fe->nregions)
                return fe_fail(fe, -EPROTO, "GET_MAX_MEM_SLOTS: %llu slots, %u needed",
                               (unsigned long long)fe->info.max_mem_slots, fe->nregions);
        }
        if (has_proto(fe, VGPU_FE_PROTO_BACKEND_REQ)) {
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return fe_fail(fe, -errno, "socketpair failed");
            int r = vgpu_fe_set_backend_req_fd(fe, sv[1]);
            close(sv[1]);
            if (fe->backend_fd >= 0)
                close(fe->backend_fd);
            fe->backend_fd = sv[0];
            if (r < 0)
                return r;
        }
    }
    /* vhost_dev_init */
    TRY(vgpu_fe_set_owner(fe));
    TRY(vgpu_fe_get_features(fe, &again));
    if (again != features)
        return fe_fail(fe, -EPROTO, "GET_FEATURES changed from 0x%llx to 0x%llx",
                       (unsigned long long)features, (unsigned long long)again);
    for (unsigned int q = 0; q < VGPU_FE_NUM_QUEUES; q++) {
        TRY(vgpu_fe_set_vring_call(fe, q, fe->vq[q].masked_fd));
        TRY(vgpu_fe_set_vring_err(fe, q, fe->vq[q].err_fd));
    }
    fe->info.realized = true;
    return 0;
}

int vgpu_fe_probe(struct vgpu_fe *fe)
{
    struct virtio_gpu_config c;

    for (int i = 0; i < 2; i++)
        TRY(vgpu_fe_get_config(fe, 0, sizeof(c), &c));
    fe->info.config = c;
    return 0;
}

static int send_memory(struct vgpu_fe *fe)
{
    if (has_proto(fe, VGPU_FE_PROTO_CONFIGURE_MEM_SLOTS)) {
        /* QEMU diffs against its shadow table: nothing to send after the first time. */
        if (fe->info.memory_sent)
            return 0;
        for (unsigned int i = 0; i < fe->nregions; i++)
            TRY(vgpu_fe_add_mem_reg(fe, &fe->regions[i], fe->memfd));
    } else {
        int fds[2] = {fe->memfd, fe->memfd};
        TRY(vgpu_fe_set_mem_table(fe, fe->regions, fds, fe->nregions));
    }
    fe->info.memory_sent = true;
    return 0;
}

static uint64_t acked_features(const struct vgpu_fe *fe)
{
    uint64_t offered = fe->info.features;
    uint64_t acked = (fe->cfg.guest_features & offered) | fe->cfg.force_features;

    acked |= offered & (1ull << VGPU_FE_F_PROTOCOL_FEATURES);
    return acked;
}

int vgpu_fe_display_new(struct vgpu_fe *fe, int *old_fd)
{
    int sv[2];

    if (old_fd != NULL)
        *old_fd = -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return fe_fail(fe, -errno, "socketpair failed");
    if (old_fd != NULL)
        *old_fd = fe->display_fd;
    else if (fe->display_fd >= 0)
        close(fe->display_fd);
    fe->display_fd = sv[0];
    set_nonblock(sv[0]);
    int r = vgpu_fe_gpu_set_socket(fe, sv[1]);
    close(sv[1]);
    return r;
}

int vgpu_fe_start(struct vgpu_fe *fe)
{
    if (!fe->info.realized)
        return fe_fail(fe, -EINVAL, "start before realize");
    /* vhost_user_gpu_set_status -> vhost_user_gpu_do_set_socket */
    if (!fe->cfg.no_display_socket)
        TRY(vgpu_fe_display_new(fe, NULL));
    /* set_guest_notifiers: masked notifiers first */
    for (unsigned int q = 0; q < VGPU_FE_NUM_QUEUES; q++)
        TRY(vgpu_fe_set_vring_call(fe, q, fe->vq[q].masked_fd));
    /* vhost_dev_start */
    fe->info.acked_features = acked_features(fe);
    TRY(vgpu_fe_set_features(fe, fe->info.acked_features));
    TRY(send_memory(fe));
    for (unsigned int q = 0; q < VGPU_FE_NUM_QUEUES; q++) {
        struct fe_vq *vq = &fe->vq[q];
        TRY(fe_vq_setup_rings(fe, q));
        TRY(vgpu_fe_set_vring_num(fe, q, vq->num));
        TRY(vgpu_fe_set_vring_base(fe, q, 0));
        struct vhost_vring_addr a = {
            .index = q,
            .flags = 0,
            .desc_user_addr = vgpu_fe_gpa_uva(fe, vq->desc_gpa),
            .used_user_addr = vgpu_fe_gpa_uva(fe, vq->used_gpa),
            .avail_user_addr = vgpu_fe_gpa_uva(fe, vq->avail_gpa),
            .log_guest_addr = vq->used_gpa,
        };
        TRY(vgpu_fe_set_vring_addr(fe, &a));
        TRY(vgpu_fe_set_vring_kick(fe, q, vq->kick_fd));
        if (!fe->cfg.no_injected_kick)
            TRY(vgpu_fe_vq_kick(fe, q));
    }
    if (fe->info.acked_features & (1ull << VGPU_FE_F_PROTOCOL_FEATURES)) {
        for (unsigned int q = 0; q < VGPU_FE_NUM_QUEUES; q++)
            TRY(vgpu_fe_set_vring_enable(fe, q, true));
    }
    /* guest notifiers unmasked: the real interrupt eventfds */
    for (unsigned int q = 0; q < VGPU_FE_NUM_QUEUES; q++) {
        TRY(vgpu_fe_set_vring_call(fe, q, fe->vq[q].call_fd));
        fe_vq_unmask(fe, q);
    }
    fe->info.started = true;
    return 0;
}

int vgpu_fe_stop(struct vgpu_fe *fe)
{
    if (fe->display_fd >= 0)
        close(fe->display_fd);
    fe->display_fd = -1;
    if (fe->info.acked_features & (1ull << VGPU_FE_F_PROTOCOL_FEATURES)) {
        for (unsigned int q = 0; q < VGPU_FE_NUM_QUEUES; q++)
            TRY(vgpu_fe_set_vring_enable(fe, q, false));
    }
    for (unsigned int q = 0; q < VGPU_FE_NUM_QUEUES; q++)
        TRY(vgpu_fe_get_vring_base(fe, q, &fe->info.last_avail[q]));
    for (unsigned int q = 0; q < VGPU_FE_NUM_QUEUES; q++)
        TRY(vgpu_fe_set_vring_call(fe, q, fe->vq[q].masked_fd));
    fe->info.started = false;
    /* virtio_reset: set_status(0) stopped vhost above, then the device's reset handler. */
    return vgpu_fe_device_reset(fe);
}

int vgpu_fe_device_reset(struct vgpu_fe *fe)
{
    if (!fe->cfg.reset_device || !has_proto(fe, VGPU_FE_PROTO_RESET_DEVICE))
        return 0;
    return vgpu_fe_send(fe, VGPU_FE_RESET_DEVICE, VGPU_FE_VERSION, NULL, 0, NULL, 0);
}

int vgpu_fe_negotiate(struct vgpu_fe *fe)
{
    TRY(vgpu_fe_realize(fe));
    TRY(vgpu_fe_device_reset(fe)); /* machine reset */
    TRY(vgpu_fe_device_reset(fe)); /* the guest driver resets the device at probe */
    TRY(vgpu_fe_probe(fe));
    return vgpu_fe_start(fe);
}

/* ------------------------------------------------------------------------------------------ */
/* Display socket                                                                             */

int vgpu_fe_display_recv(struct vgpu_fe *fe, int timeout_ms, struct vgpu_fe_hdr *hdr, void *payload,
                         size_t max, int *fd)
{
    int fds[1];
    unsigned int nfds = 0, extra = 0;

    if (fd != NULL)
        *fd = -1;
    if (fe->display_fd < 0)
        return fe_fail(fe, -ENOTCONN, "no display socket");
    int r = recv_msg(fe->display_fd, timeout_ms, hdr, payload, max, fds, &nfds, 1, &extra);
    if (nfds > 0) {
        if (fd != NULL && r == 0)
            *fd = fds[0];
        else
            close(fds[0]);
    }
    if (r == -ECONNRESET)
        return fe_fail(fe, r, "the back-end closed the display socket");
    if (r == -ETIMEDOUT)
        return fe_fail(fe, r, "no display message within %d ms", timeout_ms);
    if (r == -EMSGSIZE)
        return fe_fail(fe, r, "display message %u: %u-byte payload over %zu", hdr->request,
                       hdr->size, max);
    if (r < 0)
        return fe_fail(fe, r, "display receive failed: %s", strerror(-r));
    if (extra > 0)
        return fe_fail(fe, -EPROTO, "display message %u carried %u fds", hdr->request,
                       extra + nfds);
    return 0;
}

int vgpu_fe_display_reply(struct vgpu_fe *fe, uint32_t req, const void *payload, uint32_t size)
{
    struct vgpu_fe_hdr hdr = {.request = req, .flags = VGPU_FE_FLAG_REPLY, .size = size};
    uint8_t buf[VGPU_FE_HDR_SIZE + 2048];

    if (size > sizeof(buf) - VGPU_FE_HDR_SIZE)
        return fe_fail(fe, -EINVAL, "display reply too large");
    memcpy(buf, &hdr, sizeof(hdr));
    if (size > 0)
        memcpy(buf + VGPU_FE_HDR_SIZE, payload, size);
    int r = send_all(fe->display_fd, buf, VGPU_FE_HDR_SIZE + size, NULL, 0, fe->cfg.timeout_ms);
    if (r < 0)
        return fe_fail(fe, r, "display reply %u failed: %s", req, strerror(-r));
    return 0;
}

int vgpu_fe_display_serve(struct vgpu_fe *fe, int timeout_ms)
{
    struct vgpu_fe_hdr hdr = {0};
    uint8_t payload[64];
    int r = vgpu_fe_display_recv(fe, timeout_ms, &hdr, payload, sizeof(payload), NULL);

    if (r < 0 && r != -EMSGSIZE && r != -EPROTO)
        return r;
    if (hdr.request < VGPU_FE_DISPLAY_MAX)
        fe->display_counts[hdr.request]++;
    switch (hdr.request) {
    case VGPU_FE_DISPLAY_GET_PROTOCOL_FEATURES: {
        uint64_t f = fe->cfg.display_features;
        TRY(vgpu_fe_display_reply(fe, hdr.request, &f, sizeof(f)));
        break;
    }
    case VGPU_FE_DISPLAY_GET_DISPLAY_INFO: {
        struct virtio_gpu_resp_display_info info;
        memset(&info, 0, sizeof(info));
        info.hdr.type = VIRTIO_GPU_RESP_OK_DISPLAY_INFO;
        info.pmodes[0].r.width = 1280;
        info.pmodes[0].r.height = 800;
        info.pmodes[0].enabled = 1;
        TRY(vgpu_fe_display_reply(fe, hdr.request, &info, sizeof(info)));
        break;
    }
    case VGPU_FE_DISPLAY_GET_EDID: {
        /* QEMU 7.2 does not know GET_EDID and never replies; current QEMU does if agreed. */
        if (!(fe->cfg.display_features & 1u))
            break;
        struct virtio_gpu_resp_edid edid;
        static const uint8_t magic[8] = {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00};
        memset(&edid, 0, sizeof(edid));
        edid.hdr.type = VIRTIO_GPU_RESP_OK_EDID;
        edid.size = 128;
        memcpy(edid.edid, magic, sizeof(magic));
        TRY(vgpu_fe_display_reply(fe, hdr.request, &edid, sizeof(edid)));
        break;
    }
    case VGPU_FE_DISPLAY_DMABUF_UPDATE:
        TRY(vgpu_fe_display_reply(fe, hdr.request, NULL, 0));
        break;
    default:
        break;
    }
    return (int)hdr.request;
}

unsigned int vgpu_fe_display_count(const struct vgpu_fe *fe, uint32_t req)
{
    return req < VGPU_FE_DISPLAY_MAX ? fe->display_counts[req] : 0;
}
