/* SPDX-License-Identifier: MIT */
/*
 * Driver side of the split virtqueues, behaving like Linux's virtio_ring.c: chains built from a
 * free list, optional indirect tables, EVENT_IDX suppression both ways (used_event written
 * after each consumed entry; kicks only when avail_event asks for them).
 *
 * The device runs in another process and shares the rings through the memfd, so every access
 * to a field the device writes goes through a volatile load, and publishing is ordered with
 * C11 fences (release before avail->idx, full fence before reading avail_event/used flags,
 * acquire after reading used->idx).
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/virtio_ring.h>

#include "frontend.h"
#include "frontend_priv.h"

static uint16_t load16(const uint16_t *p)
{
    return *(const volatile uint16_t *)p;
}

static void store16(uint16_t *p, uint16_t v)
{
    *(volatile uint16_t *)p = v;
}

static struct fe_vq *get_vq(const struct vgpu_fe *fe, unsigned int q)
{
    return (struct fe_vq *)&fe->vq[q < VGPU_FE_NUM_QUEUES ? q : 0];
}

int fe_vq_init(struct vgpu_fe *fe, unsigned int q)
{
    struct fe_vq *vq = &fe->vq[q];
    unsigned int num = fe->cfg.queue_size[q];

    if (num == 0 || num > 32768 || (num & (num - 1)) != 0)
        return -EINVAL;
    vq->num = num;
    vq->free_list = calloc(num, sizeof(*vq->free_list));
    vq->next = calloc(num, sizeof(*vq->next));
    vq->chain_len = calloc(num, sizeof(*vq->chain_len));
    vq->inflight = calloc(num, sizeof(*vq->inflight));
    if (vq->free_list == NULL || vq->next == NULL || vq->chain_len == NULL || vq->inflight == NULL)
        return -ENOMEM;
    vq->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    vq->call_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    vq->masked_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    vq->err_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (vq->kick_fd < 0 || vq->call_fd < 0 || vq->masked_fd < 0 || vq->err_fd < 0)
        return -errno;
    vq->scratch_size = 64u * 1024u;
    vq->scratch_gpa = vgpu_fe_alloc(fe, vq->scratch_size, 64);
    if (vq->scratch_gpa == 0)
        return -ENOMEM;
    return 0;
}

void fe_vq_finish(struct vgpu_fe *fe, unsigned int q)
{
    struct fe_vq *vq = &fe->vq[q];
    int *fds[] = {&vq->kick_fd, &vq->call_fd, &vq->masked_fd, &vq->err_fd};

    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
    free(vq->free_list);
    free(vq->next);
    free(vq->chain_len);
    free(vq->inflight);
    vq->free_list = vq->next = vq->chain_len = NULL;
    vq->inflight = NULL;
}

static void drain_eventfd(int fd)
{
    uint64_t v;

    if (read(fd, &v, sizeof(v)) < 0) {
        /* EAGAIN: nothing pending */
    }
}

int fe_vq_setup_rings(struct vgpu_fe *fe, unsigned int q)
{
    struct fe_vq *vq = &fe->vq[q];
    unsigned int num = vq->num;

    /* Fresh addresses on every start, as after a guest driver reload. */
    vq->desc_gpa = vgpu_fe_alloc(fe, (size_t)16 * num, 4096);
    vq->avail_gpa = vgpu_fe_alloc(fe, 6 + (size_t)2 * num, 4);
    vq->used_gpa = vgpu_fe_alloc(fe, 6 + (size_t)8 * num, 4096);
    vq->indirect_gpa = vgpu_fe_alloc(fe, (size_t)16u * fe->cfg.max_indirect * num, 16);
    if (vq->desc_gpa == 0 || vq->avail_gpa == 0 || vq->used_gpa == 0 || vq->indirect_gpa == 0)
        return fe_fail(fe, -ENOMEM, "guest memory exhausted by rings");
    vq->desc = vgpu_fe_gpa_ptr(fe, vq->desc_gpa, (size_t)16 * num);
    vq->avail = vgpu_fe_gpa_ptr(fe, vq->avail_gpa, 6 + (size_t)2 * num);
    vq->used = vgpu_fe_gpa_ptr(fe, vq->used_gpa, 6 + (size_t)8 * num);
    vq->used_event = (uint16_t *)(void *)&vq->avail->ring[num];
    vq->avail_event = (uint16_t *)(void *)&vq->used->ring[num];
    for (unsigned int i = 0; i < num; i++) {
        vq->free_list[i] = (uint16_t)(num - 1 - i);
        vq->chain_len[i] = 0;
        vq->inflight[i] = false;
    }
    vq->nfree = num;
    vq->ninflight = 0;
    vq->avail_idx = vq->kick_old = vq->last_used = vq->notified_used = 0;
    drain_eventfd(vq->call_fd);
    drain_eventfd(vq->masked_fd);
    return 0;
}

void fe_vq_unmask(struct vgpu_fe *fe, unsigned int q)
{
    struct fe_vq *vq = &fe->vq[q];
    uint64_t v;

    /* QEMU's vhost_virtqueue_mask: an interrupt that hit the masked notifier is injected. */
    if (read(vq->masked_fd, &v, sizeof(v)) == (ssize_t)sizeof(v) && v > 0) {
        vq->calls++;
        vq->notified_used = load16(&vq->used->idx);
        atomic_thread_fence(memory_order_acquire);
    }
}

unsigned int vgpu_fe_vq_size(const struct vgpu_fe *fe, unsigned int q)
{
    return get_vq(fe, q)->num;
}

unsigned int vgpu_fe_vq_num_free(const struct vgpu_fe *fe, unsigned int q)
{
    return get_vq(fe, q)->nfree;
}

unsigned int vgpu_fe_vq_inflight(const struct vgpu_fe *fe, unsigned int q)
{
    return get_vq(fe, q)->ninflight;
}

unsigned int vgpu_fe_vq_calls(const struct vgpu_fe *fe, unsigned int q)
{
    return get_vq(fe, q)->calls;
}

int64_t vgpu_fe_vq_err_count(struct vgpu_fe *fe, unsigned int q)
{
    uint64_t v;
    ssize_t n = read(get_vq(fe, q)->err_fd, &v, sizeof(v));

    if (n == (ssize_t)sizeof(v))
        return (int64_t)v;
    if (n < 0 && errno == EAGAIN)
        return 0;
    return n < 0 ? -errno : -EIO;
}

int vgpu_fe_vq_kick(struct vgpu_fe *fe, unsigned int q)
{
    uint64_t one = 1;

    if (write(get_vq(fe, q)->kick_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
        return fe_fail(fe, -errno, "kick of queue %u failed", q);
    return 0;
}

int vgpu_fe_vq_kick_if_needed(struct vgpu_fe *fe, unsigned int q)
{
    struct fe_vq *vq = get_vq(fe, q);
    bool need;

    if (vq->used == NULL)
        return fe_fail(fe, -EINVAL, "queue %u has no rings", q);
    /* Order the avail->idx store before reading the device's suppression state (Linux's
     * virtqueue_kick_prepare uses virtio_mb here). */
    atomic_thread_fence(memory_order_seq_cst);
    uint16_t old = vq->kick_old;
    uint16_t new_idx = vq->avail_idx;
    vq->kick_old = new_idx;
    if (fe->cfg.always_kick)
        need = true;
    else if (fe_has_feature(fe, VIRTIO_RING_F_EVENT_IDX))
        need = vring_need_event(load16(vq->avail_event), new_idx, old);
    else
        need = !(load16(&vq->used->flags) & VRING_USED_F_NO_NOTIFY);
    if (!need)
        return 0;
    int r = vgpu_fe_vq_kick(fe, q);
    return r < 0 ? r : 1;
}

static int publish(struct vgpu_fe *fe, unsigned int q, uint16_t head, unsigned int flags)
{
    struct fe_vq *vq = get_vq(fe, q);

    store16(&vq->avail->ring[vq->avail_idx & (vq->num - 1)], head);
    /* The ring entry must be visible before the index that publishes it. */
    atomic_thread_fence(memory_order_release);
    vq->avail_idx++;
    store16(&vq->avail->idx, vq->avail_idx);
    if (head < vq->num && !vq->inflight[head]) {
        vq->inflight[head] = true;
        vq->ninflight++;
    }
    if (flags & VGPU_FE_POST_NO_KICK)
        return 0;
    int r = vgpu_fe_vq_kick_if_needed(fe, q);
    return r < 0 ? r : 0;
}

static uint16_t take_desc(struct fe_vq *vq)
{
    return vq->free_list[--vq->nfree];
}

int vgpu_fe_vq_post(struct vgpu_fe *fe, unsigned int q, const struct vgpu_fe_buf *bufs,
                    unsigned int n_out, unsigned int n_in, unsigned int flags)
{
    struct fe_vq *vq = get_vq(fe, q);
    unsigned int n = n_out + n_in;
    bool indirect = flags & VGPU_FE_POST_INDIRECT;

    if (vq->desc == NULL)
        return fe_fail(fe, -EINVAL, "queue %u has no rings", q);
    if (n == 0)
        return fe_fail(fe, -EINVAL, "empty chain");
    if (indirect && !fe_has_feature(fe, VIRTIO_RING_F_INDIRECT_DESC))
        return fe_fail(fe, -ENOTSUP, "INDIRECT_DESC not negotiated");
    if (indirect && n > fe->cfg.max_indirect)
        return fe_fail(fe, -EINVAL, "%u buffers over the indirect limit %u", n,
                       fe->cfg.max_indirect);
    if (vq->nfree < (indirect ? 1u : n))
        return fe_fail(fe, -ENOSPC, "queue %u: %u free descriptors for %u", q, vq->nfree,
                       indirect ? 1u : n);

    uint16_t head = take_desc(vq);
    if (indirect) {
        uint64_t table_gpa = vq->indirect_gpa + (uint64_t)16u * fe->cfg.max_indirect * head;
        struct vring_desc *t = vgpu_fe_gpa_ptr(fe, table_gpa, (size_t)16 * n);
        for (unsigned int i = 0; i < n; i++) {
            uint16_t f = 0;
            if (i >= n_out)
                f |= VRING_DESC_F_WRITE;
            if (i + 1 < n)
                f |= VRING_DESC_F_NEXT;
            t[i].addr = bufs[i].gpa;
            t[i].len = bufs[i].len;
            t[i].flags = f;
            t[i].next = (uint16_t)(i + 1 < n ? i + 1 : 0);
        }
        vq->desc[head].addr = table_gpa;
        vq->desc[head].len = 16u * n;
        vq->desc[head].flags = VRING_DESC_F_INDIRECT;
        vq->desc[head].next = 0;
        vq->chain_len[head] = 1;
    } else {
        uint16_t cur = head;
        for (unsigned int i = 0; i < n; i++) {
            uint16_t f = i >= n_out ? VRING_DESC_F_WRITE : 0;
            uint16_t nxt = 0;
            if (i + 1 < n) {
                nxt = take_desc(vq);
                f |= VRING_DESC_F_NEXT;
                vq->next[cur] = nxt;
            }
            vq->desc[cur].addr = bufs[i].gpa;
            vq->desc[cur].len = bufs[i].len;
            vq->desc[cur].flags = f;
            vq->desc[cur].next = nxt;
            cur = nxt;
        }
        vq->chain_len[head] = (uint16_t)n;
    }
    int r = publish(fe, q, head, flags);
    return r < 0 ? r : head;
}

int vgpu_fe_vq_publish(struct vgpu_fe *fe, unsigned int q, uint16_t head, unsigned int flags)
{
    struct fe_vq *vq = get_vq(fe, q);

    if (vq->avail == NULL)
        return fe_fail(fe, -EINVAL, "queue %u has no rings", q);
    if (head < vq->num)
        vq->chain_len[head] = 0;
    return publish(fe, q, head, flags);
}

static void release_chain(struct fe_vq *vq, uint16_t head)
{
    uint16_t cur = head;

    for (unsigned int i = 0; i < vq->chain_len[head]; i++) {
        vq->free_list[vq->nfree++] = cur;
        cur = vq->next[cur];
    }
    vq->chain_len[head] = 0;
    vq->inflight[head] = false;
    vq->ninflight--;
}

/* Consumes the used entry at last_used. 0 or -EPROTO. */
static int consume(struct vgpu_fe *fe, unsigned int q, uint16_t *head, uint32_t *len)
{
    struct fe_vq *vq = get_vq(fe, q);
    const volatile struct vring_used_elem *e = &vq->used->ring[vq->last_used & (vq->num - 1)];
    uint32_t id = e->id;
    uint32_t l = e->len;

    vq->last_used++;
    if (fe_has_feature(fe, VIRTIO_RING_F_EVENT_IDX)) {
        /*
         * Ask for an interrupt at the next entry, then re-read used->idx: entries the device
         * published before it could see the new used_event were rightly not announced
         * (Linux's virtqueue_enable_cb_prepare + more_used).
         */
        store16(vq->used_event, vq->last_used);
        atomic_thread_fence(memory_order_seq_cst);
        vq->notified_used = load16(&vq->used->idx);
        atomic_thread_fence(memory_order_acquire);
    }
    if (id >= vq->num)
        return fe_fail(fe, -EPROTO, "queue %u: used id %u out of range (size %u)", q, id, vq->num);
    if (!vq->inflight[id])
        return fe_fail(fe, -EPROTO, "queue %u: used id %u was not in flight", q, id);
    release_chain(vq, (uint16_t)id);
    *head = (uint16_t)id;
    *len = l;
    return 0;
}

int vgpu_fe_vq_wait_used(struct vgpu_fe *fe, unsigned int q, int timeout_ms, uint16_t *head,
                         uint32_t *len)
{
    struct fe_vq *vq = get_vq(fe, q);
    int64_t deadline = fe_deadline(timeout_ms);

    if (vq->used == NULL)
        return fe_fail(fe, -EINVAL, "queue %u has no rings", q);
    for (;;) {
        uint16_t limit = fe->cfg.strict_notify ? vq->notified_used : load16(&vq->used->idx);
        if (vq->last_used != limit) {
            atomic_thread_fence(memory_order_acquire);
            return consume(fe, q, head, len);
        }
        struct pollfd pfd[3] = {
            {.fd = vq->call_fd, .events = POLLIN},
            {.fd = fe->sock, .events = POLLIN},
            {.fd = fe->cfg.serve_display ? fe->display_fd : -1, .events = POLLIN},
        };
        int left = fe_remaining(deadline);
        int r = left > 0 ? poll(pfd, 3, left) : 0;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return fe_fail(fe, -errno, "poll failed");
        if (r == 0) {
            uint16_t used_idx = load16(&vq->used->idx);
            if (fe->cfg.strict_notify && used_idx != vq->last_used)
                return fe_fail(fe, -ETIMEDOUT,
                               "queue %u: used idx %u, consumed %u, but no call notification "
                               "within %d ms (calls so far %u)",
                               q, used_idx, vq->last_used, timeout_ms, vq->calls);
            return fe_fail(fe, -ETIMEDOUT,
                           "queue %u: no used entry within %d ms (avail %u, used %u, calls %u)", q,
                           timeout_ms, vq->avail_idx, used_idx, vq->calls);
        }
        if (pfd[0].revents & POLLIN) {
            uint64_t v;
            if (read(vq->call_fd, &v, sizeof(v)) == (ssize_t)sizeof(v) && v > 0) {
                vq->calls++;
                vq->notified_used = load16(&vq->used->idx);
                atomic_thread_fence(memory_order_acquire);
            }
        }
        if (pfd[1].revents != 0) {
            uint8_t b;
            ssize_t n = recv(fe->sock, &b, 1, MSG_PEEK | MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                return fe_fail(fe, -ECONNRESET,
                               "queue %u: the back-end closed the connection while waiting", q);
            if (n > 0)
                return fe_fail(fe, -EPROTO, "queue %u: unexpected message on the socket", q);
        }
        if (pfd[2].revents != 0) {
            int s = vgpu_fe_display_serve(fe, fe->cfg.timeout_ms);
            if (s == -ECONNRESET || s == -EPIPE) {
                /* The back-end dropped its display socket (e.g. it was replaced by another
                 * GPU_SET_SOCKET): stop serving it, as QEMU would. */
                close(fe->display_fd);
                fe->display_fd = -1;
            } else if (s < 0) {
                return s;
            }
        }
    }
}

int vgpu_fe_cmd(struct vgpu_fe *fe, unsigned int q, const void *req, uint32_t req_len, void *resp,
                uint32_t resp_len, unsigned int flags, int timeout_ms, uint32_t *used_len)
{
    struct fe_vq *vq = get_vq(fe, q);
    uint64_t req_gpa = vq->scratch_gpa;
    uint64_t resp_gpa = vq->scratch_gpa + ((req_len + 63u) & ~63u);
    struct vgpu_fe_buf bufs[2];
    unsigned int n_in = resp_len > 0 ? 1 : 0;

    if ((uint64_t)req_len + 64u + resp_len > vq->scratch_size || req_len == 0)
        return fe_fail(fe, -E2BIG, "command of %u + %u bytes does not fit the scratch area",
                       req_len, resp_len);
    memcpy(vgpu_fe_gpa_ptr(fe, req_gpa, req_len), req, req_len);
    bufs[0] = (struct vgpu_fe_buf){.gpa = req_gpa, .len = req_len};
    if (n_in) {
        /* Poison, so a response that claims more than it wrote is visible. */
        memset(vgpu_fe_gpa_ptr(fe, resp_gpa, resp_len), 0xa5, resp_len);
        bufs[1] = (struct vgpu_fe_buf){.gpa = resp_gpa, .len = resp_len};
    }
    int head = vgpu_fe_vq_post(fe, q, bufs, 1, n_in, flags);
    if (head < 0)
        return head;
    uint16_t got = 0;
    uint32_t len = 0;
    int r = vgpu_fe_vq_wait_used(fe, q, timeout_ms, &got, &len);
    if (r < 0)
        return r;
    if (got != head)
        return fe_fail(fe, -EPROTO, "queue %u: used head %u, expected %d", q, got, head);
    if (len > resp_len)
        return fe_fail(fe, -EPROTO, "queue %u: used len %u over the %u writable bytes", q, len,
                       resp_len);
    if (used_len != NULL)
        *used_len = len;
    if (resp_len > 0)
        memcpy(resp, vgpu_fe_gpa_ptr(fe, resp_gpa, resp_len), resp_len);
    return 0;
}

struct vring_desc *vgpu_fe_vq_desc(const struct vgpu_fe *fe, unsigned int q)
{
    return get_vq(fe, q)->desc;
}

struct vring_avail *vgpu_fe_vq_avail(const struct vgpu_fe *fe, unsigned int q)
{
    return get_vq(fe, q)->avail;
}

struct vring_used *vgpu_fe_vq_used(const struct vgpu_fe *fe, unsigned int q)
{
    return get_vq(fe, q)->used;
}

void vgpu_fe_vq_addrs(const struct vgpu_fe *fe, unsigned int q, uint64_t *desc, uint64_t *avail,
                      uint64_t *used)
{
    const struct fe_vq *vq = get_vq(fe, q);

    if (desc != NULL)
        *desc = vq->desc_gpa;
    if (avail != NULL)
        *avail = vq->avail_gpa;
    if (used != NULL)
        *used = vq->used_gpa;
}

int vgpu_fe_vq_alloc_desc(struct vgpu_fe *fe, unsigned int q)
{
    struct fe_vq *vq = get_vq(fe, q);

    if (vq->desc == NULL)
        return fe_fail(fe, -EINVAL, "queue %u has no rings", q);
    if (vq->nfree == 0)
        return fe_fail(fe, -ENOSPC, "queue %u: no free descriptor", q);
    uint16_t i = take_desc(vq);
    memset(&vq->desc[i], 0, sizeof(vq->desc[i]));
    return i;
}

void vgpu_fe_vq_free_desc(struct vgpu_fe *fe, unsigned int q, uint16_t idx)
{
    struct fe_vq *vq = get_vq(fe, q);

    if (idx < vq->num && vq->nfree < vq->num)
        vq->free_list[vq->nfree++] = idx;
}

void vgpu_fe_vq_set_avail_idx(struct vgpu_fe *fe, unsigned int q, uint16_t idx)
{
    struct fe_vq *vq = get_vq(fe, q);

    atomic_thread_fence(memory_order_release);
    vq->avail_idx = idx;
    store16(&vq->avail->idx, idx);
}

uint16_t vgpu_fe_vq_avail_idx(const struct vgpu_fe *fe, unsigned int q)
{
    return get_vq(fe, q)->avail_idx;
}

uint16_t vgpu_fe_vq_used_idx(const struct vgpu_fe *fe, unsigned int q)
{
    return load16(&get_vq(fe, q)->used->idx);
}

int vgpu_fe_vq_reset(struct vgpu_fe *fe, unsigned int q)
{
    if (q >= VGPU_FE_NUM_QUEUES)
        return fe_fail(fe, -EINVAL, "no queue %u", q);
    return fe_vq_setup_rings(fe, q);
}

int vgpu_fe_vq_kick_fd(const struct vgpu_fe *fe, unsigned int q)
{
    return get_vq(fe, q)->kick_fd;
}

int vgpu_fe_vq_call_fd(const struct vgpu_fe *fe, unsigned int q)
{
    return get_vq(fe, q)->call_fd;
}
