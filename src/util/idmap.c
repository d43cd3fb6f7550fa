/* SPDX-License-Identifier: MIT */
#include "util/idmap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

/*
 * An empty slot has id 0, which is why 0 can never be a key. Load stays at or below 1/2: linear
 * probing's expected probe count stays small (about 2.5 for a miss), and an empty slot always
 * exists, so probe loops need no bound other than finding one.
 */
struct entry {
    uint32_t id;
    void *value;
};

struct vgpu_idmap {
    struct entry *slots;
    unsigned int mask; /* capacity - 1; capacity is a power of two */
    unsigned int count;
    unsigned int max_entries;
    uint32_t seed;
};

#define MIN_CAPACITY 16u

/*
 * Chris Wellons' "lowbias32" integer hash: a bijection with good avalanche, so sequential ids
 * and ids differing only in high bits (i << 16, i << 24) spread over the low bits that index the
 * table. The seed is mixed in first so the slot of an id is not predictable from outside.
 */
static uint32_t hash(uint32_t x, uint32_t seed)
{
    x ^= seed;
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

static uint32_t random_seed(const void *salt)
{
    uint32_t seed;
    /* GRND_NONBLOCK: never stall start-up on an unseeded pool; the fallback is good enough to
     * spread ids, just not secret. */
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == (ssize_t)sizeof(seed))
        return seed;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)(uintptr_t)salt ^ (uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec;
}

/* The slot holding id, or the empty slot where it would go. */
static unsigned int probe(const struct entry *slots, unsigned int mask, uint32_t seed, uint32_t id)
{
    unsigned int i = hash(id, seed) & mask;
    while (slots[i].id != 0 && slots[i].id != id)
        i = (i + 1) & mask;
    return i;
}

struct vgpu_idmap *vgpu_idmap_create(unsigned int max_entries)
{
    if (max_entries == 0 || max_entries > VGPU_IDMAP_MAX_ENTRIES)
        return NULL;
    struct vgpu_idmap *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->slots = calloc(MIN_CAPACITY, sizeof(*m->slots));
    if (!m->slots) {
        free(m);
        return NULL;
    }
    m->mask = MIN_CAPACITY - 1;
    m->max_entries = max_entries;
    m->seed = random_seed(m);
    return m;
}

void vgpu_idmap_destroy(struct vgpu_idmap *m)
{
    if (!m)
        return;
    free(m->slots);
    free(m);
}

/* Doubles the table. The old table stays in use if allocation fails. */
static int grow(struct vgpu_idmap *m)
{
    unsigned int old_cap = m->mask + 1;
    unsigned int new_cap = old_cap * 2;
    struct entry *slots = calloc(new_cap, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    for (unsigned int i = 0; i < old_cap; i++) {
        if (m->slots[i].id == 0)
            continue;
        slots[probe(slots, new_cap - 1, m->seed, m->slots[i].id)] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->mask = new_cap - 1;
    return 0;
}

int vgpu_idmap_insert(struct vgpu_idmap *m, uint32_t id, void *value)
{
    if (id == 0 || !value)
        return -EINVAL;
    unsigned int i = probe(m->slots, m->mask, m->seed, id);
    if (m->slots[i].id == id)
        return -EEXIST;
    if (m->count >= m->max_entries)
        return -ENOSPC;
    /* count + 1 <= max_entries <= 2^30, so neither side overflows, and the table never
     * needs more than 2^31 slots. */
    if ((m->count + 1) * 2 > m->mask + 1) {
        int ret = grow(m);
        if (ret < 0)
            return ret;
        i = probe(m->slots, m->mask, m->seed, id);
    }
    m->slots[i].id = id;
    m->slots[i].value = value;
    m->count++;
    return 0;
}

void *vgpu_idmap_get(const struct vgpu_idmap *m, uint32_t id)
{
    if (id == 0)
        return NULL;
    /* Returns NULL for a miss too: an empty slot's value is NULL. */
    return m->slots[probe(m->slots, m->mask, m->seed, id)].value;
}

void *vgpu_idmap_remove(struct vgpu_idmap *m, uint32_t id)
{
    if (id == 0)
        return NULL;
    unsigned int mask = m->mask;
    unsigned int hole = probe(m->slots, mask, m->seed, id);
    if (m->slots[hole].id == 0)
        return NULL;
    void *value = m->slots[hole].value;
    m->count--;

    /*
     * Backward-shift deletion: walk the rest of the cluster and move back every entry whose
     * home slot is not cyclically inside (hole, j], i.e. whose probe path crosses the hole.
     * Afterwards no probe sequence runs through an empty slot before reaching its key.
     */
    for (;;) {
        m->slots[hole].id = 0;
        m->slots[hole].value = NULL;
        unsigned int j = hole;
        for (;;) {
            j = (j + 1) & mask;
            if (m->slots[j].id == 0)
                return value;
            unsigned int home = hash(m->slots[j].id, m->seed) & mask;
            /* Distance from home to j covers the hole: the entry may move into it. */
            if (((j - home) & mask) >= ((j - hole) & mask))
                break;
        }
        m->slots[hole] = m->slots[j];
        hole = j;
    }
}

unsigned int vgpu_idmap_count(const struct vgpu_idmap *m)
{
    return m->count;
}

void vgpu_idmap_foreach(const struct vgpu_idmap *m, void (*fn)(void *ctx, uint32_t id, void *value),
                        void *ctx)
{
    for (unsigned int i = 0; i <= m->mask; i++) {
        if (m->slots[i].id != 0)
            fn(ctx, m->slots[i].id, m->slots[i].value);
    }
}
