/* SPDX-License-Identifier: MIT */
#ifndef VGPU_UTIL_SPSC_H
#define VGPU_UTIL_SPSC_H

#include <stdbool.h>

/*
 * Lock-free single-producer single-consumer ring of non-NULL pointers, the queue between the
 * reactor and the render thread (DESIGN.md). Exactly one thread may push and exactly one
 * (possibly other) thread may pop/peek at any time; neither side ever blocks or allocates.
 * A successful push publishes everything the producer wrote before it (release) to the
 * consumer that pops the item (acquire), so an item's pointee may be handed over whole.
 *
 * Waking the other side is not the queue's business: pair it with an eventfd or uv_async_t.
 */

#define VGPU_SPSC_MAX_CAPACITY (1u << 31)

struct vgpu_spsc;

/*
 * Allocates an empty ring with room for exactly capacity items. capacity must be a power of
 * two in [2, VGPU_SPSC_MAX_CAPACITY]. Returns NULL on a bad capacity or allocation failure.
 * Any thread; hand the ring to the two sides before they start (e.g. before pthread_create).
 */
struct vgpu_spsc *vgpu_spsc_create(unsigned int capacity);

/*
 * Frees the ring. NULL is a no-op. Items still queued are not freed: drain them first if they
 * own memory. Call once neither side uses the ring any more (after joining the threads).
 */
void vgpu_spsc_destroy(struct vgpu_spsc *q);

/*
 * Appends item. Producer thread only. item must not be NULL (NULL means "empty" to pop); a NULL
 * item is a caller bug, asserted in debug builds and rejected with false otherwise.
 * Returns true if queued (ownership of *item passes to the consumer), false if the ring is full
 * (nothing changes; the producer still owns item).
 */
bool vgpu_spsc_push(struct vgpu_spsc *q, void *item);

/* Removes and returns the oldest item, or NULL if empty. Consumer thread only. */
void *vgpu_spsc_pop(struct vgpu_spsc *q);

/*
 * Returns the oldest item without removing it, or NULL if empty. Consumer thread only; the
 * item stays owned by the queue until popped (the producer will not touch it).
 */
void *vgpu_spsc_peek(struct vgpu_spsc *q);

/* The capacity given to create. Any thread. */
unsigned int vgpu_spsc_capacity(const struct vgpu_spsc *q);

/*
 * True if the ring held no items at the moment of the call. Either side. A snapshot: for the
 * consumer, false means the next pop succeeds; for the producer, true means every item pushed
 * so far has been popped.
 */
bool vgpu_spsc_is_empty(struct vgpu_spsc *q);

/*
 * Number of pushes that will succeed right now. Producer thread only. Exact lower bound: the
 * consumer can only free more slots meanwhile, never fewer.
 */
unsigned int vgpu_spsc_free_slots(struct vgpu_spsc *q);

#endif
