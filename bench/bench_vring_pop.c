/* SPDX-License-Identifier: MIT */
/*
 * bench_vring_pop: how long the device side spends per descriptor chain. A single thread plays
 * the driver (bumps avail->idx over pre-filled ring entries) and the device (pop + push), so
 * the figure is the ring logic itself: index loads, barriers, descriptor copies, guest-memory
 * translation and the used-ring publish, without cache-line ping-pong between cores.
 *
 * Output: "name: value unit" lines. --quick runs briefly (CI keeps the benchmark working).
 */
#include <endian.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/virtio_ring.h>

#include "virtio/guest_mem.h"
#include "virtio/vring.h"

#define RAM_SIZE (1u << 20)
#define RAM_UVA 0x7f0000000000ull
#define QUEUE_SIZE 256u
#define DESC_GPA 0x1000ull
#define AVAIL_GPA (DESC_GPA + 16ull * QUEUE_SIZE)
#define USED_GPA 0x3000ull
#define TABLE_GPA 0x8000ull
#define DATA_GPA 0x10000ull
#define INDIRECT_ENTRIES 4u

struct bench {
    uint8_t *ram;
    struct vgpu_guest_mem *mem;
    struct vgpu_vring *vr;
    struct vring_avail *avail;
    uint16_t avail_idx;
};

static void set_desc(struct vring_desc *d, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    d->addr = htole64(addr);
    d->len = htole32(len);
    d->flags = htole16(flags);
    d->next = htole16(next);
}

static int bench_init(struct bench *b)
{
    int fd = memfd_create("bench_vring_pop", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, RAM_SIZE) < 0) {
        perror("memfd");
        return -1;
    }
    b->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (b->ram == MAP_FAILED) {
        perror("mmap");
        close(fd);
        return -1;
    }
    b->mem = vgpu_guest_mem_create();
    struct vgpu_mem_region r = {.gpa = 0, .size = RAM_SIZE, .uva = RAM_UVA, .mmap_offset = 0};
    if (!b->mem || vgpu_guest_mem_add(b->mem, &r, fd) < 0) {
        fprintf(stderr, "guest memory setup failed\n");
        return -1;
    }

    struct vring_desc *desc = (struct vring_desc *)(void *)(b->ram + DESC_GPA);
    /* Head 0: request (readable) + response (writable), like a virtio-gpu control command. */
    set_desc(&desc[0], DATA_GPA, 64, VRING_DESC_F_NEXT, 1);
    set_desc(&desc[1], DATA_GPA + 0x1000, 64, VRING_DESC_F_WRITE, 0);
    /* Head 2: one indirect descriptor, two readable and two writable entries in the table. */
    struct vring_desc *table = (struct vring_desc *)(void *)(b->ram + TABLE_GPA);
    for (unsigned int i = 0; i < INDIRECT_ENTRIES; i++) {
        uint16_t flags = i + 1 < INDIRECT_ENTRIES ? VRING_DESC_F_NEXT : 0;
        if (i >= INDIRECT_ENTRIES / 2)
            flags |= VRING_DESC_F_WRITE;
        set_desc(&table[i], DATA_GPA + 0x100ull * i, 64, flags, (uint16_t)(i + 1));
    }
    set_desc(&desc[2], TABLE_GPA, INDIRECT_ENTRIES * 16, VRING_DESC_F_INDIRECT, 0);

    b->avail = (struct vring_avail *)(void *)(b->ram + AVAIL_GPA);
    b->vr = vgpu_vring_create(b->mem);
    if (!b->vr || vgpu_vring_set_num(b->vr, QUEUE_SIZE) < 0 ||
        vgpu_vring_set_addr(b->vr, RAM_UVA + DESC_GPA, RAM_UVA + AVAIL_GPA, RAM_UVA + USED_GPA) <
            0 ||
        vgpu_vring_start(b->vr) < 0) {
        fprintf(stderr, "vring setup failed\n");
        return -1;
    }
    return 0;
}

static void bench_finish(struct bench *b)
{
    vgpu_vring_destroy(b->vr);
    vgpu_guest_mem_destroy(b->mem);
    munmap(b->ram, RAM_SIZE);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ns per pop + push of the chain at head, or a negative value on failure. */
static double run(struct bench *b, uint16_t head, unsigned long iterations)
{
    /* Every ring slot offers the same chain, so the driver only has to bump the index. */
    for (unsigned int i = 0; i < QUEUE_SIZE; i++)
        b->avail->ring[i] = htole16(head);

    struct vgpu_chain chain;
    vgpu_chain_init(&chain);
    double start = now_ns();
    for (unsigned long i = 0; i < iterations; i++) {
        b->avail_idx++;
        __atomic_store_n(&b->avail->idx, htole16(b->avail_idx), __ATOMIC_RELEASE);
        int ret = vgpu_vring_pop(b->vr, &chain);
        if (ret < 0) {
            fprintf(stderr, "pop failed: %d\n", ret);
            vgpu_chain_finish(&chain);
            return -1;
        }
        vgpu_vring_push(b->vr, chain.head, (uint32_t)chain.in_bytes);
    }
    double elapsed = now_ns() - start;
    vgpu_chain_finish(&chain);
    return elapsed / (double)iterations;
}

int main(int argc, char **argv)
{
    unsigned long iterations = 5000000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            iterations = 100000;
        } else {
            fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
            return 2;
        }
    }

    struct bench b;
    memset(&b, 0, sizeof(b));
    if (bench_init(&b) < 0)
        return 1;

    /* A short warm-up so page faults and cold caches stay out of the figures. */
    if (run(&b, 0, iterations / 10 + 1) < 0)
        return 1;
    double direct = run(&b, 0, iterations);
    double indirect = run(&b, 2, iterations);
    bench_finish(&b);
    if (direct < 0 || indirect < 0)
        return 1;

    printf("vring_pop_push_2desc: %.1f ns/chain\n", direct);
    printf("vring_pop_push_indirect%u: %.1f ns/chain\n", INDIRECT_ENTRIES, indirect);
    return 0;
}
