/* SPDX-License-Identifier: MIT */
#ifndef VGPU_VIRTIO_VRING_H
#define VGPU_VIRTIO_VRING_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "virtio/guest_mem.h"

/*
 * A split virtqueue (virtio 1.2 section 2.7), device side. Pure memory logic: no fds, no
 * threads. The owner (vu_dev) keeps the kick/call eventfds and asks vgpu_vring_need_notify()
 * whether to signal.
 *
 * Threading: reactor thread only.
 */

#define VGPU_VRING_MAX_SIZE 32768u
#define VGPU_CHAIN_INLINE_IOV 8u
/* Upper bound on iovecs in one chain (descriptors plus splits at region boundaries). */
#define VGPU_CHAIN_MAX_IOV 65536u

/*
 * One popped descriptor chain. iov[0..out_num) are device-readable, iov[out_num..out_num+in_num)
 * device-writable. The struct may be copied by value (it never points into itself); whoever
 * holds the last copy calls vgpu_chain_finish().
 */
struct vgpu_chain {
    uint16_t head;            /* index of the head descriptor: what push() returns */
    unsigned int out_num;     /* readable iovecs */
    unsigned int in_num;      /* writable iovecs */
    uint64_t out_bytes;       /* sum of readable lengths */
    uint64_t in_bytes;        /* sum of writable lengths */
    unsigned int cap;         /* capacity of heap_iov (0: inline storage in use) */
    struct iovec *heap_iov;   /* used once more than VGPU_CHAIN_INLINE_IOV are needed */
    struct iovec inline_iov[VGPU_CHAIN_INLINE_IOV];
};

void vgpu_chain_init(struct vgpu_chain *c);
void vgpu_chain_finish(struct vgpu_chain *c);
/* The iovec array of the chain (inline or heap). */
struct iovec *vgpu_chain_iov(struct vgpu_chain *c);
const struct iovec *vgpu_chain_iov_const(const struct vgpu_chain *c);

struct vgpu_vring;

/* mem is not owned and must outlive the ring. Returns NULL on allocation failure. */
struct vgpu_vring *vgpu_vring_create(struct vgpu_guest_mem *mem);
/* NULL is a no-op. */
void vgpu_vring_destroy(struct vgpu_vring *vr);

/* Back to the initial state: stopped, no size, no addresses, base 0, not broken. */
void vgpu_vring_reset(struct vgpu_vring *vr);

/* num must be a power of two in 1..VGPU_VRING_MAX_SIZE. -EINVAL, or -EBUSY while started. */
int vgpu_vring_set_num(struct vgpu_vring *vr, unsigned int num);
unsigned int vgpu_vring_get_num(const struct vgpu_vring *vr);

/*
 * Front-end user addresses of the three parts. Checks alignment (desc 16, avail 2, used 4):
 * -EINVAL. -EBUSY while started. Translation happens at start and on remap.
 */
int vgpu_vring_set_addr(struct vgpu_vring *vr, uint64_t desc_uva, uint64_t avail_uva,
                        uint64_t used_uva);

/* Next avail index to process. -EBUSY while started. */
int vgpu_vring_set_base(struct vgpu_vring *vr, uint16_t last_avail_idx);
uint16_t vgpu_vring_get_base(const struct vgpu_vring *vr);

/* VIRTIO_RING_F_EVENT_IDX negotiated or not. */
void vgpu_vring_set_event_idx(struct vgpu_vring *vr, bool on);

/*
 * Translates the addresses through guest memory and starts processing. Reads the used index
 * from the used ring. Returns 0, -EINVAL (size or addresses not set), -EFAULT (a part is not
 * inside one mapped region: the ring is marked broken).
 */
int vgpu_vring_start(struct vgpu_vring *vr);
/* Stops processing (GET_VRING_BASE). Pointers are dropped. */
void vgpu_vring_stop(struct vgpu_vring *vr);
bool vgpu_vring_is_started(const struct vgpu_vring *vr);

/* Re-translates the ring after the memory table changed. -EFAULT marks the ring broken. */
int vgpu_vring_remap(struct vgpu_vring *vr);

/* A ring whose indices are corrupt is broken: pop returns -EPROTO until reset or set_base. */
bool vgpu_vring_is_broken(const struct vgpu_vring *vr);

/*
 * Pops the next available chain into out (which must have been initialised; its previous
 * iovecs are discarded).
 *   0        a chain: out->head, iovecs, byte counts filled
 *   -EAGAIN  nothing available, or not started (with EVENT_IDX, avail_event is updated and
 *            re-checked before this is returned, so no kick is lost)
 *   -EINVAL  a bad chain (loop, too long, outside guest memory, bad indirect table, readable
 *            after writable): out->head is valid and the caller must push it back (len 0);
 *            the ring keeps working
 *   -EPROTO  the ring itself is corrupt (avail index jumped by more than num, head >= num):
 *            the ring is now broken
 * Every reason is logged once with vgpu_warn.
 */
int vgpu_vring_pop(struct vgpu_vring *vr, struct vgpu_chain *out);

/* Returns chain head to the used ring with len bytes written. Publishes the used index
 * (release ordering: the entry is visible before the index). */
void vgpu_vring_push(struct vgpu_vring *vr, uint16_t head, uint32_t len);

/*
 * Whether the driver wants an interrupt for what was pushed since the last call
 * (EVENT_IDX: used_event; else VRING_AVAIL_F_NO_INTERRUPT). Full barrier inside.
 * Call once per batch; true means "write the call eventfd".
 */
bool vgpu_vring_need_notify(struct vgpu_vring *vr);

/* Chains popped and not yet pushed. */
unsigned int vgpu_vring_inflight(const struct vgpu_vring *vr);

#endif
