/* SPDX-License-Identifier: MIT */
#ifndef VGPU_VIRTIO_VU_MSG_H
#define VGPU_VIRTIO_VU_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/vhost_types.h>

/*
 * vhost-user wire framing (docs/interop/vhost-user.rst): a 12-byte header, a payload, and up
 * to VGPU_VU_MAX_FDS file descriptors in SCM_RIGHTS. Also used for the vhost-user-gpu display
 * socket, which shares the header layout.
 *
 * Threading: reactor thread only.
 */

#define VGPU_VU_HDR_SIZE 12u
#define VGPU_VU_MAX_FDS 8u
/* Our largest accepted payload: SET_MEM_TABLE with 8 regions is 264, configs are 12+256. */
#define VGPU_VU_MAX_PAYLOAD 4096u
#define VGPU_VU_CONFIG_MAX 256u
#define VGPU_VU_MEM_TABLE_MAX 8u

#define VGPU_VU_VERSION 0x1u
#define VGPU_VU_VERSION_MASK 0x3u
#define VGPU_VU_FLAG_REPLY 0x4u
#define VGPU_VU_FLAG_NEED_REPLY 0x8u

enum vgpu_vu_request {
    VGPU_VU_NONE = 0,
    VGPU_VU_GET_FEATURES = 1,
    VGPU_VU_SET_FEATURES = 2,
    VGPU_VU_SET_OWNER = 3,
    VGPU_VU_RESET_OWNER = 4,
    VGPU_VU_SET_MEM_TABLE = 5,
    VGPU_VU_SET_LOG_BASE = 6,
    VGPU_VU_SET_LOG_FD = 7,
    VGPU_VU_SET_VRING_NUM = 8,
    VGPU_VU_SET_VRING_ADDR = 9,
    VGPU_VU_SET_VRING_BASE = 10,
    VGPU_VU_GET_VRING_BASE = 11,
    VGPU_VU_SET_VRING_KICK = 12,
    VGPU_VU_SET_VRING_CALL = 13,
    VGPU_VU_SET_VRING_ERR = 14,
    VGPU_VU_GET_PROTOCOL_FEATURES = 15,
    VGPU_VU_SET_PROTOCOL_FEATURES = 16,
    VGPU_VU_GET_QUEUE_NUM = 17,
    VGPU_VU_SET_VRING_ENABLE = 18,
    VGPU_VU_SEND_RARP = 19,
    VGPU_VU_NET_SET_MTU = 20,
    VGPU_VU_SET_BACKEND_REQ_FD = 21,
    VGPU_VU_IOTLB_MSG = 22,
    VGPU_VU_SET_VRING_ENDIAN = 23,
    VGPU_VU_GET_CONFIG = 24,
    VGPU_VU_SET_CONFIG = 25,
    VGPU_VU_CREATE_CRYPTO_SESSION = 26,
    VGPU_VU_CLOSE_CRYPTO_SESSION = 27,
    VGPU_VU_POSTCOPY_ADVISE = 28,
    VGPU_VU_POSTCOPY_LISTEN = 29,
    VGPU_VU_POSTCOPY_END = 30,
    VGPU_VU_GET_INFLIGHT_FD = 31,
    VGPU_VU_SET_INFLIGHT_FD = 32,
    VGPU_VU_GPU_SET_SOCKET = 33,
    VGPU_VU_RESET_DEVICE = 34,
    VGPU_VU_VRING_KICK = 35,
    VGPU_VU_GET_MAX_MEM_SLOTS = 36,
    VGPU_VU_ADD_MEM_REG = 37,
    VGPU_VU_REM_MEM_REG = 38,
    VGPU_VU_SET_STATUS = 39,
    VGPU_VU_GET_STATUS = 40,
    VGPU_VU_REQUEST_MAX = 41,
};

/* Protocol feature bits (VHOST_USER_PROTOCOL_F_*). */
enum {
    VGPU_VU_PROTO_MQ = 0,
    VGPU_VU_PROTO_LOG_SHMFD = 1,
    VGPU_VU_PROTO_RARP = 2,
    VGPU_VU_PROTO_REPLY_ACK = 3,
    VGPU_VU_PROTO_MTU = 4,
    VGPU_VU_PROTO_BACKEND_REQ = 5,
    VGPU_VU_PROTO_CROSS_ENDIAN = 6,
    VGPU_VU_PROTO_CRYPTO_SESSION = 7,
    VGPU_VU_PROTO_PAGEFAULT = 8,
    VGPU_VU_PROTO_CONFIG = 9,
    VGPU_VU_PROTO_BACKEND_SEND_FD = 10,
    VGPU_VU_PROTO_HOST_NOTIFIER = 11,
    VGPU_VU_PROTO_INFLIGHT_SHMFD = 12,
    VGPU_VU_PROTO_RESET_DEVICE = 13,
    VGPU_VU_PROTO_INBAND_NOTIFICATIONS = 14,
    VGPU_VU_PROTO_CONFIGURE_MEM_SLOTS = 15,
    VGPU_VU_PROTO_STATUS = 16,
};

/* The virtio-level bit that says protocol features exist (VHOST_USER_F_PROTOCOL_FEATURES). */
#define VGPU_VU_F_PROTOCOL_FEATURES 30

/* Low 8 bits of the SET_VRING_KICK/CALL/ERR u64: the ring index; bit 8: no fd attached. */
#define VGPU_VU_VRING_IDX_MASK 0xffull
#define VGPU_VU_VRING_NOFD_MASK 0x100ull

struct vgpu_vu_hdr {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
};
_Static_assert(sizeof(struct vgpu_vu_hdr) == VGPU_VU_HDR_SIZE, "vhost-user header is 12 bytes");

struct vgpu_vu_region {
    uint64_t guest_phys_addr;
    uint64_t memory_size;
    uint64_t userspace_addr;
    uint64_t mmap_offset;
};

struct vgpu_vu_memory {
    uint32_t nregions;
    uint32_t padding;
    struct vgpu_vu_region regions[VGPU_VU_MEM_TABLE_MAX];
};

struct vgpu_vu_mem_reg {
    uint64_t padding;
    struct vgpu_vu_region region;
};

struct vgpu_vu_config {
    uint32_t offset;
    uint32_t size;
    uint32_t flags;
    uint8_t region[VGPU_VU_CONFIG_MAX];
};
#define VGPU_VU_CONFIG_HDR_SIZE 12u

/* A whole message with its fds. fds[i] == -1 once a handler has taken it. */
struct vgpu_vu_msg {
    struct vgpu_vu_hdr hdr;
    union {
        uint64_t u64;
        struct vhost_vring_state state;
        struct vhost_vring_addr addr;
        struct vgpu_vu_memory memory;
        struct vgpu_vu_mem_reg mem_reg;
        struct vgpu_vu_config config;
        uint8_t raw[VGPU_VU_MAX_PAYLOAD];
    } payload;
    int fds[VGPU_VU_MAX_FDS];
    unsigned int nfds;
};

/* Name of a front-end request ("GET_FEATURES"), or "UNKNOWN". */
const char *vgpu_vu_request_name(uint32_t request);

/*
 * Checks a request header from the front-end: version 1, REPLY clear, size within
 * VGPU_VU_MAX_PAYLOAD. Returns 0 or -EPROTO.
 */
int vgpu_vu_hdr_check(const struct vgpu_vu_hdr *hdr);

/*
 * Incremental receiver for one socket. Reads exactly one message's bytes (never part of the
 * next), so it can be fed from a non-blocking socket on each readable event.
 */
struct vgpu_vu_rx {
    struct vgpu_vu_msg msg;
    size_t have;   /* header + payload bytes received so far */
    bool overflow; /* more than VGPU_VU_MAX_FDS fds arrived */
};

void vgpu_vu_rx_init(struct vgpu_vu_rx *rx);
/* Closes any fds held by a partial or unclaimed message and resets. */
void vgpu_vu_rx_reset(struct vgpu_vu_rx *rx);

/*
 * Reads from the non-blocking socket sock.
 *   1            rx->msg is complete: the caller owns its fds and must reset/clear them
 *   0            more bytes needed (EAGAIN)
 *   -ECONNRESET  the peer closed the socket (cleanly between messages or mid-message)
 *   -EPROTO      malformed header, or too many fds
 *   other -errno from recvmsg
 * After a negative return the caller closes the connection (and calls vgpu_vu_rx_reset).
 */
int vgpu_vu_rx_read(struct vgpu_vu_rx *rx, int sock);

/* Closes every fd still held by msg (those not set to -1) and sets nfds to 0. */
void vgpu_vu_msg_close_fds(struct vgpu_vu_msg *msg);

/*
 * Sends hdr + payload (hdr->size bytes) and optional fds in one sendmsg, MSG_NOSIGNAL, on a
 * socket. Retries EINTR. A short or would-block write returns -EAGAIN (the caller decides;
 * vhost-user replies are tiny so this means a peer that stopped reading). Returns 0 or -errno.
 */
int vgpu_vu_send(int sock, const struct vgpu_vu_hdr *hdr, const void *payload, const int *fds,
                 unsigned int nfds);

#endif
