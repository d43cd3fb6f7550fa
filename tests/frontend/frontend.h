/* SPDX-License-Identifier: MIT */
#ifndef VGPU_TESTS_FRONTEND_H
#define VGPU_TESTS_FRONTEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/vhost_types.h>
#include <linux/virtio_gpu.h>
#include <linux/virtio_ring.h>

/*
 * A fake vhost-user front-end that plays QEMU 10's vhost-user-gpu-pci device against the
 * vhost-gpu daemon, for integration tests, benchmarks and fuzzers.
 *
 * Three parts:
 *   - vgpu_fe_daemon_*: spawns the daemon binary ($VGPU_BINARY) as a child process, watches
 *     it (alive, fd count, RSS) and kills it. Children die with the test process
 *     (PR_SET_PDEATHSIG) and are killed at exit() if still registered.
 *   - struct vgpu_fe: one vhost-user session on a connected socket. Owns the guest memory (a
 *     memfd, optionally described as two regions), the kick/call/err eventfds, the driver side
 *     of both virtqueues, the display socket (QEMU's end of GPU_SET_SOCKET) and the back-end
 *     request channel. Offers a raw wire API (send anything, receive and check replies), typed
 *     request helpers, and the exact message sequences QEMU 10 sends (realize, probe, start,
 *     stop, restart).
 *   - vgpu_fe_vq_*: split virtqueues on the driver side, with EVENT_IDX and indirect tables,
 *     plus raw access to descriptors and rings to craft bad chains.
 *
 * Conventions: functions returning int give 0 (or a non-negative value where documented) or a
 * negative errno. Protocol errors by the back-end are -EPROTO; a non-zero REPLY_ACK value is
 * -EREMOTEIO; a timeout is -ETIMEDOUT; the peer closing the socket is -ECONNRESET. A
 * human-readable reason for the last failure of a session is kept in vgpu_fe_last_error().
 * Timeouts are in milliseconds and are NOT scaled by the library, except where a function
 * takes no timeout (then the session's config timeout is used, which vgpu_fe_config_init()
 * scales). Use vgpu_fe_timeout_ms() to scale your own.
 *
 * Threading: none of this is thread-safe; use one thread per session and keep daemon
 * management on the main thread. No function installs signal handlers; every socket write
 * uses MSG_NOSIGNAL.
 */

/* ------------------------------------------------------------------------------------------ */
/* Constants: vhost-user wire values (from docs/interop/vhost-user.rst)                       */

#define VGPU_FE_HDR_SIZE 12u
#define VGPU_FE_MAX_FDS 8u
#define VGPU_FE_VERSION 0x1u
#define VGPU_FE_FLAG_REPLY 0x4u
#define VGPU_FE_FLAG_NEED_REPLY 0x8u
#define VGPU_FE_REPLY_FLAGS (VGPU_FE_VERSION | VGPU_FE_FLAG_REPLY)
#define VGPU_FE_VRING_NOFD 0x100ull
#define VGPU_FE_CONFIG_HDR_SIZE 12u

enum vgpu_fe_request {
    VGPU_FE_GET_FEATURES = 1,
    VGPU_FE_SET_FEATURES = 2,
    VGPU_FE_SET_OWNER = 3,
    VGPU_FE_RESET_OWNER = 4,
    VGPU_FE_SET_MEM_TABLE = 5,
    VGPU_FE_SET_LOG_BASE = 6,
    VGPU_FE_SET_LOG_FD = 7,
    VGPU_FE_SET_VRING_NUM = 8,
    VGPU_FE_SET_VRING_ADDR = 9,
    VGPU_FE_SET_VRING_BASE = 10,
    VGPU_FE_GET_VRING_BASE = 11,
    VGPU_FE_SET_VRING_KICK = 12,
    VGPU_FE_SET_VRING_CALL = 13,
    VGPU_FE_SET_VRING_ERR = 14,
    VGPU_FE_GET_PROTOCOL_FEATURES = 15,
    VGPU_FE_SET_PROTOCOL_FEATURES = 16,
    VGPU_FE_GET_QUEUE_NUM = 17,
    VGPU_FE_SET_VRING_ENABLE = 18,
    VGPU_FE_SET_BACKEND_REQ_FD = 21,
    VGPU_FE_GET_CONFIG = 24,
    VGPU_FE_SET_CONFIG = 25,
    VGPU_FE_GPU_SET_SOCKET = 33,
    VGPU_FE_RESET_DEVICE = 34,
    VGPU_FE_GET_MAX_MEM_SLOTS = 36,
    VGPU_FE_ADD_MEM_REG = 37,
    VGPU_FE_REM_MEM_REG = 38,
};

/* Protocol feature bits. */
enum {
    VGPU_FE_PROTO_MQ = 0,
    VGPU_FE_PROTO_LOG_SHMFD = 1,
    VGPU_FE_PROTO_REPLY_ACK = 3,
    VGPU_FE_PROTO_BACKEND_REQ = 5,
    VGPU_FE_PROTO_CONFIG = 9,
    VGPU_FE_PROTO_BACKEND_SEND_FD = 10,
    VGPU_FE_PROTO_HOST_NOTIFIER = 11,
    VGPU_FE_PROTO_INBAND_NOTIFICATIONS = 14,
    VGPU_FE_PROTO_RESET_DEVICE = 13,
    VGPU_FE_PROTO_CONFIGURE_MEM_SLOTS = 15,
    VGPU_FE_PROTO_STATUS = 16,
};

/* Virtio-level bit 30: the back-end speaks protocol features. */
#define VGPU_FE_F_PROTOCOL_FEATURES 30

/*
 * Protocol features QEMU 10 knows (bits 0-19 minus INBAND_NOTIFICATIONS, which QEMU's
 * vhost-user front-end does not implement).
 */
#define VGPU_FE_PROTO_QEMU10 (((1ull << 20) - 1) & ~(1ull << VGPU_FE_PROTO_INBAND_NOTIFICATIONS))
/* QEMU 7.2 masks the offer with bits 0-16. */
#define VGPU_FE_PROTO_QEMU72 ((1ull << 17) - 1)

/* Display protocol (the GPU_SET_SOCKET socket). */
enum {
    VGPU_FE_DISPLAY_GET_PROTOCOL_FEATURES = 1,
    VGPU_FE_DISPLAY_SET_PROTOCOL_FEATURES = 2,
    VGPU_FE_DISPLAY_GET_DISPLAY_INFO = 3,
    VGPU_FE_DISPLAY_CURSOR_POS = 4,
    VGPU_FE_DISPLAY_CURSOR_POS_HIDE = 5,
    VGPU_FE_DISPLAY_CURSOR_UPDATE = 6,
    VGPU_FE_DISPLAY_SCANOUT = 7,
    VGPU_FE_DISPLAY_UPDATE = 8,
    VGPU_FE_DISPLAY_DMABUF_SCANOUT = 9,
    VGPU_FE_DISPLAY_DMABUF_UPDATE = 10,
    VGPU_FE_DISPLAY_GET_EDID = 11,
    VGPU_FE_DISPLAY_DMABUF_SCANOUT2 = 12,
    VGPU_FE_DISPLAY_MAX = 13,
};

#define VGPU_FE_CTRLQ 0u
#define VGPU_FE_CURSORQ 1u
#define VGPU_FE_NUM_QUEUES 2u

/* The 12-byte header shared by vhost-user and the display protocol. */
struct vgpu_fe_hdr {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
};

/* One vhost-user memory region as sent on the wire. */
struct vgpu_fe_region {
    uint64_t gpa;
    uint64_t size;
    uint64_t uva; /* the front-end's own address of the region */
    uint64_t mmap_offset;
};

/* ------------------------------------------------------------------------------------------ */
/* Timeouts                                                                                   */

/*
 * base_ms scaled by the environment variable VGPU_TIMEOUT_MULTIPLIER (a positive number,
 * default 1), so sanitizer lanes get proportionally longer. Saturates at INT_MAX.
 */
int vgpu_fe_timeout_ms(int base_ms);

/* Monotonic milliseconds, for tests that measure promptness. */
int64_t vgpu_fe_now_ms(void);

/* ------------------------------------------------------------------------------------------ */
/* The daemon as a child process                                                              */

struct vgpu_fe_daemon;

/* Spawn flags. */
enum {
    /* Redirect the child's stderr into a buffer readable with vgpu_fe_daemon_stderr()
     * (default: the child inherits the test's stderr, so its log shows in the CTest output). */
    VGPU_FE_SPAWN_CAPTURE_STDERR = 1u << 0,
};

/* $VGPU_BINARY, or NULL when unset. */
const char *vgpu_fe_binary(void);

/*
 * Creates a socketpair and runs "$VGPU_BINARY --fd N args...". args is a NULL-terminated list
 * of extra arguments, or NULL. On success *sock is the front-end end (close-on-exec, owned by
 * the caller; typically given to vgpu_fe_create()). Returns NULL with errno set on failure
 * (ENOENT when VGPU_BINARY is unset).
 */
struct vgpu_fe_daemon *vgpu_fe_daemon_spawn_fd(const char *const *args, unsigned int flags,
                                               int *sock);

/*
 * Runs "$VGPU_BINARY --socket-path path args..." and waits (up to the scaled 10 s) until path
 * exists as a socket. A connection may still be refused for a moment after that; use
 * vgpu_fe_daemon_connect(), which retries. Returns NULL with errno set if the child exits
 * first (ECHILD) or the path never appears (ETIMEDOUT); the child is then killed and reaped.
 */
struct vgpu_fe_daemon *vgpu_fe_daemon_spawn_socket(const char *path, const char *const *args,
                                                   unsigned int flags);

/*
 * Kills the child with SIGKILL if it still runs, reaps it, frees everything. The socket file is
 * not removed. NULL is a no-op.
 */
void vgpu_fe_daemon_destroy(struct vgpu_fe_daemon *d);

pid_t vgpu_fe_daemon_pid(const struct vgpu_fe_daemon *d);
/* The --socket-path argument, or NULL for an --fd daemon. */
const char *vgpu_fe_daemon_socket_path(const struct vgpu_fe_daemon *d);

/*
 * Connects to the daemon's socket path, retrying ENOENT/ECONNREFUSED until timeout_ms. Returns
 * a connected socket (close-on-exec, owned by the caller), -ETIMEDOUT, -ECHILD if the daemon
 * exited, or -errno.
 */
int vgpu_fe_daemon_connect(struct vgpu_fe_daemon *d, int timeout_ms);
/* Same for any path, without a daemon to watch. */
int vgpu_fe_connect_path(const char *path, int timeout_ms);

/* Whether the child has not exited yet. Reaps it (and records its status) if it has. */
bool vgpu_fe_daemon_is_alive(struct vgpu_fe_daemon *d);
/* Sends sig. 0, -ESRCH if already reaped, -errno. */
int vgpu_fe_daemon_signal(struct vgpu_fe_daemon *d, int sig);
/*
 * Waits up to timeout_ms for the child to exit; stores its wait status in *wstatus (may be
 * NULL). 0 when it exited (now or earlier), -ETIMEDOUT otherwise.
 */
int vgpu_fe_daemon_wait(struct vgpu_fe_daemon *d, int timeout_ms, int *wstatus);
/* Number of open fds of the child (entries of /proc/PID/fd), or -errno. */
int vgpu_fe_daemon_fd_count(const struct vgpu_fe_daemon *d);
/* Lists the child's fds with their targets into buf (one "N -> target" per line) for
 * diagnostics. Returns bytes written (NUL-terminated, truncated to size) or -errno. */
int vgpu_fe_daemon_fd_list(const struct vgpu_fe_daemon *d, char *buf, size_t size);
/* VmRSS of the child in KiB, or -errno. */
long vgpu_fe_daemon_rss_kib(const struct vgpu_fe_daemon *d);
/*
 * Copies what the child wrote to stderr so far (VGPU_FE_SPAWN_CAPTURE_STDERR only) into buf,
 * NUL-terminated, at most size-1 bytes (the newest bytes win when truncating). Returns the
 * number of bytes copied, or -EINVAL without capture.
 */
long vgpu_fe_daemon_stderr(const struct vgpu_fe_daemon *d, char *buf, size_t size);

/* Output of one run of the binary to completion (vgpu_fe_run). Buffers are NUL-terminated. */
struct vgpu_fe_run_result {
    int wstatus;
    char *out;
    size_t out_len;
    char *err;
    size_t err_len;
};

/*
 * Runs "$VGPU_BINARY args..." (args NULL-terminated, may be NULL) with stdin from /dev/null,
 * capturing stdout and stderr (each capped at 1 MiB), and waits up to timeout_ms. On timeout
 * the child is killed, reaped, and -ETIMEDOUT is returned (res is still filled). Release res
 * with vgpu_fe_run_result_finish().
 */
int vgpu_fe_run(const char *const *args, int timeout_ms, struct vgpu_fe_run_result *res);
void vgpu_fe_run_result_finish(struct vgpu_fe_run_result *res);

/* ------------------------------------------------------------------------------------------ */
/* A session                                                                                  */

struct vgpu_fe_config {
    /* Guest memory size in bytes, a multiple of 2 MiB. Default 64 MiB. */
    uint64_t mem_size;
    /* Describe memory as two regions (gpa 0..size/2 at mmap offset 0, and size/2..size at mmap
     * offset size/2, each a dup of the memfd, each with its own user address). */
    bool two_regions;
    /* Queue sizes (powers of two). Default 64 and 16, as QEMU in 2D mode. */
    uint16_t queue_size[VGPU_FE_NUM_QUEUES];
    /* Protocol features the front-end knows; the session uses offer & this. Default
     * VGPU_FE_PROTO_QEMU10. Use e.g. 1 << VGPU_FE_PROTO_CONFIG for the reduced variant. */
    uint64_t protocol_mask;
    /* Virtio features the "guest" acks if offered. Default VERSION_1 | INDIRECT_DESC |
     * EVENT_IDX. Bit 30 is added by the session when offered. */
    uint64_t guest_features;
    /* ORed into SET_FEATURES even when not offered (e.g. 1 << 40 RING_RESET as QEMU 7.2). */
    uint64_t force_features;
    /* Kick after every post, ignoring the device's suppression (default false: honour
     * VRING_USED_F_NO_NOTIFY / avail_event like Linux). */
    bool always_kick;
    /* Do not write the kick eventfd once after SET_VRING_KICK (QEMU 7.2 behaviour). */
    bool no_injected_kick;
    /* Send RESET_DEVICE where QEMU 10 does, when RESET_DEVICE is negotiated (default true):
     * after realize (machine reset), before probe (the guest driver resets the device) and
     * after stop (virtio reset follows the status write). QEMU re-sends no memory, protocol
     * features or backend channel afterwards. */
    bool reset_device;
    /* While waiting for used buffers, answer display-socket requests like QEMU (default true):
     * GET_PROTOCOL_FEATURES -> display_features, GET_DISPLAY_INFO -> 1280x800 on scanout 0,
     * DMABUF_UPDATE -> empty reply, everything else consumed (fds closed). */
    bool serve_display;
    uint64_t display_features;
    /* Start without GPU_SET_SOCKET (default false): a front-end that shows no display, so the
     * back-end answers display questions on its own. QEMU itself always sends one. */
    bool no_display_socket;
    /* Require a call-eventfd notification before a used entry is returned (default true):
     * catches a back-end that pushes without signalling. */
    bool strict_notify;
    /* Reply timeout for typed requests and negotiation. Default vgpu_fe_timeout_ms(5000). */
    int timeout_ms;
    /* Maximum descriptors in one indirect table built by vgpu_fe_vq_post(). Default 16. */
    unsigned int max_indirect;
};

/* Fills cfg with the defaults above. */
void vgpu_fe_config_init(struct vgpu_fe_config *cfg);

/* What the session learned from the back-end and what it negotiated. */
struct vgpu_fe_info {
    uint64_t features;                       /* GET_FEATURES */
    uint64_t protocol_features;              /* GET_PROTOCOL_FEATURES (0 without bit 30) */
    uint64_t protocol_acked;                 /* sent in SET_PROTOCOL_FEATURES */
    uint64_t acked_features;                 /* sent in SET_FEATURES */
    uint64_t queue_num;                      /* GET_QUEUE_NUM, 0 if not sent */
    uint64_t max_mem_slots;                  /* GET_MAX_MEM_SLOTS, 0 if not sent */
    struct virtio_gpu_config config;         /* from the last probe */
    uint32_t last_avail[VGPU_FE_NUM_QUEUES]; /* GET_VRING_BASE replies of the last stop */
    bool realized, started, memory_sent;
};

struct vgpu_fe;

/*
 * Creates a session on the connected socket sock (ownership passes to the session, also on
 * failure). Allocates guest memory and eventfds; sends nothing. cfg NULL means defaults.
 * Returns NULL with errno set on failure.
 */
struct vgpu_fe *vgpu_fe_create(int sock, const struct vgpu_fe_config *cfg);
/* Closes every fd and unmaps memory. NULL is a no-op. */
void vgpu_fe_destroy(struct vgpu_fe *fe);

const struct vgpu_fe_info *vgpu_fe_info(const struct vgpu_fe *fe);
const struct vgpu_fe_config *vgpu_fe_config(const struct vgpu_fe *fe);
/* Why the last failing call failed (never NULL). */
const char *vgpu_fe_last_error(const struct vgpu_fe *fe);
/* The value of the last REPLY_ACK reply received. */
uint64_t vgpu_fe_last_ack(const struct vgpu_fe *fe);

int vgpu_fe_socket(const struct vgpu_fe *fe);
/* Closes the vhost-user socket (the back-end sees EOF). Later sends fail with -ENOTCONN. */
void vgpu_fe_disconnect(struct vgpu_fe *fe);
bool vgpu_fe_has_protocol_feature(const struct vgpu_fe *fe, unsigned int bit);

/* ---- The QEMU 10 sequences (reference doc 1.6) ---- */

/* A: features, protocol features, queue num, mem slots, backend channel, owner, CALL/ERR. */
int vgpu_fe_realize(struct vgpu_fe *fe);
/* B: two GET_CONFIG of 16 bytes, as Linux reading num_scanouts and num_capsets. */
int vgpu_fe_probe(struct vgpu_fe *fe);
/*
 * C on the first call, E on later ones: new display socket (vgpu_fe_display_new; none with
 * no_display_socket), CALL (masked), SET_FEATURES, memory (first time; every time without
 * CONFIGURE_MEM_SLOTS, as QEMU re-sends SET_MEM_TABLE), fresh rings at new addresses,
 * NUM/BASE 0/ADDR/KICK per queue, ENABLE, CALL (real eventfds).
 */
int vgpu_fe_start(struct vgpu_fe *fe);
/* D: close the display socket, ENABLE 0 x2, GET_VRING_BASE x2 (into info.last_avail), CALL
 * (masked) x2; then the device reset (see reset_device). */
int vgpu_fe_stop(struct vgpu_fe *fe);
/* The device reset as QEMU 10 sends it: RESET_DEVICE if negotiated and cfg.reset_device,
 * else nothing. */
int vgpu_fe_device_reset(struct vgpu_fe *fe);
/* realize, machine reset, guest-probe reset, probe, start. */
int vgpu_fe_negotiate(struct vgpu_fe *fe);

/* ---- Raw wire ---- */

/*
 * Sends header {req, flags, size} + size bytes of payload, with nfds fds (not owned, <= 253)
 * in SCM_RIGHTS on the same sendmsg. Returns 0, -EPIPE/-ECONNRESET when the peer is gone,
 * -ETIMEDOUT if the socket stays full.
 */
int vgpu_fe_send(struct vgpu_fe *fe, uint32_t req, uint32_t flags, const void *payload,
                 uint32_t size, const int *fds, unsigned int nfds);
/* Sends arbitrary bytes (fds on the first sendmsg), for truncated or lying messages. */
int vgpu_fe_send_bytes(struct vgpu_fe *fe, const void *buf, size_t len, const int *fds,
                       unsigned int nfds);
/*
 * Receives one message: header, then its payload. A payload larger than max is drained and
 * -EMSGSIZE returned (hdr is filled). Any fds received are closed and counted as an error
 * (-EPROTO) since no vhost-user reply we use carries fds. -ECONNRESET on EOF.
 */
int vgpu_fe_recv(struct vgpu_fe *fe, int timeout_ms, struct vgpu_fe_hdr *hdr, void *payload,
                 size_t max);
/*
 * Receives the reply to req and checks it exactly: flags == 0x5, request == req, size == size.
 * Returns 0 or -EPROTO (reason in last_error), or a receive error.
 */
int vgpu_fe_recv_reply(struct vgpu_fe *fe, uint32_t req, void *payload, uint32_t size);
/* A u64 REPLY_ACK reply to req: 0 when the value is 0, -EREMOTEIO otherwise (see last_ack). */
int vgpu_fe_recv_ack(struct vgpu_fe *fe, uint32_t req);
/*
 * Waits for the back-end to close the connection: 0 on EOF/ECONNRESET, -ETIMEDOUT, -EPROTO if
 * a message arrives instead (it is consumed).
 */
int vgpu_fe_wait_closed(struct vgpu_fe *fe, int timeout_ms);
/* 0 if nothing arrives within timeout_ms, -EPROTO if a message does, -ECONNRESET on EOF. */
int vgpu_fe_expect_silence(struct vgpu_fe *fe, int timeout_ms);

/* ---- Typed requests (NEED_REPLY set as QEMU 10 sets it; replies checked exactly) ---- */

int vgpu_fe_get_features(struct vgpu_fe *fe, uint64_t *out);
int vgpu_fe_set_features(struct vgpu_fe *fe, uint64_t features);
int vgpu_fe_get_protocol_features(struct vgpu_fe *fe, uint64_t *out);
int vgpu_fe_set_protocol_features(struct vgpu_fe *fe, uint64_t features);
int vgpu_fe_get_queue_num(struct vgpu_fe *fe, uint64_t *out);
int vgpu_fe_get_max_mem_slots(struct vgpu_fe *fe, uint64_t *out);
int vgpu_fe_set_owner(struct vgpu_fe *fe);
/* RESET_DEVICE (RESET_OWNER when the feature was not negotiated, as QEMU). */
int vgpu_fe_reset_device(struct vgpu_fe *fe);
/* fd is not owned (the kernel duplicates it for the peer). */
int vgpu_fe_add_mem_reg(struct vgpu_fe *fe, const struct vgpu_fe_region *r, int fd);
int vgpu_fe_rem_mem_reg(struct vgpu_fe *fe, const struct vgpu_fe_region *r);
int vgpu_fe_set_mem_table(struct vgpu_fe *fe, const struct vgpu_fe_region *r, const int *fds,
                          unsigned int n);
int vgpu_fe_set_vring_num(struct vgpu_fe *fe, unsigned int idx, unsigned int num);
int vgpu_fe_set_vring_base(struct vgpu_fe *fe, unsigned int idx, unsigned int base);
int vgpu_fe_get_vring_base(struct vgpu_fe *fe, unsigned int idx, uint32_t *base);
int vgpu_fe_set_vring_addr(struct vgpu_fe *fe, const struct vhost_vring_addr *addr);
/* fd -1 sends the no-fd bit instead. fd is not owned. */
int vgpu_fe_set_vring_kick(struct vgpu_fe *fe, unsigned int idx, int fd);
int vgpu_fe_set_vring_call(struct vgpu_fe *fe, unsigned int idx, int fd);
int vgpu_fe_set_vring_err(struct vgpu_fe *fe, unsigned int idx, int fd);
/* NEED_REPLY with REPLY_ACK, else followed by a GET_FEATURES barrier (QEMU 10). */
int vgpu_fe_set_vring_enable(struct vgpu_fe *fe, unsigned int idx, bool enable);
/* The reply must be exactly 12 + size bytes; an error reply (size 0, as libvhost-user sends,
 * or a bare 12-byte header) gives -EREMOTEIO. */
int vgpu_fe_get_config(struct vgpu_fe *fe, uint32_t offset, uint32_t size, void *out);
int vgpu_fe_set_config(struct vgpu_fe *fe, uint32_t offset, const void *buf, uint32_t size);
int vgpu_fe_gpu_set_socket(struct vgpu_fe *fe, int fd);
int vgpu_fe_set_backend_req_fd(struct vgpu_fe *fe, int fd);

/* ---- Guest memory ---- */

uint64_t vgpu_fe_mem_size(const struct vgpu_fe *fe);
int vgpu_fe_mem_fd(const struct vgpu_fe *fe);
unsigned int vgpu_fe_num_regions(const struct vgpu_fe *fe);
const struct vgpu_fe_region *vgpu_fe_region(const struct vgpu_fe *fe, unsigned int i);
/*
 * Bump allocation of guest memory: returns a gpa aligned to align (a power of two, 0 means 16),
 * zero-filled, or 0 when memory is exhausted (gpa 0 is never handed out). Nothing is freed
 * before vgpu_fe_destroy(); vgpu_fe_alloc_mark()/vgpu_fe_alloc_release() rewind.
 */
uint64_t vgpu_fe_alloc(struct vgpu_fe *fe, size_t size, size_t align);
uint64_t vgpu_fe_alloc_mark(const struct vgpu_fe *fe);
void vgpu_fe_alloc_release(struct vgpu_fe *fe, uint64_t mark);
/* Host pointer for [gpa, gpa+len) (contiguous even across regions), or NULL if outside. */
void *vgpu_fe_gpa_ptr(const struct vgpu_fe *fe, uint64_t gpa, size_t len);
/* Front-end user address of gpa (what SET_VRING_ADDR carries), or 0 if outside. */
uint64_t vgpu_fe_gpa_uva(const struct vgpu_fe *fe, uint64_t gpa);

/* ---- Virtqueues (driver side) ---- */

struct vgpu_fe_buf {
    uint64_t gpa;
    uint32_t len;
};

enum {
    VGPU_FE_POST_INDIRECT = 1u << 0, /* put the chain in an indirect table */
    VGPU_FE_POST_NO_KICK = 1u << 1,  /* publish only; kick later with vgpu_fe_vq_kick() */
};

/*
 * Adds a chain of n_out device-readable buffers followed by n_in device-writable ones
 * (bufs[0..n_out+n_in)) and publishes it; kicks per policy unless NO_KICK. Returns the head
 * index (>= 0), -ENOSPC when descriptors are short, -EINVAL for an empty chain or an indirect
 * table over max_indirect, -ENOTSUP for INDIRECT without VIRTIO_RING_F_INDIRECT_DESC acked.
 */
int vgpu_fe_vq_post(struct vgpu_fe *fe, unsigned int q, const struct vgpu_fe_buf *bufs,
                    unsigned int n_out, unsigned int n_in, unsigned int flags);
/*
 * Kicks if the device wants it (EVENT_IDX avail_event / NO_NOTIFY), or always with
 * always_kick. Returns 1 if it kicked, 0 if not, -errno.
 */
int vgpu_fe_vq_kick_if_needed(struct vgpu_fe *fe, unsigned int q);
/* Writes the kick eventfd unconditionally. */
int vgpu_fe_vq_kick(struct vgpu_fe *fe, unsigned int q);
/*
 * Returns the next used entry (head, written length), waiting up to timeout_ms on the call
 * eventfd (serving the display socket meanwhile if configured). Frees the chain's descriptors.
 * -ETIMEDOUT, -ECONNRESET if the vhost-user socket closes, -EPROTO for a used id that is out
 * of range or not in flight (reason in last_error).
 */
int vgpu_fe_vq_wait_used(struct vgpu_fe *fe, unsigned int q, int timeout_ms, uint16_t *head,
                         uint32_t *len);
/* Chains published and not yet returned. */
unsigned int vgpu_fe_vq_inflight(const struct vgpu_fe *fe, unsigned int q);
unsigned int vgpu_fe_vq_num_free(const struct vgpu_fe *fe, unsigned int q);
unsigned int vgpu_fe_vq_size(const struct vgpu_fe *fe, unsigned int q);
/* Call notifications (eventfd reads that returned a count) seen so far on q. */
unsigned int vgpu_fe_vq_calls(const struct vgpu_fe *fe, unsigned int q);
/* Non-blocking read of q's error eventfd: the count, 0 if not signalled, -errno. */
int64_t vgpu_fe_vq_err_count(struct vgpu_fe *fe, unsigned int q);

/*
 * Posts req (readable, req_len bytes) and a writable resp_len-byte buffer (none if resp_len
 * is 0), both in the session's scratch memory, waits for the used entry and copies the
 * written part into resp. *used_len gets the used length. flags as vgpu_fe_vq_post(). Returns
 * 0 or -errno (-EPROTO if another chain completes first, or used len > resp_len).
 */
int vgpu_fe_cmd(struct vgpu_fe *fe, unsigned int q, const void *req, uint32_t req_len, void *resp,
                uint32_t resp_len, unsigned int flags, int timeout_ms, uint32_t *used_len);

/*
 * Lays out fresh rings for q at new guest addresses and resets the driver state, sending
 * nothing: for tests that then configure the ring with their own SET_VRING_* messages.
 */
int vgpu_fe_vq_reset(struct vgpu_fe *fe, unsigned int q);
/* The eventfds the session hands to the back-end for q (owned by the session). */
int vgpu_fe_vq_kick_fd(const struct vgpu_fe *fe, unsigned int q);
int vgpu_fe_vq_call_fd(const struct vgpu_fe *fe, unsigned int q);

/* Raw access, for crafting bad chains. Valid from vgpu_fe_start() until the next start. */
struct vring_desc *vgpu_fe_vq_desc(const struct vgpu_fe *fe, unsigned int q);
struct vring_avail *vgpu_fe_vq_avail(const struct vgpu_fe *fe, unsigned int q);
struct vring_used *vgpu_fe_vq_used(const struct vgpu_fe *fe, unsigned int q);
/* Guest-physical addresses of the three parts. */
void vgpu_fe_vq_addrs(const struct vgpu_fe *fe, unsigned int q, uint64_t *desc, uint64_t *avail,
                      uint64_t *used);
/* Takes one descriptor off the free list (index >= 0) or -ENOSPC. Contents are zeroed. */
int vgpu_fe_vq_alloc_desc(struct vgpu_fe *fe, unsigned int q);
/* Returns a descriptor taken with vgpu_fe_vq_alloc_desc() (for chains that never complete). */
void vgpu_fe_vq_free_desc(struct vgpu_fe *fe, unsigned int q, uint16_t idx);
/*
 * Publishes head (any value, even an out-of-range one) in the avail ring and kicks per policy
 * unless NO_KICK. When the used entry comes back, descriptors taken with
 * vgpu_fe_vq_alloc_desc() for it are returned with vgpu_fe_vq_free_desc() by the caller
 * (wait_used does not know the crafted chain). Returns 0 or -errno.
 */
int vgpu_fe_vq_publish(struct vgpu_fe *fe, unsigned int q, uint16_t head, unsigned int flags);
/* Writes avail->idx directly (no kick) and keeps the driver's shadow in step. */
void vgpu_fe_vq_set_avail_idx(struct vgpu_fe *fe, unsigned int q, uint16_t idx);
uint16_t vgpu_fe_vq_avail_idx(const struct vgpu_fe *fe, unsigned int q);
/* used->idx as the device last wrote it. */
uint16_t vgpu_fe_vq_used_idx(const struct vgpu_fe *fe, unsigned int q);

/* ---- Display socket (QEMU's side) and back-end channel ---- */

/* QEMU's end of the socket sent with the last GPU_SET_SOCKET, or -1. Owned by the session. */
int vgpu_fe_display_fd(const struct vgpu_fe *fe);
/*
 * Reads one display message (header + payload). *fd (may be NULL) receives an attached fd or
 * -1; if fd is NULL any attached fd is closed. -EMSGSIZE when the payload exceeds max (it is
 * drained), -ECONNRESET on EOF, -ETIMEDOUT, -ENOTCONN without a display socket.
 */
int vgpu_fe_display_recv(struct vgpu_fe *fe, int timeout_ms, struct vgpu_fe_hdr *hdr, void *payload,
                         size_t max, int *fd);
/*
 * Sends GPU_SET_SOCKET with one end of a fresh socketpair, as QEMU does at every start; the
 * other end becomes the session's display socket. The previous display socket is handed to
 * the caller through *old_fd (-1 if there was none; the caller closes it), or closed when
 * old_fd is NULL. Returns 0 or -errno (the new socket is kept even if the send failed).
 */
int vgpu_fe_display_new(struct vgpu_fe *fe, int *old_fd);
/* Sends a reply {req, 0x4, size} + payload on the display socket. */
int vgpu_fe_display_reply(struct vgpu_fe *fe, uint32_t req, const void *payload, uint32_t size);
/* Serves one display message as QEMU does (see serve_display). Returns the request number or
 * -errno. */
int vgpu_fe_display_serve(struct vgpu_fe *fe, int timeout_ms);
/* How many display messages with this request number were served automatically. */
unsigned int vgpu_fe_display_count(const struct vgpu_fe *fe, uint32_t req);
/* The front-end's end of the SET_BACKEND_REQ_FD channel, or -1. Owned by the session. */
int vgpu_fe_backend_fd(const struct vgpu_fe *fe);

#endif
