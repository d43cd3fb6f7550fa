/* SPDX-License-Identifier: MIT */
#include "virtio/vu_msg.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const request_names[VGPU_VU_REQUEST_MAX] = {
    [VGPU_VU_NONE] = "NONE",
    [VGPU_VU_GET_FEATURES] = "GET_FEATURES",
    [VGPU_VU_SET_FEATURES] = "SET_FEATURES",
    [VGPU_VU_SET_OWNER] = "SET_OWNER",
    [VGPU_VU_RESET_OWNER] = "RESET_OWNER",
    [VGPU_VU_SET_MEM_TABLE] = "SET_MEM_TABLE",
    [VGPU_VU_SET_LOG_BASE] = "SET_LOG_BASE",
    [VGPU_VU_SET_LOG_FD] = "SET_LOG_FD",
    [VGPU_VU_SET_VRING_NUM] = "SET_VRING_NUM",
    [VGPU_VU_SET_VRING_ADDR] = "SET_VRING_ADDR",
    [VGPU_VU_SET_VRING_BASE] = "SET_VRING_BASE",
    [VGPU_VU_GET_VRING_BASE] = "GET_VRING_BASE",
    [VGPU_VU_SET_VRING_KICK] = "SET_VRING_KICK",
    [VGPU_VU_SET_VRING_CALL] = "SET_VRING_CALL",
    [VGPU_VU_SET_VRING_ERR] = "SET_VRING_ERR",
    [VGPU_VU_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
    [VGPU_VU_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES",
    [VGPU_VU_GET_QUEUE_NUM] = "GET_QUEUE_NUM",
    [VGPU_VU_SET_VRING_ENABLE] = "SET_VRING_ENABLE",
    [VGPU_VU_SEND_RARP] = "SEND_RARP",
    [VGPU_VU_NET_SET_MTU] = "NET_SET_MTU",
    [VGPU_VU_SET_BACKEND_REQ_FD] = "SET_BACKEND_REQ_FD",
    [VGPU_VU_IOTLB_MSG] = "IOTLB_MSG",
    [VGPU_VU_SET_VRING_ENDIAN] = "SET_VRING_ENDIAN",
    [VGPU_VU_GET_CONFIG] = "GET_CONFIG",
    [VGPU_VU_SET_CONFIG] = "SET_CONFIG",
    [VGPU_VU_CREATE_CRYPTO_SESSION] = "CREATE_CRYPTO_SESSION",
    [VGPU_VU_CLOSE_CRYPTO_SESSION] = "CLOSE_CRYPTO_SESSION",
    [VGPU_VU_POSTCOPY_ADVISE] = "POSTCOPY_ADVISE",
    [VGPU_VU_POSTCOPY_LISTEN] = "POSTCOPY_LISTEN",
    [VGPU_VU_POSTCOPY_END] = "POSTCOPY_END",
    [VGPU_VU_GET_INFLIGHT_FD] = "GET_INFLIGHT_FD",
    [VGPU_VU_SET_INFLIGHT_FD] = "SET_INFLIGHT_FD",
    [VGPU_VU_GPU_SET_SOCKET] = "GPU_SET_SOCKET",
    [VGPU_VU_RESET_DEVICE] = "RESET_DEVICE",
    [VGPU_VU_VRING_KICK] = "VRING_KICK",
    [VGPU_VU_GET_MAX_MEM_SLOTS] = "GET_MAX_MEM_SLOTS",
    [VGPU_VU_ADD_MEM_REG] = "ADD_MEM_REG",
    [VGPU_VU_REM_MEM_REG] = "REM_MEM_REG",
    [VGPU_VU_SET_STATUS] = "SET_STATUS",
    [VGPU_VU_GET_STATUS] = "GET_STATUS",
};

const char *vgpu_vu_request_name(uint32_t request)
{
    if (request < VGPU_VU_REQUEST_MAX && request_names[request])
        return request_names[request];
    return "UNKNOWN";
}

int vgpu_vu_hdr_check(const struct vgpu_vu_hdr *hdr)
{
    if ((hdr->flags & VGPU_VU_VERSION_MASK) != VGPU_VU_VERSION)
        return -EPROTO;
    if (hdr->flags & VGPU_VU_FLAG_REPLY)
        return -EPROTO;
    if (hdr->size > VGPU_VU_MAX_PAYLOAD)
        return -EPROTO;
    return 0;
}

void vgpu_vu_rx_init(struct vgpu_vu_rx *rx)
{
    memset(&rx->msg.hdr, 0, sizeof(rx->msg.hdr));
    rx->msg.nfds = 0;
    rx->have = 0;
    rx->overflow = false;
}

void vgpu_vu_msg_close_fds(struct vgpu_vu_msg *msg)
{
    for (unsigned int i = 0; i < msg->nfds; i++) {
        if (msg->fds[i] >= 0)
            close(msg->fds[i]);
        msg->fds[i] = -1;
    }
    msg->nfds = 0;
}

void vgpu_vu_rx_reset(struct vgpu_vu_rx *rx)
{
    vgpu_vu_msg_close_fds(&rx->msg);
    vgpu_vu_rx_init(rx);
}

/* Keeps fds from one control message, closing any beyond VGPU_VU_MAX_FDS. */
static void collect_fds(struct vgpu_vu_rx *rx, struct msghdr *mh)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, data + i * sizeof(int), sizeof(fd));
            if (rx->msg.nfds < VGPU_VU_MAX_FDS) {
                rx->msg.fds[rx->msg.nfds++] = fd;
            } else {
                close(fd);
                rx->overflow = true;
            }
        }
    }
}

int vgpu_vu_rx_read(struct vgpu_vu_rx *rx, int sock)
{
    for (;;) {
        size_t want;
        char *dst;
        if (rx->have < VGPU_VU_HDR_SIZE) {
            want = VGPU_VU_HDR_SIZE - rx->have;
            dst = (char *)&rx->msg.hdr + rx->have;
        } else {
            size_t got = rx->have - VGPU_VU_HDR_SIZE;
            if (got == rx->msg.hdr.size)
                return 1;
            want = rx->msg.hdr.size - got;
            dst = (char *)rx->msg.payload.raw + got;
        }

        /* Room for more fds than we accept, so that excess ones are received and closed
         * rather than silently truncated by MSG_CTRUNC (which would leak nothing but would
         * hide the error). */
        union {
            char buf[CMSG_SPACE(2 * VGPU_VU_MAX_FDS * sizeof(int))];
            struct cmsghdr align;
        } control;
        struct iovec iov = {.iov_base = dst, .iov_len = want};
        struct msghdr mh = {
            .msg_iov = &iov,
            .msg_iovlen = 1,
            .msg_control = control.buf,
            .msg_controllen = sizeof(control.buf),
        };
        ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        collect_fds(rx, &mh);
        if (rx->overflow || (mh.msg_flags & MSG_CTRUNC))
            return -EPROTO;
        if (n == 0)
            return -ECONNRESET;
        rx->have += (size_t)n;
        if (rx->have == VGPU_VU_HDR_SIZE) {
            int r = vgpu_vu_hdr_check(&rx->msg.hdr);
            if (r < 0)
                return r;
        }
    }
}

int vgpu_vu_send(int sock, const struct vgpu_vu_hdr *hdr, const void *payload, const int *fds,
                 unsigned int nfds)
{
    if (nfds > VGPU_VU_MAX_FDS)
        return -EINVAL;
    struct iovec iov[2] = {
        {.iov_base = (void *)hdr, .iov_len = VGPU_VU_HDR_SIZE},
        {.iov_base = (void *)payload, .iov_len = hdr->size},
    };
    union {
        char buf[CMSG_SPACE(VGPU_VU_MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr mh = {
        .msg_iov = iov,
        .msg_iovlen = hdr->size ? 2 : 1,
    };
    if (nfds) {
        memset(&control, 0, sizeof(control));
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    size_t total = VGPU_VU_HDR_SIZE + hdr->size;
    for (;;) {
        ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EWOULDBLOCK)
                return -EAGAIN;
            return -errno;
        }
        return (size_t)n == total ? 0 : -EAGAIN;
    }
}
