/* SPDX-License-Identifier: MIT */
#include "util/spsc.h"

#include <assert.h>
#include <limits.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * A lock that hid inside a "lock-free" atomic would make the reactor wait on the render thread,
 * which is what the ring exists to avoid (same check as virglrenderer's vkr_ring.h).
 */
static_assert(ATOMIC_INT_LOCK_FREE == 2, "vgpu_spsc needs lock-free atomic unsigned int");

#define CACHE_LINE 64

/*
 * head and tail are free-running counters (they wrap at 2^32, never masked in place); the slot
 * of index i is slots[i & mask]. tail - head is the fill level, which stays correct across the
 * wrap because capacity <= 2^31.
 *
 * Each index lives on its own cache line next to the owning side's cached copy of the other
 * index, so in the common case each side reads and writes only its own line plus the slots:
 * the other side's index is reloaded (one cache miss) only when the cache says full/empty.
 */
struct vgpu_spsc {
    /* Consumer's line: head written by the consumer only, read by the producer. */
    alignas(CACHE_LINE) atomic_uint head; /* next index to pop */
    unsigned int tail_cache;              /* consumer's last view of tail; <= tail */

    /* Producer's line: tail written by the producer only, read by the consumer. */
    alignas(CACHE_LINE) atomic_uint tail; /* next index to push */
    unsigned int head_cache;              /* producer's last view of head; <= head */

    /* Read-only after create. */
    alignas(CACHE_LINE) unsigned int mask;

    /* Own line(s), so slot writes do not bounce the read-only line above. */
    alignas(CACHE_LINE) void *slots[];
};

struct vgpu_spsc *vgpu_spsc_create(unsigned int capacity)
{
    if (capacity < 2 || capacity > VGPU_SPSC_MAX_CAPACITY || (capacity & (capacity - 1)) != 0)
        return NULL;
#if SIZE_MAX <= UINT_MAX
    /* Only a 32-bit size_t can overflow below (gcc rejects the check as dead code elsewhere). */
    if (capacity > (SIZE_MAX - sizeof(struct vgpu_spsc) - CACHE_LINE) / sizeof(void *))
        return NULL;
#endif

    /* aligned_alloc wants a multiple of the alignment. */
    size_t size = offsetof(struct vgpu_spsc, slots) + (size_t)capacity * sizeof(void *);
    size = (size + CACHE_LINE - 1) & ~(size_t)(CACHE_LINE - 1);
    struct vgpu_spsc *q = aligned_alloc(CACHE_LINE, size);
    if (!q)
        return NULL;

    /* Not yet shared: plain initialisation; the thread hand-off publishes it. */
    atomic_init(&q->head, 0);
    atomic_init(&q->tail, 0);
    q->tail_cache = 0;
    q->head_cache = 0;
    q->mask = capacity - 1;
    memset(q->slots, 0, (size_t)capacity * sizeof(void *));
    return q;
}

void vgpu_spsc_destroy(struct vgpu_spsc *q)
{
    free(q);
}

bool vgpu_spsc_push(struct vgpu_spsc *q, void *item)
{
    assert(item != NULL);
    if (!item)
        return false;

    /* Relaxed: tail is written only by this thread, so we always read our own last store. */
    unsigned int tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    if (tail - q->head_cache > q->mask) {
        /*
         * Looks full: refresh. Acquire pairs with the consumer's release store of head, so the
         * consumer's reads of the slots we are about to reuse happen before our overwrite.
         */
        q->head_cache = atomic_load_explicit(&q->head, memory_order_acquire);
        if (tail - q->head_cache > q->mask)
            return false;
    }
    q->slots[tail & q->mask] = item;
    /* Release: the slot write (and everything the producer did to *item) becomes visible to the
     * consumer that acquires this tail value. */
    atomic_store_explicit(&q->tail, tail + 1, memory_order_release);
    return true;
}

/* Consumer side: the index of the oldest item, or false if the ring is empty. */
static bool consumer_front(struct vgpu_spsc *q, unsigned int *head_out)
{
    /* Relaxed: head is written only by this thread. */
    unsigned int head = atomic_load_explicit(&q->head, memory_order_relaxed);
    if (head == q->tail_cache) {
        /* Looks empty: refresh. Acquire pairs with the producer's release store of tail, so the
         * slot (and the item's contents) written before it are visible to us. */
        q->tail_cache = atomic_load_explicit(&q->tail, memory_order_acquire);
        if (head == q->tail_cache)
            return false;
    }
    *head_out = head;
    return true;
}

void *vgpu_spsc_pop(struct vgpu_spsc *q)
{
    unsigned int head;
    if (!consumer_front(q, &head))
        return NULL;
    void *item = q->slots[head & q->mask];
    /* Release: our read of the slot happens before the producer (acquiring head) reuses it. */
    atomic_store_explicit(&q->head, head + 1, memory_order_release);
    return item;
}

void *vgpu_spsc_peek(struct vgpu_spsc *q)
{
    unsigned int head;
    if (!consumer_front(q, &head))
        return NULL;
    return q->slots[head & q->mask];
}

unsigned int vgpu_spsc_capacity(const struct vgpu_spsc *q)
{
    return q->mask + 1;
}

bool vgpu_spsc_is_empty(struct vgpu_spsc *q)
{
    /*
     * Either side may call this, so neither index can be treated as our own. Acquire on both
     * (free on x86, a fence elsewhere): a consumer that sees "not empty" may go on to read the
     * slot, and a producer that sees "empty" knows every pop, including the slot read, is
     * done. One of the two indices is always the caller's own and cannot move meanwhile, so
     * the load order does not matter.
     */
    unsigned int head = atomic_load_explicit(&q->head, memory_order_acquire);
    unsigned int tail = atomic_load_explicit(&q->tail, memory_order_acquire);
    return head == tail;
}

unsigned int vgpu_spsc_free_slots(struct vgpu_spsc *q)
{
    /* Relaxed own index; acquire on head for the same reason as in push. */
    unsigned int tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    q->head_cache = atomic_load_explicit(&q->head, memory_order_acquire);
    return q->mask + 1 - (tail - q->head_cache);
}
