/* SPDX-License-Identifier: MIT */
#include "virtio/vu_dev.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "util/log.h"
#include "virtio/vu_msg.h"

#define BIT(n) (1ull << (n))

/* Transport features we implement. QEMU decides what the guest sees; we accept what it sets. */
#define OFFERED_FEATURES                                                                           \
    (BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_RING_F_INDIRECT_DESC) | BIT(VIRTIO_RING_F_EVENT_IDX) |   \
     BIT(VGPU_VU_F_PROTOCOL_FEATURES))

#define OFFERED_PROTOCOL_FEATURES                                                                  \
    (BIT(VGPU_VU_PROTO_MQ) | BIT(VGPU_VU_PROTO_REPLY_ACK) | BIT(VGPU_VU_PROTO_BACKEND_REQ) |       \
     BIT(VGPU_VU_PROTO_CONFIG) | BIT(VGPU_VU_PROTO_RESET_DEVICE) |                                 \
     BIT(VGPU_VU_PROTO_CONFIGURE_MEM_SLOTS))

struct queue {
    struct vgpu_vu_dev *dev;
    unsigned int index;
    struct vgpu_vring *vring;
    int kick_fd;
    int call_fd;
    int err_fd;
    bool enabled;
};

struct vgpu_vu_dev {
    int sock;
    const struct vgpu_watcher *watcher;
    struct vgpu_vu_rx rx;

    const struct vgpu_vu_device *impl;
    void *opaque;

    uint64_t features;
    uint64_t protocol_features;
    bool owned;
    int backend_fd;

    struct vgpu_guest_mem *mem;
    struct queue queues[VGPU_VU_NUM_QUEUES];
};

/* --- helpers ------------------------------------------------------------------------------ */

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Takes fds[i] out of the message: the handler owns it from now on. */
static int take_fd(struct vgpu_vu_msg *m, unsigned int i)
{
    int fd = m->fds[i];
    m->fds[i] = -1;
    return fd;
}

bool vgpu_vu_dev_has_feature(const struct vgpu_vu_dev *dev, unsigned int bit)
{
    return bit < 64 && (dev->features & BIT(bit));
}

bool vgpu_vu_dev_has_protocol_feature(const struct vgpu_vu_dev *dev, unsigned int bit)
{
    return bit < 64 && (dev->protocol_features & BIT(bit));
}

uint64_t vgpu_vu_dev_features(const struct vgpu_vu_dev *dev)
{
    return dev->features;
}

int vgpu_vu_dev_socket(const struct vgpu_vu_dev *dev)
{
    return dev->sock;
}

const struct vgpu_watcher *vgpu_vu_dev_watcher(const struct vgpu_vu_dev *dev)
{
    return dev->watcher;
}

int vgpu_vu_dev_backend_fd(const struct vgpu_vu_dev *dev)
{
    return dev->backend_fd;
}

struct vgpu_vring *vgpu_vu_dev_vring(struct vgpu_vu_dev *dev, unsigned int q)
{
    return q < VGPU_VU_NUM_QUEUES ? dev->queues[q].vring : NULL;
}

struct vgpu_guest_mem *vgpu_vu_dev_mem(struct vgpu_vu_dev *dev)
{
    return dev->mem;
}

bool vgpu_vu_dev_queue_ready(const struct vgpu_vu_dev *dev, unsigned int q)
{
    if (q >= VGPU_VU_NUM_QUEUES)
        return false;
    const struct queue *qu = &dev->queues[q];
    return qu->enabled && vgpu_vring_is_started(qu->vring) && !vgpu_vring_is_broken(qu->vring);
}

void vgpu_vu_dev_notify(struct vgpu_vu_dev *dev, unsigned int q)
{
    if (q >= VGPU_VU_NUM_QUEUES)
        return;
    struct queue *qu = &dev->queues[q];
    if (!vgpu_vring_need_notify(qu->vring) || qu->call_fd < 0)
        return;
    if (eventfd_write(qu->call_fd, 1) < 0)
        vgpu_warn("queue %u: call eventfd write failed: %s", q, strerror(errno));
}

static void queue_kick_device(struct vgpu_vu_dev *dev, unsigned int q)
{
    if (dev->impl && dev->impl->queue_kick && vgpu_vu_dev_queue_ready(dev, q))
        dev->impl->queue_kick(dev->opaque, q);
}

static void on_kick(void *data, int fd, unsigned int events)
{
    struct queue *qu = data;
    eventfd_t v;
    /* Drain the counter; several kicks coalesce into one pass over the ring. */
    if (eventfd_read(fd, &v) < 0 && errno != EAGAIN)
        vgpu_warn("queue %u: kick eventfd read failed: %s", qu->index, strerror(errno));
    queue_kick_device(qu->dev, qu->index);
}

static void queue_stop(struct vgpu_vu_dev *dev, struct queue *qu)
{
    if (vgpu_vring_is_started(qu->vring) && dev->impl && dev->impl->queue_stop)
        dev->impl->queue_stop(dev->opaque, qu->index);
    vgpu_vring_stop(qu->vring);
    if (qu->kick_fd >= 0) {
        dev->watcher->unwatch(dev->watcher->ctx, qu->kick_fd);
        close_fd(&qu->kick_fd);
    }
}

/*
 * Stops a queue and forgets its ring state. The call and err eventfds stay: QEMU sends
 * RESET_DEVICE after SET_VRING_CALL/ERR at realize and does not send the err fd again.
 */
static void queue_reset(struct vgpu_vu_dev *dev, struct queue *qu)
{
    queue_stop(dev, qu);
    vgpu_vring_reset(qu->vring);
    qu->enabled = false;
}

/* Starts the ring once it has a size, addresses and a kick fd. */
static int queue_try_start(struct vgpu_vu_dev *dev, struct queue *qu)
{
    if (vgpu_vring_is_started(qu->vring) || qu->kick_fd < 0)
        return 0;
    int r = vgpu_vring_start(qu->vring);
    if (r < 0) {
        vgpu_warn("queue %u: cannot start: %s", qu->index,
                  r == -EFAULT ? "ring addresses are not in guest memory"
                               : "size or addresses not set");
        return r;
    }
    vgpu_dbg("queue %u: started, %u entries, base %u", qu->index,
             vgpu_vring_get_num(qu->vring), vgpu_vring_get_base(qu->vring));
    return 0;
}

/* Before memory is unmapped: the device finishes everything that points into it. */
static void mem_barrier(struct vgpu_vu_dev *dev)
{
    if (dev->impl && dev->impl->mem_barrier)
        dev->impl->mem_barrier(dev->opaque);
}

/* After the memory table changed, re-translate every started ring. */
static void remap_queues(struct vgpu_vu_dev *dev)
{
    for (unsigned int q = 0; q < VGPU_VU_NUM_QUEUES; q++) {
        struct queue *qu = &dev->queues[q];
        if (vgpu_vring_is_started(qu->vring) && vgpu_vring_remap(qu->vring) < 0)
            vgpu_warn("queue %u: ring no longer in guest memory after a memory change", q);
    }
}

/* After the memory table changed (or a change failed): the device re-translates its own. */
static void mem_changed(struct vgpu_vu_dev *dev)
{
    if (dev->impl && dev->impl->mem_changed)
        dev->impl->mem_changed(dev->opaque);
}

static void reset_session_state(struct vgpu_vu_dev *dev)
{
    for (unsigned int q = 0; q < VGPU_VU_NUM_QUEUES; q++)
        queue_reset(dev, &dev->queues[q]);
    if (dev->impl && dev->impl->reset)
        dev->impl->reset(dev->opaque);
    dev->features = 0;
}

/* --- handlers ----------------------------------------------------------------------------- */

/*
 * A handler returns 0 on success, -EPROTO for a malformed message (the connection closes),
 * or another negative errno for a refused request (logged, error reply if one is expected).
 * It sets *reply and fills m->payload / m->hdr.size when the request has a reply body.
 */
typedef int (*handler_fn)(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply);

static void reply_u64(struct vgpu_vu_msg *m, uint64_t v, bool *reply)
{
    m->payload.u64 = v;
    m->hdr.size = sizeof(uint64_t);
    *reply = true;
}

static struct queue *msg_queue_state(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m)
{
    if (m->payload.state.index >= VGPU_VU_NUM_QUEUES) {
        vgpu_warn("%s: vring index %u out of range", vgpu_vu_request_name(m->hdr.request),
                  m->payload.state.index);
        return NULL;
    }
    return &dev->queues[m->payload.state.index];
}

static int h_get_features(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    uint64_t f = OFFERED_FEATURES;
    if (dev->impl && dev->impl->get_features)
        f |= dev->impl->get_features(dev->opaque);
    reply_u64(m, f, reply);
    return 0;
}

static int h_set_features(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    uint64_t f = m->payload.u64;
    if (f & BIT(VIRTIO_F_RING_PACKED)) {
        vgpu_err("SET_FEATURES 0x%llx: packed virtqueues are not supported",
                 (unsigned long long)f);
        return -EINVAL;
    }
    if (!(f & BIT(VIRTIO_F_VERSION_1)))
        vgpu_warn("SET_FEATURES 0x%llx without VIRTIO_F_VERSION_1", (unsigned long long)f);
    if (dev->impl && dev->impl->set_features) {
        int r = dev->impl->set_features(dev->opaque, f);
        if (r < 0)
            return r;
    }
    dev->features = f;
    bool event_idx = (f & BIT(VIRTIO_RING_F_EVENT_IDX)) != 0;
    for (unsigned int q = 0; q < VGPU_VU_NUM_QUEUES; q++) {
        vgpu_vring_set_event_idx(dev->queues[q].vring, event_idx);
        /* Without protocol features rings are enabled as soon as they start (spec). */
        if (!(f & BIT(VGPU_VU_F_PROTOCOL_FEATURES)))
            dev->queues[q].enabled = true;
    }
    return 0;
}

static int h_set_owner(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    if (dev->owned)
        vgpu_warn("SET_OWNER: session already has an owner");
    dev->owned = true;
    return 0;
}

static int h_reset(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    reset_session_state(dev);
    return 0;
}

static int h_set_mem_table(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    const struct vgpu_vu_memory *mt = &m->payload.memory;
    uint32_t n = mt->nregions;
    if (n == 0 || n > VGPU_VU_MEM_TABLE_MAX ||
        m->hdr.size != 8 + n * sizeof(struct vgpu_vu_region) || m->nfds != n) {
        vgpu_warn("SET_MEM_TABLE: %u regions, %u bytes, %u fds do not agree", n, m->hdr.size,
                  m->nfds);
        return -EPROTO;
    }
    struct vgpu_mem_region regions[VGPU_VU_MEM_TABLE_MAX];
    int fds[VGPU_VU_MEM_TABLE_MAX];
    mem_barrier(dev);
    for (uint32_t i = 0; i < n; i++) {
        regions[i] = (struct vgpu_mem_region){
            .gpa = mt->regions[i].guest_phys_addr,
            .size = mt->regions[i].memory_size,
            .uva = mt->regions[i].userspace_addr,
            .mmap_offset = mt->regions[i].mmap_offset,
        };
        fds[i] = take_fd(m, i);
    }
    int r = vgpu_guest_mem_set_table(dev->mem, regions, fds, n);
    if (r < 0) {
        vgpu_err("SET_MEM_TABLE refused: %s", strerror(-r));
        mem_changed(dev);
        return r;
    }
    remap_queues(dev);
    mem_changed(dev);
    return 0;
}

static struct vgpu_mem_region region_from_msg(const struct vgpu_vu_msg *m)
{
    const struct vgpu_vu_region *r = &m->payload.mem_reg.region;
    return (struct vgpu_mem_region){
        .gpa = r->guest_phys_addr,
        .size = r->memory_size,
        .uva = r->userspace_addr,
        .mmap_offset = r->mmap_offset,
    };
}

static int h_add_mem_reg(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    struct vgpu_mem_region r = region_from_msg(m);
    int ret = vgpu_guest_mem_add(dev->mem, &r, take_fd(m, 0));
    if (ret < 0) {
        vgpu_err("ADD_MEM_REG gpa 0x%llx size 0x%llx refused: %s", (unsigned long long)r.gpa,
                 (unsigned long long)r.size, strerror(-ret));
        return ret;
    }
    mem_changed(dev);
    return 0;
}

static int h_rem_mem_reg(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    struct vgpu_mem_region r = region_from_msg(m);
    mem_barrier(dev);
    int ret = vgpu_guest_mem_remove(dev->mem, &r);
    if (ret < 0) {
        vgpu_err("REM_MEM_REG gpa 0x%llx size 0x%llx: no such region", (unsigned long long)r.gpa,
                 (unsigned long long)r.size);
        mem_changed(dev);
        return ret;
    }
    remap_queues(dev);
    mem_changed(dev);
    return 0;
}

static int h_set_vring_num(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    struct queue *qu = msg_queue_state(dev, m);
    if (!qu)
        return -EPROTO;
    int r = vgpu_vring_set_num(qu->vring, m->payload.state.num);
    if (r < 0)
        vgpu_warn("SET_VRING_NUM %u on queue %u refused: %s", m->payload.state.num, qu->index,
                  r == -EBUSY ? "ring is running" : "not a power of two up to 32768");
    return r;
}

static int h_set_vring_addr(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    const struct vhost_vring_addr *a = &m->payload.addr;
    if (a->index >= VGPU_VU_NUM_QUEUES) {
        vgpu_warn("SET_VRING_ADDR: vring index %u out of range", a->index);
        return -EPROTO;
    }
    struct queue *qu = &dev->queues[a->index];
    int r = vgpu_vring_set_addr(qu->vring, a->desc_user_addr, a->avail_user_addr,
                                a->used_user_addr);
    if (r < 0)
        vgpu_warn("SET_VRING_ADDR on queue %u refused: %s", qu->index,
                  r == -EBUSY ? "ring is running" : "misaligned address");
    return r;
}

static int h_set_vring_base(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    struct queue *qu = msg_queue_state(dev, m);
    if (!qu)
        return -EPROTO;
    if (m->payload.state.num > UINT16_MAX) {
        vgpu_warn("SET_VRING_BASE %u on queue %u: not a split-ring index", m->payload.state.num,
                  qu->index);
        return -EINVAL;
    }
    int r = vgpu_vring_set_base(qu->vring, (uint16_t)m->payload.state.num);
    if (r < 0)
        vgpu_warn("SET_VRING_BASE on queue %u refused: ring is running", qu->index);
    return r;
}

static int h_get_vring_base(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    struct queue *qu = msg_queue_state(dev, m);
    if (!qu)
        return -EPROTO;
    queue_stop(dev, qu);
    m->payload.state.num = vgpu_vring_get_base(qu->vring);
    m->hdr.size = sizeof(m->payload.state);
    *reply = true;
    return 0;
}

/* Decodes the u64 of SET_VRING_KICK/CALL/ERR; returns the queue and the fd (or -1). */
static struct queue *msg_queue_fd(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, int *fd)
{
    uint64_t v = m->payload.u64;
    const char *name = vgpu_vu_request_name(m->hdr.request);
    uint64_t idx = v & VGPU_VU_VRING_IDX_MASK;
    if (idx >= VGPU_VU_NUM_QUEUES) {
        vgpu_warn("%s: vring index %llu out of range", name, (unsigned long long)idx);
        return NULL;
    }
    if (v & VGPU_VU_VRING_NOFD_MASK) {
        if (m->nfds != 0) {
            vgpu_warn("%s: fd attached despite the no-fd flag", name);
            return NULL;
        }
        *fd = -1;
    } else {
        if (m->nfds != 1) {
            vgpu_warn("%s: %u fds attached, expected 1", name, m->nfds);
            return NULL;
        }
        *fd = take_fd(m, 0);
    }
    return &dev->queues[idx];
}

static int h_set_vring_kick(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    int fd;
    struct queue *qu = msg_queue_fd(dev, m, &fd);
    if (!qu)
        return -EPROTO;
    queue_stop(dev, qu);
    if (fd < 0) {
        vgpu_warn("SET_VRING_KICK queue %u without an fd: polling mode is not supported",
                  qu->index);
        return -ENOTSUP;
    }
    int r = dev->watcher->watch(dev->watcher->ctx, fd, VGPU_EV_READ, on_kick, qu);
    if (r < 0) {
        vgpu_err("queue %u: cannot watch kick fd: %s", qu->index, strerror(-r));
        close(fd);
        return r;
    }
    qu->kick_fd = fd;
    /* Without VHOST_USER_F_PROTOCOL_FEATURES acked, rings start enabled (spec). */
    if (!(dev->features & BIT(VGPU_VU_F_PROTOCOL_FEATURES)))
        qu->enabled = true;
    r = queue_try_start(dev, qu);
    if (r < 0)
        return r;
    /* Buffers may already be waiting: don't rely on the front-end's injected kick. */
    queue_kick_device(dev, qu->index);
    return 0;
}

static int h_set_vring_call(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    int fd;
    struct queue *qu = msg_queue_fd(dev, m, &fd);
    if (!qu)
        return -EPROTO;
    close_fd(&qu->call_fd);
    qu->call_fd = fd;
    return 0;
}

static int h_set_vring_err(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    int fd;
    struct queue *qu = msg_queue_fd(dev, m, &fd);
    if (!qu)
        return -EPROTO;
    close_fd(&qu->err_fd);
    qu->err_fd = fd;
    return 0;
}

static int h_get_protocol_features(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    reply_u64(m, OFFERED_PROTOCOL_FEATURES, reply);
    return 0;
}

static int h_set_protocol_features(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    uint64_t f = m->payload.u64;
    dev->protocol_features = f & OFFERED_PROTOCOL_FEATURES;
    if (f & ~OFFERED_PROTOCOL_FEATURES) {
        vgpu_warn("SET_PROTOCOL_FEATURES 0x%llx: bits 0x%llx were never offered",
                  (unsigned long long)f, (unsigned long long)(f & ~OFFERED_PROTOCOL_FEATURES));
        return -EINVAL;
    }
    return 0;
}

static int h_get_queue_num(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    reply_u64(m, VGPU_VU_NUM_QUEUES, reply);
    return 0;
}

static int h_set_vring_enable(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    struct queue *qu = msg_queue_state(dev, m);
    if (!qu)
        return -EPROTO;
    if (m->payload.state.num > 1) {
        vgpu_warn("SET_VRING_ENABLE queue %u: value %u is not 0 or 1", qu->index,
                  m->payload.state.num);
        return -EINVAL;
    }
    qu->enabled = m->payload.state.num == 1;
    if (qu->enabled)
        queue_kick_device(dev, qu->index);
    return 0;
}

static int h_set_backend_req_fd(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    close_fd(&dev->backend_fd);
    dev->backend_fd = take_fd(m, 0);
    return 0;
}

/* Validates a GET/SET_CONFIG payload; -EPROTO if the sizes disagree, -EINVAL if out of range. */
static int config_range(struct vgpu_vu_dev *dev, const struct vgpu_vu_msg *m)
{
    const struct vgpu_vu_config *c = &m->payload.config;
    if (c->size > VGPU_VU_CONFIG_MAX || m->hdr.size != VGPU_VU_CONFIG_HDR_SIZE + c->size) {
        vgpu_warn("%s: config size %u does not match payload size %u",
                  vgpu_vu_request_name(m->hdr.request), c->size, m->hdr.size);
        return -EPROTO;
    }
    uint32_t cfg_size = dev->impl ? dev->impl->config_size : 0;
    if (c->offset > cfg_size || c->size > cfg_size - c->offset) {
        vgpu_warn("%s: offset %u size %u outside the %u-byte config space",
                  vgpu_vu_request_name(m->hdr.request), c->offset, c->size, cfg_size);
        return -EINVAL;
    }
    return 0;
}

static int h_get_config(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    *reply = true;
    int r = config_range(dev, m);
    if (r == -EPROTO)
        return r;
    struct vgpu_vu_config *c = &m->payload.config;
    if (r == 0 && !dev->impl->get_config)
        r = -ENOTSUP;
    if (r == 0) {
        memset(c->region, 0, c->size);
        r = dev->impl->get_config(dev->opaque, c->region, c->offset, c->size);
    }
    if (r < 0) {
        /* A reply without a config body is the protocol's error answer. */
        m->hdr.size = 0;
        return 0;
    }
    return 0;
}

static int h_set_config(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    int r = config_range(dev, m);
    if (r < 0)
        return r;
    const struct vgpu_vu_config *c = &m->payload.config;
    if (!dev->impl || !dev->impl->set_config)
        return -ENOTSUP;
    return dev->impl->set_config(dev->opaque, c->region, c->offset, c->size);
}

static int h_gpu_set_socket(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    int fd = take_fd(m, 0);
    if (!dev->impl || !dev->impl->set_display_socket) {
        close(fd);
        return -ENOTSUP;
    }
    dev->impl->set_display_socket(dev->opaque, fd);
    return 0;
}

static int h_get_max_mem_slots(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m, bool *reply)
{
    reply_u64(m, VGPU_VU_MAX_MEM_SLOTS, reply);
    return 0;
}

struct handler {
    handler_fn fn;
    uint32_t min_size;
    uint32_t max_size;
    uint8_t min_fds;
    uint8_t max_fds;
    int8_t need_proto; /* protocol feature that must be negotiated first, or -1 */
};

#define U64 sizeof(uint64_t)
#define STATE sizeof(struct vhost_vring_state)

/* Checked once before the handler runs: payload size, fd count, negotiated feature. */
static const struct handler handlers[VGPU_VU_REQUEST_MAX] = {
    [VGPU_VU_GET_FEATURES] = {h_get_features, 0, 0, 0, 0, -1},
    [VGPU_VU_SET_FEATURES] = {h_set_features, U64, U64, 0, 0, -1},
    [VGPU_VU_SET_OWNER] = {h_set_owner, 0, 0, 0, 0, -1},
    [VGPU_VU_RESET_OWNER] = {h_reset, 0, 0, 0, 0, -1},
    [VGPU_VU_SET_MEM_TABLE] = {h_set_mem_table, 8, sizeof(struct vgpu_vu_memory), 1,
                               VGPU_VU_MEM_TABLE_MAX, -1},
    [VGPU_VU_SET_VRING_NUM] = {h_set_vring_num, STATE, STATE, 0, 0, -1},
    [VGPU_VU_SET_VRING_ADDR] = {h_set_vring_addr, sizeof(struct vhost_vring_addr),
                                sizeof(struct vhost_vring_addr), 0, 0, -1},
    [VGPU_VU_SET_VRING_BASE] = {h_set_vring_base, STATE, STATE, 0, 0, -1},
    [VGPU_VU_GET_VRING_BASE] = {h_get_vring_base, STATE, STATE, 0, 0, -1},
    [VGPU_VU_SET_VRING_KICK] = {h_set_vring_kick, U64, U64, 0, 1, -1},
    [VGPU_VU_SET_VRING_CALL] = {h_set_vring_call, U64, U64, 0, 1, -1},
    [VGPU_VU_SET_VRING_ERR] = {h_set_vring_err, U64, U64, 0, 1, -1},
    [VGPU_VU_GET_PROTOCOL_FEATURES] = {h_get_protocol_features, 0, 0, 0, 0, -1},
    [VGPU_VU_SET_PROTOCOL_FEATURES] = {h_set_protocol_features, U64, U64, 0, 0, -1},
    [VGPU_VU_GET_QUEUE_NUM] = {h_get_queue_num, 0, 0, 0, 0, VGPU_VU_PROTO_MQ},
    [VGPU_VU_SET_VRING_ENABLE] = {h_set_vring_enable, STATE, STATE, 0, 0, -1},
    [VGPU_VU_SET_BACKEND_REQ_FD] = {h_set_backend_req_fd, 0, 0, 1, 1, VGPU_VU_PROTO_BACKEND_REQ},
    [VGPU_VU_GET_CONFIG] = {h_get_config, VGPU_VU_CONFIG_HDR_SIZE, sizeof(struct vgpu_vu_config),
                            0, 0, VGPU_VU_PROTO_CONFIG},
    [VGPU_VU_SET_CONFIG] = {h_set_config, VGPU_VU_CONFIG_HDR_SIZE, sizeof(struct vgpu_vu_config),
                            0, 0, VGPU_VU_PROTO_CONFIG},
    [VGPU_VU_GPU_SET_SOCKET] = {h_gpu_set_socket, 0, 0, 1, 1, -1},
    [VGPU_VU_RESET_DEVICE] = {h_reset, 0, 0, 0, 0, VGPU_VU_PROTO_RESET_DEVICE},
    [VGPU_VU_GET_MAX_MEM_SLOTS] = {h_get_max_mem_slots, 0, 0, 0, 0,
                                   VGPU_VU_PROTO_CONFIGURE_MEM_SLOTS},
    [VGPU_VU_ADD_MEM_REG] = {h_add_mem_reg, sizeof(struct vgpu_vu_mem_reg),
                             sizeof(struct vgpu_vu_mem_reg), 1, 1,
                             VGPU_VU_PROTO_CONFIGURE_MEM_SLOTS},
    /* The spec says no fd; QEMU versions have sent one. Accept and close it. */
    [VGPU_VU_REM_MEM_REG] = {h_rem_mem_reg, sizeof(struct vgpu_vu_mem_reg),
                             sizeof(struct vgpu_vu_mem_reg), 0, 1,
                             VGPU_VU_PROTO_CONFIGURE_MEM_SLOTS},
};

/* Sends a reply: flags exactly version|REPLY (QEMU compares for equality). */
static int send_reply(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m)
{
    struct vgpu_vu_hdr hdr = {
        .request = m->hdr.request,
        .flags = VGPU_VU_VERSION | VGPU_VU_FLAG_REPLY,
        .size = m->hdr.size,
    };
    int r = vgpu_vu_send(dev->sock, &hdr, m->payload.raw, NULL, 0);
    if (r < 0)
        vgpu_err("%s: cannot send reply: %s", vgpu_vu_request_name(m->hdr.request), strerror(-r));
    return r;
}

/* Runs one complete message. Returns 0 or -EPROTO (close the connection). */
static int dispatch(struct vgpu_vu_dev *dev, struct vgpu_vu_msg *m)
{
    uint32_t req = m->hdr.request;
    const char *name = vgpu_vu_request_name(req);
    bool need_reply = (m->hdr.flags & VGPU_VU_FLAG_NEED_REPLY) &&
                      vgpu_vu_dev_has_protocol_feature(dev, VGPU_VU_PROTO_REPLY_ACK);
    const struct handler *h = req < VGPU_VU_REQUEST_MAX ? &handlers[req] : NULL;

    vgpu_dbg("<- %s (%u) flags 0x%x size %u fds %u", name, req, m->hdr.flags, m->hdr.size,
             m->nfds);

    int r;
    bool reply = false;
    if (!h || !h->fn) {
        vgpu_warn("unsupported request %s (%u), size %u", name, req, m->hdr.size);
        r = -ENOTSUP;
    } else if (m->hdr.size < h->min_size || m->hdr.size > h->max_size) {
        vgpu_warn("%s: payload of %u bytes, expected %u..%u: closing the connection", name,
                  m->hdr.size, h->min_size, h->max_size);
        return -EPROTO;
    } else if (m->nfds < h->min_fds || m->nfds > h->max_fds) {
        vgpu_warn("%s: %u fds attached, expected %u..%u: closing the connection", name, m->nfds,
                  h->min_fds, h->max_fds);
        return -EPROTO;
    } else if (h->need_proto >= 0 &&
               !vgpu_vu_dev_has_protocol_feature(dev, (unsigned int)h->need_proto)) {
        vgpu_warn("%s before its protocol feature %d was negotiated", name, h->need_proto);
        r = -EPERM;
    } else {
        r = h->fn(dev, m, &reply);
        if (r == -EPROTO) {
            vgpu_warn("%s: malformed: closing the connection", name);
            return -EPROTO;
        }
    }

    if (reply) {
        if (send_reply(dev, m) < 0)
            return -EPROTO;
    } else if (need_reply) {
        /* REPLY_ACK: 0 for success, non-zero for failure. */
        m->payload.u64 = r < 0 ? 1 : 0;
        m->hdr.size = sizeof(uint64_t);
        if (send_reply(dev, m) < 0)
            return -EPROTO;
    }
    if (r < 0 && r != -EPROTO)
        vgpu_dbg("%s failed: %s", name, strerror(-r));
    return 0;
}

int vgpu_vu_dev_handle_socket(struct vgpu_vu_dev *dev)
{
    for (;;) {
        int r = vgpu_vu_rx_read(&dev->rx, dev->sock);
        if (r == 0)
            return 0;
        if (r < 0) {
            if (r == -ECONNRESET) {
                if (dev->rx.have)
                    vgpu_warn("front-end closed the connection mid-message");
                else
                    vgpu_info("front-end disconnected");
            } else if (r == -EPROTO) {
                vgpu_warn("malformed message header (request %u flags 0x%x size %u, %u fds): "
                          "closing the connection",
                          dev->rx.msg.hdr.request, dev->rx.msg.hdr.flags, dev->rx.msg.hdr.size,
                          dev->rx.msg.nfds);
            } else {
                vgpu_warn("vhost-user socket read failed: %s", strerror(-r));
            }
            vgpu_vu_rx_reset(&dev->rx);
            return r == -ECONNRESET ? r : -EPROTO;
        }
        r = dispatch(dev, &dev->rx.msg);
        /* Any fd the handler did not take is closed here, on every path. */
        vgpu_vu_rx_reset(&dev->rx);
        if (r < 0)
            return r;
    }
}

/* --- lifetime ----------------------------------------------------------------------------- */

struct vgpu_vu_dev *vgpu_vu_dev_create(int sock, const struct vgpu_watcher *watcher)
{
    struct vgpu_vu_dev *dev = calloc(1, sizeof(*dev));
    if (!dev)
        goto err_close;
    dev->sock = sock;
    dev->watcher = watcher;
    dev->backend_fd = -1;
    vgpu_vu_rx_init(&dev->rx);
    dev->mem = vgpu_guest_mem_create();
    if (!dev->mem)
        goto err_dev;
    for (unsigned int q = 0; q < VGPU_VU_NUM_QUEUES; q++) {
        struct queue *qu = &dev->queues[q];
        qu->dev = dev;
        qu->index = q;
        qu->kick_fd = qu->call_fd = qu->err_fd = -1;
        qu->vring = vgpu_vring_create(dev->mem);
        if (!qu->vring)
            goto err_rings;
    }
    return dev;

err_rings:
    for (unsigned int q = 0; q < VGPU_VU_NUM_QUEUES; q++)
        vgpu_vring_destroy(dev->queues[q].vring);
    vgpu_guest_mem_destroy(dev->mem);
err_dev:
    free(dev);
err_close:
    close(sock);
    return NULL;
}

void vgpu_vu_dev_set_device(struct vgpu_vu_dev *dev, const struct vgpu_vu_device *impl,
                            void *opaque)
{
    dev->impl = impl;
    dev->opaque = opaque;
}

void vgpu_vu_dev_destroy(struct vgpu_vu_dev *dev)
{
    if (!dev)
        return;
    for (unsigned int q = 0; q < VGPU_VU_NUM_QUEUES; q++)
        queue_stop(dev, &dev->queues[q]);
    /* The device may still hold chains pointing into guest memory: it goes before memory. */
    if (dev->impl && dev->impl->destroy)
        dev->impl->destroy(dev->opaque);
    for (unsigned int q = 0; q < VGPU_VU_NUM_QUEUES; q++) {
        struct queue *qu = &dev->queues[q];
        close_fd(&qu->call_fd);
        close_fd(&qu->err_fd);
        vgpu_vring_destroy(qu->vring);
    }
    vgpu_guest_mem_destroy(dev->mem);
    close_fd(&dev->backend_fd);
    vgpu_vu_rx_reset(&dev->rx);
    close_fd(&dev->sock);
    free(dev);
}
