/* SPDX-License-Identifier: MIT */
#ifndef VGPU_UTIL_IDMAP_H
#define VGPU_UTIL_IDMAP_H

#include <stdint.h>

/*
 * Map from a non-zero 32-bit id to a non-NULL pointer: virtio-gpu resource ids, context ids,
 * scanout-independent handles the guest chooses. Ids come from the guest, so they may be any
 * value, sequential or crafted to collide; every map has a hard entry cap so that a guest cannot
 * grow it without bound, and hashes with a per-map random seed so that colliding ids cannot be
 * precomputed. Open addressing with linear probing, backward-shift deletion (no tombstones, so
 * remove-heavy workloads do not degrade), at most half full; the table doubles as needed and
 * never shrinks (its size stays bounded by the cap).
 *
 * Threading: not thread-safe; one thread owns a map (in practice the reactor or the render
 * thread, never both).
 */

#define VGPU_IDMAP_MAX_ENTRIES (1u << 30)

struct vgpu_idmap;

/*
 * Returns an empty map that will hold at most max_entries entries (1..VGPU_IDMAP_MAX_ENTRIES),
 * or NULL if max_entries is out of range or allocation fails. Memory grows with the entries
 * actually inserted (16-byte slots on 64-bit hosts; 16 slots, or 2 to 4 per entry), so a full map
 * takes at most 64 bytes per allowed entry.
 */
struct vgpu_idmap *vgpu_idmap_create(unsigned int max_entries);

/* Frees the map. The values are not freed (the caller owns them). NULL is a no-op. */
void vgpu_idmap_destroy(struct vgpu_idmap *m);

/*
 * Maps id to value. The map stores the pointer; ownership of *value stays with the caller.
 * Returns 0; -EINVAL if id is 0 or value is NULL; -EEXIST if id is already present (the old
 * value stays); -ENOSPC if the map already holds max_entries entries; -ENOMEM if growing the
 * table failed. On any error the map is unchanged.
 */
int vgpu_idmap_insert(struct vgpu_idmap *m, uint32_t id, void *value);

/* Returns the value for id, or NULL if absent (always NULL for id 0). */
void *vgpu_idmap_get(const struct vgpu_idmap *m, uint32_t id);

/* Removes id and returns its value (now the caller's to dispose of), or NULL if absent. */
void *vgpu_idmap_remove(struct vgpu_idmap *m, uint32_t id);

/* Number of entries. */
unsigned int vgpu_idmap_count(const struct vgpu_idmap *m);

/*
 * Calls fn(ctx, id, value) once for every entry, in unspecified order. fn may not modify the
 * map (no insert or remove, not even of the current entry): collect ids first to delete.
 */
void vgpu_idmap_foreach(const struct vgpu_idmap *m, void (*fn)(void *ctx, uint32_t id, void *value),
                        void *ctx);

#endif
