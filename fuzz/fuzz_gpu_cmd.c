/* SPDX-License-Identifier: MIT */
/*
 * fuzz_gpu_cmd: the virtio-gpu command decoder end to end. Each input gets a fresh session
 * negotiated in-process as QEMU would (features, memory table, both rings started and enabled,
 * REPLY_ACK checked at every step), then the input's commands are placed in guest memory as
 * descriptor chains on the control or cursor queue, the queue is kicked by calling the kick
 * fd's callback that the fake watcher recorded, and render completions are processed until
 * every chain came back. Commands run in input order in one session, so stateful sequences
 * (create, attach backing, transfer, set scanout, flush, detach, unref...) are reachable.
 *
 * Checks beyond the sanitizers: every posted chain comes back exactly once (within a deadline),
 * the used length fits the writable buffer, a response carries a valid type and echoes the
 * fence, and no fd or watch outlives the session.
 *
 * Input: u8 config, then commands, each: u8 ctl, u16 len (little endian), len request bytes.
 *   config bit 0: EVENT_IDX; bit 1: no INDIRECT_DESC; bit 2: guest memory in two regions;
 *     bit 3: 256 KiB host memory limit (out-of-memory paths); bits 4-5: outputs - 1;
 *     bit 6: EDID and RESOURCE_UUID not acked; bit 7: a display socket (GPU_SET_SOCKET) whose
 *     QEMU end the harness plays: it answers GET_PROTOCOL_FEATURES, GET_DISPLAY_INFO and
 *     GET_EDID and swallows scanouts, updates and cursors, while the watches of the display
 *     code are run as an event loop would (poll, then the callbacks of the ready fds).
 *   ctl bit 0: cursor queue; bits 1-2: chain shape (0: request, response; 1: request split in
 *     two descriptors, response; 2: indirect table of request and response; 3: request only);
 *     bits 3-4: response buffer (24 bytes, display info, EDID, 8 bytes); bit 5: kick and wait
 *     for everything posted so far first; bit 6: re-send the memory table first (with commands
 *     in flight); bit 7: stop and restart the ring first (GET_VRING_BASE, SET_VRING_BASE, KICK).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_gpu.h>
#include <linux/virtio_ring.h>

#include "harness.h"
#include "render/render.h"

#define BIT(n) (1ull << (n))
#define MEM_SIZE (2u << 20)
#define UVA_BASE 0x7f0000000000ull
/* The second region's user address is far from the first: rings must not straddle. */
#define UVA_GAP 0x100000000ull
#define MAX_COMMANDS 512u
#define DEADLINE_MS 20000

/* Guest-physical layout. */
#define RING_SIZE_CTRL 256u
#define RING_SIZE_CURSOR 16u
#define INDIRECT_AREA 0x4000u
#define INDIRECT_END 0x10000u
#define REQ_AREA 0x10000u
#define REQ_END 0x90000u
#define RESP_AREA 0x90000u
#define RESP_END 0x100000u

static const uint32_t ring_size[VGPU_VU_NUM_QUEUES] = {RING_SIZE_CTRL, RING_SIZE_CURSOR};
static const uint64_t ring_desc[VGPU_VU_NUM_QUEUES] = {0x0000, 0x3000};
static const uint64_t ring_avail[VGPU_VU_NUM_QUEUES] = {0x1000, 0x3100};
static const uint64_t ring_used[VGPU_VU_NUM_QUEUES] = {0x2000, 0x3200};

static const uint32_t resp_sizes[4] = {
    sizeof(struct virtio_gpu_ctrl_hdr),
    sizeof(struct virtio_gpu_resp_display_info),
    sizeof(struct virtio_gpu_resp_edid),
    8,
};

/* What the driver remembers of a chain it posted, by head. */
struct posted {
    bool inflight;
    uint32_t writable;
    uint64_t resp_gpa;
    bool has_hdr; /* the request held a whole header */
    struct virtio_gpu_ctrl_hdr hdr;
};

struct queue {
    uint32_t num;
    uint16_t avail_idx;  /* driver's next avail index */
    uint16_t used_seen;  /* used entries consumed */
    uint32_t next_desc;  /* bump allocator, reset when nothing is in flight */
    unsigned int posted; /* chains in flight */
    int kick_fd;         /* ours; the session's copy is watched */
    int call_fd;
    int watched_fd; /* the session's copy of kick_fd */
    struct posted p[RING_SIZE_CTRL];
};

/* QEMU's end of the display socket: a message being received. */
struct qemu {
    int fd; /* -1: no display */
    uint8_t hdr[VGPU_VU_HDR_SIZE];
    size_t have;        /* header bytes received */
    uint32_t skip;      /* payload bytes still to receive */
    uint32_t scanout;   /* GET_EDID's scanout id (first payload word) */
    unsigned int taken; /* payload bytes received */
};

struct gpu_fuzz {
    struct fz_session s;
    struct qemu qemu;
    int memfd;
    uint8_t *mem;
    bool two_regions;
    uint64_t next_req, next_resp, next_indirect;
    struct queue q[VGPU_VU_NUM_QUEUES];
};

/* ---- session set-up ---- */

static void request_ok(struct gpu_fuzz *f, uint32_t request, const void *payload, uint32_t size,
                       const int *fds, unsigned int nfds)
{
    uint64_t ack = 0;
    int n = fz_session_request(&f->s, request, payload, size, fds, nfds, &ack, sizeof(ack));
    if (n != (int)sizeof(ack) || ack != 0)
        fz_die("set-up: %s refused (reply size %d, ack %llu)", vgpu_vu_request_name(request), n,
               (unsigned long long)ack);
}

static void send_mem_table(struct gpu_fuzz *f)
{
    struct vgpu_vu_memory m;
    memset(&m, 0, sizeof(m));
    int fds[2] = {f->memfd, f->memfd};
    if (f->two_regions) {
        m.nregions = 2;
        m.regions[0] = (struct vgpu_vu_region){0, MEM_SIZE / 2, UVA_BASE, 0};
        m.regions[1] = (struct vgpu_vu_region){MEM_SIZE / 2, MEM_SIZE / 2,
                                               UVA_BASE + MEM_SIZE / 2 + UVA_GAP, MEM_SIZE / 2};
    } else {
        m.nregions = 1;
        m.regions[0] = (struct vgpu_vu_region){0, MEM_SIZE, UVA_BASE, 0};
    }
    request_ok(f, VGPU_VU_SET_MEM_TABLE, &m, (uint32_t)(8 + m.nregions * sizeof(m.regions[0])), fds,
               m.nregions);
}

/*
 * The session's copy of queue qi's kick fd: the watched eventfd that is not the other queue's.
 * Not simply the last fd watched: starting a ring processes it at once, and a GET_DISPLAY_INFO
 * found there watches the display code's reply timer after the kick fd.
 */
static int find_kick_watch(struct gpu_fuzz *f, unsigned int qi)
{
    int other = f->q[qi ^ 1].watched_fd;
    for (unsigned int i = 0; i < fz_watcher_count(&f->s.watcher); i++) {
        struct fz_watch *w = fz_watcher_nth(&f->s.watcher, i);
        if (w && w->fd != other && fz_is_eventfd(w->fd))
            return w->fd;
    }
    return -1;
}

static void start_ring(struct gpu_fuzz *f, unsigned int qi, uint16_t base)
{
    struct queue *q = &f->q[qi];
    struct vhost_vring_state st = {.index = qi, .num = base};
    request_ok(f, VGPU_VU_SET_VRING_BASE, &st, sizeof(st), NULL, 0);
    uint64_t v = qi;
    request_ok(f, VGPU_VU_SET_VRING_KICK, &v, sizeof(v), &q->kick_fd, 1);
    q->watched_fd = find_kick_watch(f, qi);
    if (q->watched_fd < 0)
        fz_die("set-up: queue %u's kick fd is not watched", qi);
}

static void setup(struct gpu_fuzz *f, uint8_t cfg)
{
    uint64_t v;
    if (fz_session_request(&f->s, VGPU_VU_GET_FEATURES, NULL, 0, NULL, 0, &v, sizeof(v)) != 8)
        fz_die("set-up: GET_FEATURES");
    uint64_t want = BIT(VIRTIO_F_VERSION_1) | BIT(30) | BIT(VIRTIO_GPU_F_EDID) |
                    BIT(VIRTIO_GPU_F_RESOURCE_UUID) | BIT(VIRTIO_RING_F_INDIRECT_DESC) |
                    BIT(VIRTIO_RING_F_EVENT_IDX);
    if (!(cfg & 0x01))
        want &= ~BIT(VIRTIO_RING_F_EVENT_IDX);
    if (cfg & 0x02)
        want &= ~BIT(VIRTIO_RING_F_INDIRECT_DESC);
    if (cfg & 0x40)
        want &= ~(BIT(VIRTIO_GPU_F_EDID) | BIT(VIRTIO_GPU_F_RESOURCE_UUID));
    uint64_t features = v & want;

    if (fz_session_request(&f->s, VGPU_VU_GET_PROTOCOL_FEATURES, NULL, 0, NULL, 0, &v, sizeof(v)) !=
        8)
        fz_die("set-up: GET_PROTOCOL_FEATURES");
    uint64_t proto = v & (BIT(VGPU_VU_PROTO_MQ) | BIT(VGPU_VU_PROTO_REPLY_ACK) |
                          BIT(VGPU_VU_PROTO_CONFIG) | BIT(VGPU_VU_PROTO_RESET_DEVICE));
    if (!(proto & BIT(VGPU_VU_PROTO_REPLY_ACK)))
        fz_die("set-up: no REPLY_ACK offered");
    /* Answered only from the next request on (REPLY_ACK is not negotiated yet). */
    if (fz_session_request(&f->s, VGPU_VU_SET_PROTOCOL_FEATURES, &proto, sizeof(proto), NULL, 0,
                           NULL, 0) != -1)
        fz_die("set-up: SET_PROTOCOL_FEATURES answered");
    request_ok(f, VGPU_VU_SET_OWNER, NULL, 0, NULL, 0);
    request_ok(f, VGPU_VU_SET_FEATURES, &features, sizeof(features), NULL, 0);
    if (cfg & 0x80) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
            fz_die("socketpair: %s", strerror(errno));
        request_ok(f, VGPU_VU_GPU_SET_SOCKET, NULL, 0, &sv[1], 1);
        close(sv[1]);
        f->qemu.fd = sv[0];
    }
    send_mem_table(f);

    for (unsigned int qi = 0; qi < VGPU_VU_NUM_QUEUES; qi++) {
        struct queue *q = &f->q[qi];
        q->num = ring_size[qi];
        struct vhost_vring_state st = {.index = qi, .num = q->num};
        request_ok(f, VGPU_VU_SET_VRING_NUM, &st, sizeof(st), NULL, 0);
        struct vhost_vring_addr a = {
            .index = qi,
            .desc_user_addr = UVA_BASE + ring_desc[qi],
            .avail_user_addr = UVA_BASE + ring_avail[qi],
            .used_user_addr = UVA_BASE + ring_used[qi],
        };
        request_ok(f, VGPU_VU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
        q->call_fd = fz_eventfd();
        uint64_t idx = qi;
        request_ok(f, VGPU_VU_SET_VRING_CALL, &idx, sizeof(idx), &q->call_fd, 1);
        q->kick_fd = fz_eventfd();
        start_ring(f, qi, 0);
        st.num = 1;
        request_ok(f, VGPU_VU_SET_VRING_ENABLE, &st, sizeof(st), NULL, 0);
    }
}

/* ---- the driver side ---- */

static void *gpa(struct gpu_fuzz *f, uint64_t addr)
{
    return f->mem + addr;
}

static void kick(struct gpu_fuzz *f, unsigned int qi)
{
    struct queue *q = &f->q[qi];
    if (eventfd_write(q->kick_fd, 1) < 0)
        fz_die("kick: %s", strerror(errno));
    struct fz_watch *w = fz_watcher_find(&f->s.watcher, q->watched_fd);
    if (!w)
        fz_die("queue %u: kick fd no longer watched", qi);
    fz_watch_fire(w, VGPU_EV_READ);
}

static void check_used(struct gpu_fuzz *f, unsigned int qi)
{
    struct queue *q = &f->q[qi];
    struct vring_used *used = gpa(f, ring_used[qi]);
    uint16_t idx = __atomic_load_n(&used->idx, __ATOMIC_ACQUIRE);
    while (q->used_seen != idx) {
        if (q->posted == 0)
            fz_die("queue %u: used index %u runs ahead of what was posted", qi, idx);
        struct vring_used_elem e = used->ring[q->used_seen % q->num];
        q->used_seen++;
        if (e.id >= q->num || !q->p[e.id].inflight)
            fz_die("queue %u: used id %u was not in flight", qi, e.id);
        struct posted *p = &q->p[e.id];
        p->inflight = false;
        q->posted--;
        if (e.len > p->writable)
            fz_die("queue %u: used length %u, the chain had %u writable bytes", qi, e.len,
                   p->writable);
        if (qi != 0 || e.len < sizeof(struct virtio_gpu_ctrl_hdr))
            continue;
        struct virtio_gpu_ctrl_hdr r;
        memcpy(&r, gpa(f, p->resp_gpa), sizeof(r));
        bool ok = r.type >= VIRTIO_GPU_RESP_OK_NODATA && r.type <= VIRTIO_GPU_RESP_OK_MAP_INFO;
        bool err =
            r.type >= VIRTIO_GPU_RESP_ERR_UNSPEC && r.type <= VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
        if (!ok && !err)
            fz_die("response type 0x%x to command 0x%x", r.type, p->hdr.type);
        if (p->has_hdr && (p->hdr.flags & VIRTIO_GPU_FLAG_FENCE) &&
            (!(r.flags & VIRTIO_GPU_FLAG_FENCE) || r.fence_id != p->hdr.fence_id))
            fz_die("command 0x%x fence %llu: response flags 0x%x fence %llu", p->hdr.type,
                   (unsigned long long)p->hdr.fence_id, r.flags, (unsigned long long)r.fence_id);
    }
}

/* ---- QEMU's side of the display socket ---- */

static void qemu_reply(struct gpu_fuzz *f, uint32_t request, const void *payload, uint32_t size)
{
    uint8_t buf[VGPU_VU_HDR_SIZE + sizeof(struct virtio_gpu_resp_edid)];
    struct vgpu_vu_hdr h = {request, VGPU_VU_FLAG_REPLY, size};
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), payload, size);
    /* Replies are small and the display code reads whenever it is readable: no short write. */
    ssize_t n = send(f->qemu.fd, buf, sizeof(h) + size, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n != (ssize_t)(sizeof(h) + size))
        fz_die("display: cannot reply to request %u", request);
}

/* One complete message from the back-end: answer it as QEMU 10 would. */
static void qemu_handle(struct gpu_fuzz *f, const struct vgpu_vu_hdr *h)
{
    switch (h->request) {
    case 1: { /* GET_PROTOCOL_FEATURES: EDID */
        uint64_t features = 1;
        qemu_reply(f, h->request, &features, sizeof(features));
        break;
    }
    case 3: { /* GET_DISPLAY_INFO */
        struct virtio_gpu_resp_display_info info;
        memset(&info, 0, sizeof(info));
        info.hdr.type = VIRTIO_GPU_RESP_OK_DISPLAY_INFO;
        info.pmodes[0].r.width = 1024;
        info.pmodes[0].r.height = 768;
        info.pmodes[0].enabled = 1;
        qemu_reply(f, h->request, &info, sizeof(info));
        break;
    }
    case 11: { /* GET_EDID */
        struct virtio_gpu_resp_edid edid;
        memset(&edid, 0, sizeof(edid));
        edid.hdr.type = VIRTIO_GPU_RESP_OK_EDID;
        edid.size = 128;
        memcpy(edid.edid, "\0\xff\xff\xff\xff\xff\xff\0", 8);
        edid.edid[127] = (uint8_t)f->qemu.scanout;
        qemu_reply(f, h->request, &edid, sizeof(edid));
        break;
    }
    default: /* SET_PROTOCOL_FEATURES, SCANOUT, UPDATE, CURSOR_*: no reply */
        break;
    }
}

/* Reads whatever the back-end sent on the display socket and answers its requests. */
static void qemu_serve(struct gpu_fuzz *f)
{
    struct qemu *q = &f->qemu;
    while (q->fd >= 0) {
        uint8_t buf[65536];
        size_t want = q->have < sizeof(q->hdr) ? sizeof(q->hdr) - q->have
                      : q->skip < sizeof(buf)  ? q->skip
                                               : sizeof(buf);
        ssize_t n = recv(q->fd, buf, want, MSG_DONTWAIT);
        if (n <= 0)
            return;
        if (q->have < sizeof(q->hdr)) {
            memcpy(q->hdr + q->have, buf, (size_t)n);
            q->have += (size_t)n;
            if (q->have < sizeof(q->hdr))
                continue;
            struct vgpu_vu_hdr h;
            memcpy(&h, q->hdr, sizeof(h));
            q->skip = h.size;
            q->taken = 0;
            q->scanout = 0;
        } else {
            if (q->taken < sizeof(q->scanout)) {
                size_t k = sizeof(q->scanout) - q->taken < (size_t)n ? sizeof(q->scanout) - q->taken
                                                                     : (size_t)n;
                memcpy((uint8_t *)&q->scanout + q->taken, buf, k);
            }
            q->taken += (unsigned int)n;
            q->skip -= (uint32_t)n;
        }
        if (q->skip == 0) {
            struct vgpu_vu_hdr h;
            memcpy(&h, q->hdr, sizeof(h));
            q->have = 0;
            qemu_handle(f, &h);
        }
    }
}

static bool is_kick_fd(const struct gpu_fuzz *f, int fd)
{
    for (unsigned int qi = 0; qi < VGPU_VU_NUM_QUEUES; qi++)
        if (f->q[qi].watched_fd == fd)
            return true;
    return false;
}

/*
 * One turn of the event loop for everything but the kick fds (which the driver fires itself):
 * QEMU answers, then the callbacks of the watched fds that are ready, as the reactor would.
 */
static void pump(struct gpu_fuzz *f)
{
    if (f->qemu.fd < 0)
        return;
    qemu_serve(f);
    int fds[FZ_MAX_WATCHES];
    unsigned int n = 0;
    for (unsigned int i = 0; i < FZ_MAX_WATCHES; i++) {
        const struct fz_watch *w = &f->s.watcher.watches[i];
        if (w->active && !is_kick_fd(f, w->fd))
            fds[n++] = w->fd;
    }
    for (unsigned int i = 0; i < n; i++) {
        struct fz_watch *w = fz_watcher_find(&f->s.watcher, fds[i]);
        if (!w)
            continue; /* unwatched by an earlier callback */
        unsigned int ev = fz_watch_ready(w);
        if (ev)
            fz_watch_fire(w, ev);
    }
    fz_watcher_check_open(&f->s.watcher, "after the display's callbacks");
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Kicks both queues and processes completions until every posted chain is back. */
static void barrier(struct gpu_fuzz *f)
{
    for (unsigned int qi = 0; qi < VGPU_VU_NUM_QUEUES; qi++)
        if (f->q[qi].posted)
            kick(f, qi);
    int64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        check_used(f, 0);
        check_used(f, 1);
        if (f->q[0].posted == 0 && f->q[1].posted == 0)
            break;
        if (now_ms() > deadline)
            fz_die("%u control and %u cursor chains never came back", f->q[0].posted,
                   f->q[1].posted);
        pump(f);
        vgpu_render_wait(fz_render(), f->qemu.fd >= 0 ? 1 : 50);
        vgpu_gpu_dev_process_completions(f->s.gpu);
    }
    for (unsigned int qi = 0; qi < VGPU_VU_NUM_QUEUES; qi++)
        f->q[qi].next_desc = 0;
    f->next_req = REQ_AREA;
    f->next_resp = RESP_AREA;
    f->next_indirect = INDIRECT_AREA;
}

static void set_desc(struct vring_desc *d, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    d->addr = addr;
    d->len = len;
    d->flags = flags;
    d->next = next;
}

struct buf {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
};

/* Posts one command; the caller made sure there is room (descriptors, areas). */
static void post(struct gpu_fuzz *f, unsigned int qi, uint8_t ctl, const uint8_t *req, uint32_t len)
{
    struct queue *q = &f->q[qi];
    unsigned int shape = (ctl >> 1) & 3;
    uint32_t resp_len = resp_sizes[(ctl >> 3) & 3];
    if (shape == 2 && !vgpu_vu_dev_has_feature(f->s.dev, VIRTIO_RING_F_INDIRECT_DESC))
        shape = 0;

    uint64_t req_gpa = f->next_req;
    memcpy(gpa(f, req_gpa), req, len);
    f->next_req = (req_gpa + len + 7) & ~7ull;
    uint64_t resp_gpa = f->next_resp;
    if (shape != 3) {
        memset(gpa(f, resp_gpa), 0xa5, resp_len);
        f->next_resp = (resp_gpa + resp_len + 7) & ~7ull;
    }

    /* The chain's buffers: the request (maybe in two pieces), then the response. */
    struct buf bufs[3];
    unsigned int n = 0;
    if (shape == 1 && len >= 2) {
        bufs[n++] = (struct buf){req_gpa, len / 2, 0};
        bufs[n++] = (struct buf){req_gpa + len / 2, len - len / 2, 0};
    } else {
        bufs[n++] = (struct buf){req_gpa, len, 0};
    }
    if (shape != 3)
        bufs[n++] = (struct buf){resp_gpa, resp_len, VRING_DESC_F_WRITE};

    struct vring_desc *table = gpa(f, ring_desc[qi]);
    uint16_t head = (uint16_t)q->next_desc;
    if (shape == 2) {
        uint64_t ind = f->next_indirect;
        struct vring_desc *t = gpa(f, ind);
        for (unsigned int i = 0; i < n; i++)
            set_desc(&t[i], bufs[i].addr, bufs[i].len,
                     (uint16_t)(bufs[i].flags | (i + 1 < n ? VRING_DESC_F_NEXT : 0)),
                     (uint16_t)(i + 1));
        f->next_indirect = ind + n * sizeof(struct vring_desc);
        set_desc(&table[head], ind, (uint32_t)(n * sizeof(struct vring_desc)),
                 VRING_DESC_F_INDIRECT, 0);
        q->next_desc++;
    } else {
        for (unsigned int i = 0; i < n; i++) {
            uint16_t d = (uint16_t)q->next_desc++;
            set_desc(&table[d], bufs[i].addr, bufs[i].len,
                     (uint16_t)(bufs[i].flags | (i + 1 < n ? VRING_DESC_F_NEXT : 0)),
                     (uint16_t)(d + 1));
        }
    }

    struct posted *p = &q->p[head];
    *p = (struct posted){
        .inflight = true,
        .writable = shape == 3 ? 0 : resp_len,
        .resp_gpa = resp_gpa,
        .has_hdr = len >= sizeof(p->hdr),
    };
    if (p->has_hdr)
        memcpy(&p->hdr, req, sizeof(p->hdr));
    q->posted++;

    struct vring_avail *avail = gpa(f, ring_avail[qi]);
    avail->ring[q->avail_idx % q->num] = head;
    q->avail_idx++;
    __atomic_store_n(&avail->idx, q->avail_idx, __ATOMIC_RELEASE);
}

/* Whether one more command of len bytes fits without reusing anything still in flight. */
static bool room(const struct gpu_fuzz *f, unsigned int qi, uint32_t len)
{
    const struct queue *q = &f->q[qi];
    return q->next_desc + 3 <= q->num && f->next_req + len + 8 <= REQ_END &&
           f->next_resp + sizeof(struct virtio_gpu_resp_edid) + 8 <= RESP_END &&
           f->next_indirect + 3 * sizeof(struct vring_desc) <= INDIRECT_END;
}

/* GET_VRING_BASE stops the ring (answering what it popped); then it starts again there. */
static void restart_ring(struct gpu_fuzz *f, unsigned int qi)
{
    struct vhost_vring_state st = {.index = qi};
    if (fz_session_request(&f->s, VGPU_VU_GET_VRING_BASE, &st, sizeof(st), NULL, 0, &st,
                           sizeof(st)) != (int)sizeof(st))
        fz_die("GET_VRING_BASE: no reply");
    check_used(f, qi);
    start_ring(f, qi, (uint16_t)st.num);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_init_logging();
    fz_render();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int fds_before = fz_count_fds();
    uint8_t cfg = data[0];
    data++;
    size--;

    static struct gpu_fuzz f; /* big (posted tables): not on the stack */
    memset(&f, 0, sizeof(f));
    f.qemu.fd = -1;
    f.two_regions = cfg & 0x04;
    f.memfd = fz_memfd("fuzz-gpu-guest", MEM_SIZE);
    void *m = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f.memfd, 0);
    if (m == MAP_FAILED)
        fz_die("mmap: %s", strerror(errno));
    f.mem = m;
    f.next_req = REQ_AREA;
    f.next_resp = RESP_AREA;
    f.next_indirect = INDIRECT_AREA;

    struct vgpu_gpu_options opts;
    fz_gpu_options(&opts);
    if (cfg & 0x08)
        opts.max_hostmem = 256u << 10;
    opts.outputs = 1u + ((cfg >> 4) & 3u);
    fz_session_init(&f.s, &opts);
    setup(&f, cfg);
    pump(&f); /* the display's protocol features */

    for (unsigned int n = 0; n < MAX_COMMANDS && size >= 3; n++) {
        uint8_t ctl = data[0];
        uint16_t len;
        memcpy(&len, data + 1, sizeof(len));
        data += 3;
        size -= 3;
        if (len > size)
            len = (uint16_t)size;
        unsigned int qi = ctl & 1;
        if ((ctl & 0x20) || !room(&f, qi, len))
            barrier(&f);
        if (ctl & 0x40) {
            /* Commands in flight while the memory table is replaced (same layout). */
            for (unsigned int k = 0; k < VGPU_VU_NUM_QUEUES; k++)
                if (f.q[k].posted)
                    kick(&f, k);
            send_mem_table(&f);
        }
        if (ctl & 0x80)
            restart_ring(&f, qi);
        post(&f, qi, ctl, data, len);
        data += len;
        size -= len;
    }
    barrier(&f);

    fz_session_disconnect(&f.s);
    fz_session_finish(&f.s);
    if (f.qemu.fd >= 0)
        close(f.qemu.fd);
    for (unsigned int qi = 0; qi < VGPU_VU_NUM_QUEUES; qi++) {
        close(f.q[qi].kick_fd);
        close(f.q[qi].call_fd);
    }
    munmap(f.mem, MEM_SIZE);
    close(f.memfd);
    fz_check_fds(fds_before, "after the session");
    return 0;
}
