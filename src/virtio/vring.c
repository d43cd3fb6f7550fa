/* SPDX-License-Identifier: MIT */
#include "virtio/vring.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_ring.h>

#include "util/log.h"
#include "virtio/iov.h"

/* Largest indirect table: the spec bounds a chain by the queue size, and ours by 32768. */
#define INDIRECT_MAX_ENTRIES VGPU_VRING_MAX_SIZE

struct vgpu_vring {
    struct vgpu_guest_mem *mem;
    unsigned int num; /* 0: not set; else a power of two */

    bool addr_set;
    uint64_t desc_uva;
    uint64_t avail_uva;
    uint64_t used_uva;

    /* Host views of the three parts; valid only while started and not faulted. */
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    __virtio16 *avail_event; /* after the used entries: used->ring[num] */

    uint16_t last_avail_idx; /* next avail entry we will consume */
    uint16_t used_idx;       /* our copy of used->idx (we are its only writer) */
    uint16_t signalled_used; /* used_idx when need_notify last ran */
    bool signalled_valid;    /* signalled_used means something (false: notify regardless) */
    bool pushed;             /* push() since the last need_notify() */

    bool started;
    bool event_idx;
    bool corrupt; /* the guest corrupted the ring indices: -EPROTO until set_base/reset */
    bool fault;   /* a ring part is not mapped: cleared by a successful start/remap */

    unsigned int inflight;
};

/* A descriptor as we use it: host endian, copied out of guest memory exactly once. */
struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

/* ---- chains ---- */

void vgpu_chain_init(struct vgpu_chain *c)
{
    memset(c, 0, sizeof(*c));
}

void vgpu_chain_finish(struct vgpu_chain *c)
{
    free(c->heap_iov);
    vgpu_chain_init(c);
}

struct iovec *vgpu_chain_iov(struct vgpu_chain *c)
{
    return c->cap ? c->heap_iov : c->inline_iov;
}

const struct iovec *vgpu_chain_iov_const(const struct vgpu_chain *c)
{
    return c->cap ? c->heap_iov : c->inline_iov;
}

static unsigned int chain_capacity(const struct vgpu_chain *c)
{
    return c->cap ? c->cap : VGPU_CHAIN_INLINE_IOV;
}

/* Empties c but keeps its heap storage for reuse. */
static void chain_clear(struct vgpu_chain *c)
{
    c->out_num = 0;
    c->in_num = 0;
    c->out_bytes = 0;
    c->in_bytes = 0;
}

/* Doubles c's capacity (inline → heap), up to VGPU_CHAIN_MAX_IOV. */
static int chain_grow(struct vgpu_chain *c)
{
    unsigned int old = chain_capacity(c);
    if (old >= VGPU_CHAIN_MAX_IOV)
        return -ENOBUFS;
    unsigned int cap = old * 2 > VGPU_CHAIN_MAX_IOV ? VGPU_CHAIN_MAX_IOV : old * 2;
    struct iovec *iov = realloc(c->heap_iov, (size_t)cap * sizeof(*iov));
    if (!iov)
        return -ENOMEM;
    if (!c->cap)
        memcpy(iov, c->inline_iov, sizeof(c->inline_iov));
    c->heap_iov = iov;
    c->cap = cap;
    return 0;
}

/* ---- ring state ---- */

struct vgpu_vring *vgpu_vring_create(struct vgpu_guest_mem *mem)
{
    struct vgpu_vring *vr = calloc(1, sizeof(*vr));
    if (!vr)
        return NULL;
    vr->mem = mem;
    return vr;
}

void vgpu_vring_destroy(struct vgpu_vring *vr)
{
    free(vr);
}

void vgpu_vring_reset(struct vgpu_vring *vr)
{
    struct vgpu_guest_mem *mem = vr->mem;
    memset(vr, 0, sizeof(*vr));
    vr->mem = mem;
}

int vgpu_vring_set_num(struct vgpu_vring *vr, unsigned int num)
{
    if (vr->started)
        return -EBUSY;
    if (num == 0 || num > VGPU_VRING_MAX_SIZE || (num & (num - 1)) != 0) {
        vgpu_warn_guest("vring %p: queue size %u refused (power of two up to %u)", (void *)vr, num,
                        VGPU_VRING_MAX_SIZE);
        return -EINVAL;
    }
    vr->num = num;
    return 0;
}

unsigned int vgpu_vring_get_num(const struct vgpu_vring *vr)
{
    return vr->num;
}

int vgpu_vring_set_addr(struct vgpu_vring *vr, uint64_t desc_uva, uint64_t avail_uva,
                        uint64_t used_uva)
{
    if (vr->started)
        return -EBUSY;
    if (desc_uva % VRING_DESC_ALIGN_SIZE || avail_uva % VRING_AVAIL_ALIGN_SIZE ||
        used_uva % VRING_USED_ALIGN_SIZE) {
        vgpu_warn_guest("vring %p: misaligned ring address (desc 0x%" PRIx64 " avail 0x%" PRIx64
                        " used 0x%" PRIx64 ")",
                        (void *)vr, desc_uva, avail_uva, used_uva);
        return -EINVAL;
    }
    vr->desc_uva = desc_uva;
    vr->avail_uva = avail_uva;
    vr->used_uva = used_uva;
    vr->addr_set = true;
    return 0;
}

int vgpu_vring_set_base(struct vgpu_vring *vr, uint16_t last_avail_idx)
{
    if (vr->started)
        return -EBUSY;
    vr->last_avail_idx = last_avail_idx;
    vr->corrupt = false;
    return 0;
}

uint16_t vgpu_vring_get_base(const struct vgpu_vring *vr)
{
    return vr->last_avail_idx;
}

void vgpu_vring_set_event_idx(struct vgpu_vring *vr, bool on)
{
    vr->event_idx = on;
    vr->signalled_valid = false;
}

/* Looks up the three ring parts, including the event index words at their ends. */
static int translate(struct vgpu_vring *vr)
{
    uint64_t num = vr->num;
    void *desc = vgpu_guest_mem_uva_ptr(vr->mem, vr->desc_uva, 16 * num);
    void *avail = vgpu_guest_mem_uva_ptr(vr->mem, vr->avail_uva, 6 + 2 * num);
    void *used = vgpu_guest_mem_uva_ptr(vr->mem, vr->used_uva, 6 + 8 * num);

    const char *why = NULL;
    if (!desc || !avail || !used) {
        why = "not inside guest memory";
    } else if ((uintptr_t)desc % VRING_DESC_ALIGN_SIZE ||
               (uintptr_t)avail % VRING_AVAIL_ALIGN_SIZE ||
               (uintptr_t)used % VRING_USED_ALIGN_SIZE) {
        /*
         * set_addr checked the user addresses, but the host pointers keep that alignment only
         * if the front-end's region uva and mmap_offset agree modulo 16; a front-end that gets
         * this wrong must not make us do misaligned atomic accesses.
         */
        why = "misaligned in host memory";
    }
    if (why) {
        vgpu_warn_guest("vring %p: ring %s (desc 0x%" PRIx64 " avail 0x%" PRIx64 " used 0x%" PRIx64
                        ", size %u)",
                        (void *)vr, why, vr->desc_uva, vr->avail_uva, vr->used_uva, vr->num);
        vr->desc = NULL;
        vr->avail = NULL;
        vr->used = NULL;
        vr->avail_event = NULL;
        vr->fault = true;
        return -EFAULT;
    }
    vr->desc = desc;
    vr->avail = avail;
    vr->used = used;
    /* Computed from bytes: it is a __virtio16 in its own right, not part of a used entry. */
    vr->avail_event = (__virtio16 *)(void *)((uint8_t *)used + offsetof(struct vring_used, ring) +
                                             sizeof(struct vring_used_elem) * vr->num);
    vr->fault = false;
    return 0;
}

int vgpu_vring_start(struct vgpu_vring *vr)
{
    if (vr->num == 0 || !vr->addr_set)
        return -EINVAL;
    int ret = translate(vr);
    if (ret < 0)
        return ret;
    /* Resume where the used ring stands (reconnect, migration): we are its only writer. */
    vr->used_idx = le16toh(__atomic_load_n(&vr->used->idx, __ATOMIC_RELAXED));
    vr->signalled_valid = false;
    vr->pushed = false;
    vr->started = true;
    return 0;
}

void vgpu_vring_stop(struct vgpu_vring *vr)
{
    vr->started = false;
    vr->desc = NULL;
    vr->avail = NULL;
    vr->used = NULL;
    vr->avail_event = NULL;
}

bool vgpu_vring_is_started(const struct vgpu_vring *vr)
{
    return vr->started;
}

int vgpu_vring_remap(struct vgpu_vring *vr)
{
    if (!vr->started)
        return 0;
    return translate(vr);
}

bool vgpu_vring_is_broken(const struct vgpu_vring *vr)
{
    return vr->corrupt || vr->fault;
}

unsigned int vgpu_vring_inflight(const struct vgpu_vring *vr)
{
    return vr->inflight;
}

/* ---- pop ---- */

/*
 * Copies one 16-byte descriptor out of guest memory. The guest may rewrite it at any moment, so
 * it is read exactly once: every check and use afterwards looks at the copy (no TOCTOU). The
 * signal fence is a compiler-only barrier that keeps the compiler from replacing reads of the
 * copy with fresh reads of guest memory.
 */
static void desc_load(const void *src, struct desc *d)
{
    struct vring_desc raw;
    memcpy(&raw, src, sizeof(raw));
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    d->addr = le64toh(raw.addr);
    d->len = le32toh(raw.len);
    d->flags = le16toh(raw.flags);
    d->next = le16toh(raw.next);
}

/* Why a chain was refused; logged once by pop. */
struct walk {
    bool seen_write;
    const char *why;
};

static int chain_bad(struct walk *w, const char *why)
{
    w->why = why;
    return -EINVAL;
}

/* Adds the buffer of one (non-indirect) descriptor to c. */
static int add_buffer(struct vgpu_vring *vr, struct vgpu_chain *c, struct walk *w,
                      const struct desc *d)
{
    bool writable = d->flags & VRING_DESC_F_WRITE;

    if (!writable && w->seen_write)
        return chain_bad(w, "device-readable descriptor after a device-writable one");
    if (writable)
        w->seen_write = true;
    if (d->len == 0)
        return 0;

    unsigned int start = c->out_num + c->in_num;
    for (;;) {
        unsigned int n = start;
        int ret = vgpu_guest_mem_gpa_iov(vr->mem, d->addr, d->len, vgpu_chain_iov(c),
                                         chain_capacity(c), &n);
        if (ret == 0) {
            if (writable) {
                c->in_num += n - start;
                c->in_bytes += d->len;
            } else {
                c->out_num += n - start;
                c->out_bytes += d->len;
            }
            return 0;
        }
        if (ret == -EFAULT)
            return chain_bad(w, "descriptor outside guest memory");
        /* -ENOBUFS: n is unspecified, so retry this descriptor from start with more room. */
        ret = chain_grow(c);
        if (ret == -ENOBUFS)
            return chain_bad(w, "too many iovecs in chain");
        if (ret < 0)
            return chain_bad(w, "out of memory for chain iovecs");
    }
}

/* Walks the indirect table that descriptor ind points to. */
static int walk_indirect(struct vgpu_vring *vr, struct vgpu_chain *c, struct walk *w,
                         const struct desc *ind)
{
    if (ind->flags & VRING_DESC_F_NEXT)
        return chain_bad(w, "indirect descriptor with NEXT");
    if (ind->len == 0 || ind->len % sizeof(struct vring_desc) != 0 ||
        ind->len > INDIRECT_MAX_ENTRIES * sizeof(struct vring_desc))
        return chain_bad(w, "bad indirect table length");

    /*
     * The table may span regions: translate it once (at most one piece per region, so the
     * array cannot run out) and copy each descriptor out of the pieces.
     */
    struct iovec table[VGPU_GUEST_MEM_MAX_REGIONS];
    unsigned int pieces = 0;
    if (vgpu_guest_mem_gpa_iov(vr->mem, ind->addr, ind->len, table, VGPU_GUEST_MEM_MAX_REGIONS,
                               &pieces) < 0)
        return chain_bad(w, "indirect table outside guest memory");

    unsigned int entries = ind->len / sizeof(struct vring_desc);
    unsigned int i = 0;
    for (unsigned int count = 1;; count++) {
        if (count > entries)
            return chain_bad(w, "indirect chain loops or is longer than its table");

        struct desc d;
        size_t off = (size_t)i * sizeof(struct vring_desc);
        if (pieces == 1) {
            desc_load((const uint8_t *)table[0].iov_base + off, &d);
        } else {
            struct vring_desc raw;
            vgpu_iov_to_buf(table, pieces, off, &raw, sizeof(raw));
            desc_load(&raw, &d);
        }

        if (d.flags & VRING_DESC_F_INDIRECT)
            return chain_bad(w, "nested indirect descriptor");
        int ret = add_buffer(vr, c, w, &d);
        if (ret < 0)
            return ret;
        if (!(d.flags & VRING_DESC_F_NEXT))
            return 0;
        if (d.next >= entries)
            return chain_bad(w, "indirect next index out of range");
        i = d.next;
    }
}

static int walk_chain(struct vgpu_vring *vr, struct vgpu_chain *c, struct walk *w, uint16_t head)
{
    unsigned int i = head;
    for (unsigned int count = 1;; count++) {
        if (count > vr->num)
            return chain_bad(w, "descriptor chain loops or is longer than the queue");

        struct desc d;
        desc_load(&vr->desc[i], &d);

        if (d.flags & VRING_DESC_F_INDIRECT) {
            /* The table's own flags decide direction; WRITE on this descriptor is ignored. */
            return walk_indirect(vr, c, w, &d);
        }
        int ret = add_buffer(vr, c, w, &d);
        if (ret < 0)
            return ret;
        if (!(d.flags & VRING_DESC_F_NEXT))
            return 0;
        if (d.next >= vr->num)
            return chain_bad(w, "next index out of range");
        i = d.next;
    }
}

static uint16_t avail_idx_load(const struct vgpu_vring *vr)
{
    /* Relaxed: the acquire fence in pop orders the entries read after it. */
    return le16toh(__atomic_load_n(&vr->avail->idx, __ATOMIC_RELAXED));
}

static void ring_corrupt(struct vgpu_vring *vr, const char *why, unsigned int value)
{
    vgpu_warn_guest("vring %p: %s (%u, last_avail %u, size %u): ring broken", (void *)vr, why,
                    value, vr->last_avail_idx, vr->num);
    vr->corrupt = true;
}

int vgpu_vring_pop(struct vgpu_vring *vr, struct vgpu_chain *out)
{
    if (vgpu_vring_is_broken(vr))
        return -EPROTO;
    if (!vr->started)
        return -EAGAIN;

    chain_clear(out);

    uint16_t avail_idx = avail_idx_load(vr);
    if (avail_idx == vr->last_avail_idx) {
        if (!vr->event_idx)
            return -EAGAIN;
        /*
         * Ask for a kick at the next entry (avail_event lives after the used ring entries).
         * The full fence orders this store before the re-read of avail->idx below; it pairs
         * with the driver's full barrier between publishing avail->idx and reading
         * avail_event. Either the driver sees our avail_event and kicks, or we see its entry.
         */
        __atomic_store_n(vr->avail_event, htole16(vr->last_avail_idx), __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        avail_idx = avail_idx_load(vr);
        if (avail_idx == vr->last_avail_idx)
            return -EAGAIN;
    }

    uint16_t pending = (uint16_t)(avail_idx - vr->last_avail_idx);
    if (pending > vr->num) {
        ring_corrupt(vr, "avail index moved by more than the queue size", pending);
        return -EPROTO;
    }

    /*
     * Acquire: the driver wrote the ring entry and descriptors before its release/wmb of
     * avail->idx; reads of them must not be satisfied before our read of avail->idx.
     */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);

    uint16_t head = le16toh(
        __atomic_load_n(&vr->avail->ring[vr->last_avail_idx & (vr->num - 1)], __ATOMIC_RELAXED));
    if (head >= vr->num) {
        ring_corrupt(vr, "avail ring head out of range", head);
        return -EPROTO;
    }

    /* From here on the head is consumed whatever the chain holds: the caller pushes it back. */
    vr->last_avail_idx++;
    vr->inflight++;
    out->head = head;

    struct walk w = {.seen_write = false, .why = NULL};
    int ret = walk_chain(vr, out, &w, head);
    if (ret < 0) {
        vgpu_warn_guest("vring %p: head %u: bad chain: %s", (void *)vr, head, w.why);
        chain_clear(out);
        return -EINVAL;
    }
    return 0;
}

/* ---- push and notify ---- */

void vgpu_vring_push(struct vgpu_vring *vr, uint16_t head, uint32_t len)
{
    if (vr->inflight > 0)
        vr->inflight--;
    /* A broken or stopped ring is left alone (its memory may be gone or garbage). */
    if (!vr->started || vgpu_vring_is_broken(vr))
        return;
    if (head >= vr->num) {
        vgpu_warn_guest("vring %p: push of head %u out of range (size %u) ignored", (void *)vr,
                        head, vr->num);
        return;
    }

    struct vring_used_elem *e = &vr->used->ring[vr->used_idx & (vr->num - 1)];
    __atomic_store_n(&e->id, htole32(head), __ATOMIC_RELAXED);
    __atomic_store_n(&e->len, htole32(len), __ATOMIC_RELAXED);
    vr->used_idx++;
    /* Release: the entry above is visible to the driver before the index that covers it. */
    __atomic_store_n(&vr->used->idx, htole16(vr->used_idx), __ATOMIC_RELEASE);
    vr->pushed = true;
}

bool vgpu_vring_need_notify(struct vgpu_vring *vr)
{
    if (!vr->started || vgpu_vring_is_broken(vr) || !vr->pushed)
        return false;
    vr->pushed = false;

    /*
     * Full fence: our used->idx store must be visible before we read the driver's suppression
     * state; pairs with the driver's barrier between updating used_event/flags and re-reading
     * used->idx. Without it both sides could miss each other and the guest would sleep forever.
     */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);

    if (!vr->event_idx) {
        uint16_t flags = le16toh(__atomic_load_n(&vr->avail->flags, __ATOMIC_RELAXED));
        return !(flags & VRING_AVAIL_F_NO_INTERRUPT);
    }

    uint16_t used_event = le16toh(__atomic_load_n(&vr->avail->ring[vr->num], __ATOMIC_RELAXED));
    bool valid = vr->signalled_valid;
    uint16_t old = vr->signalled_used;
    uint16_t new_idx = vr->used_idx;
    vr->signalled_valid = true;
    vr->signalled_used = new_idx;
    /* Without a previous value (after start) we cannot tell what was crossed: notify. */
    return !valid || vring_need_event(used_event, new_idx, old);
}
