/* SPDX-License-Identifier: MIT */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/virtio_ring.h>

#include "virtio/guest_mem.h"
#include "virtio/vring.h"

/*
 * Guest RAM: one 2 MiB memfd exposed as two 1 MiB regions at guest-physical 0 and 1 MiB
 * (file offsets equal to guest-physical addresses), with unrelated user addresses so that the
 * ring translation (uva) and the buffer translation (gpa) are told apart. The test maps the
 * memfd itself and plays the driver on that view.
 */
#define MiB (1024ull * 1024ull)
#define RAM_SIZE (2 * MiB)
#define UVA_LO 0x7f0000000000ull
#define UVA_HI 0x7e0000000000ull

#define DESC_GPA 0x1000ull
#define DATA_GPA 0x40000ull  /* buffers go here */
#define TABLE_GPA 0x80000ull /* indirect tables go here */

struct drv {
    int fd;
    uint8_t *ram;
    struct vgpu_guest_mem *mem;
    struct vgpu_vring *vr;
    unsigned int num;
    uint64_t desc_gpa, avail_gpa, used_gpa;
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    uint16_t avail_idx; /* driver's shadow of avail->idx */
    struct vgpu_chain chain;
};

static uint64_t gpa_to_uva(uint64_t gpa)
{
    return gpa < MiB ? UVA_LO + gpa : UVA_HI + (gpa - MiB);
}

static void *ram_at(struct drv *d, uint64_t gpa)
{
    return d->ram + gpa;
}

/* Where the device sees guest address gpa (its own mapping of the same memfd). */
static void *host_at(struct drv *d, uint64_t gpa)
{
    void *p = vgpu_guest_mem_gpa_ptr(d->mem, gpa, 1);
    assert_non_null(p);
    return p;
}

/* Guest memory and a configured (not started) ring of num entries at DESC_GPA. */
static struct drv *drv_new(unsigned int num, bool event_idx)
{
    struct drv *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    d->fd = memfd_create("test_vring", MFD_CLOEXEC);
    assert_true(d->fd >= 0);
    assert_int_equal(ftruncate(d->fd, (off_t)RAM_SIZE), 0);
    d->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, d->fd, 0);
    assert_true(d->ram != MAP_FAILED);

    d->mem = vgpu_guest_mem_create();
    assert_non_null(d->mem);
    struct vgpu_mem_region lo = {.gpa = 0, .size = MiB, .uva = UVA_LO, .mmap_offset = 0};
    struct vgpu_mem_region hi = {.gpa = MiB, .size = MiB, .uva = UVA_HI, .mmap_offset = MiB};
    assert_int_equal(vgpu_guest_mem_add(d->mem, &lo, dup(d->fd)), 0);
    assert_int_equal(vgpu_guest_mem_add(d->mem, &hi, dup(d->fd)), 0);

    d->num = num;
    d->desc_gpa = DESC_GPA;
    d->avail_gpa = d->desc_gpa + 16ull * num;
    d->used_gpa = (d->avail_gpa + 6 + 2ull * num + 4095) & ~4095ull;
    d->desc = ram_at(d, d->desc_gpa);
    d->avail = ram_at(d, d->avail_gpa);
    d->used = ram_at(d, d->used_gpa);

    d->vr = vgpu_vring_create(d->mem);
    assert_non_null(d->vr);
    assert_int_equal(vgpu_vring_set_num(d->vr, num), 0);
    assert_int_equal(vgpu_vring_set_addr(d->vr, gpa_to_uva(d->desc_gpa), gpa_to_uva(d->avail_gpa),
                                         gpa_to_uva(d->used_gpa)),
                     0);
    vgpu_vring_set_event_idx(d->vr, event_idx);
    vgpu_chain_init(&d->chain);
    return d;
}

static struct drv *drv_start(unsigned int num, bool event_idx)
{
    struct drv *d = drv_new(num, event_idx);
    assert_int_equal(vgpu_vring_start(d->vr), 0);
    assert_false(vgpu_vring_is_broken(d->vr));
    return d;
}

static void drv_free(struct drv *d)
{
    vgpu_chain_finish(&d->chain);
    vgpu_vring_destroy(d->vr);
    vgpu_guest_mem_destroy(d->mem);
    munmap(d->ram, RAM_SIZE);
    close(d->fd);
    free(d);
}

static void set_desc(struct vring_desc *table, unsigned int i, uint64_t addr, uint32_t len,
                     uint16_t flags, uint16_t next)
{
    table[i].addr = htole64(addr);
    table[i].len = htole32(len);
    table[i].flags = htole16(flags);
    table[i].next = htole16(next);
}

/* Offers head to the device, as a driver does: entry first, then the index. */
static void publish(struct drv *d, uint16_t head)
{
    d->avail->ring[d->avail_idx % d->num] = htole16(head);
    d->avail_idx++;
    __atomic_store_n(&d->avail->idx, htole16(d->avail_idx), __ATOMIC_RELEASE);
}

static uint16_t used_idx(struct drv *d)
{
    return le16toh(__atomic_load_n(&d->used->idx, __ATOMIC_ACQUIRE));
}

/* The u16 after the used ring entries. */
static __virtio16 *avail_event_ptr(struct drv *d)
{
    return ram_at(d, d->used_gpa + 4 + 8ull * d->num);
}

static uint16_t avail_event(struct drv *d)
{
    return le16toh(*avail_event_ptr(d));
}

static void set_used_event(struct drv *d, uint16_t v)
{
    d->avail->ring[d->num] = htole16(v);
}

/* A good two-descriptor chain (readable 16 bytes, writable 32) at descriptors a and b. */
static void good_chain(struct drv *d, uint16_t a, uint16_t b)
{
    set_desc(d->desc, a, DATA_GPA, 16, VRING_DESC_F_NEXT, b);
    set_desc(d->desc, b, DATA_GPA + 0x100, 32, VRING_DESC_F_WRITE, 0);
}

static void pop_good(struct drv *d, uint16_t head)
{
    assert_int_equal(vgpu_vring_pop(d->vr, &d->chain), 0);
    assert_int_equal(d->chain.head, head);
}

/* ---- tests ---- */

static void test_simple_chain(void **state)
{
    struct drv *d = drv_start(8, false);

    assert_int_equal(vgpu_vring_pop(d->vr, &d->chain), -EAGAIN);

    memcpy(ram_at(d, DATA_GPA), "request", 7);
    set_desc(d->desc, 3, DATA_GPA, 100, VRING_DESC_F_NEXT, 5);
    set_desc(d->desc, 5, DATA_GPA + 0x1000, 200, VRING_DESC_F_WRITE, 0);
    publish(d, 3);

    assert_int_equal(vgpu_vring_pop(d->vr, &d->chain), 0);
    assert_int_equal(d->chain.head, 3);
    assert_int_equal(d->chain.out_num, 1);
    assert_int_equal(d->chain.in_num, 1);
    assert_int_equal(d->chain.out_bytes, 100);
    assert_int_equal(d->chain.in_bytes, 200);
    const struct iovec *iov = vgpu_chain_iov_const(&d->chain);
    assert_ptr_equal(iov, d->chain.inline_iov);
    assert_ptr_equal(iov[0].iov_base, host_at(d, DATA_GPA));
    assert_int_equal(iov[0].iov_len, 100);
    assert_memory_equal(iov[0].iov_base, "request", 7);
    assert_ptr_equal(iov[1].iov_base, host_at(d, DATA_GPA + 0x1000));
    assert_int_equal(iov[1].iov_len, 200);
    assert_int_equal(vgpu_vring_inflight(d->vr), 1);
    assert_int_equal(vgpu_vring_get_base(d->vr), 1);

    assert_int_equal(vgpu_vring_pop(d->vr, &d->chain), -EAGAIN);

    memcpy(vgpu_chain_iov(&d->chain)[1].iov_base, "reply", 5);
    vgpu_vring_push(d->vr, 3, 5);
    assert_int_equal(used_idx(d), 1);
    assert_int_equal(le32toh(d->used->ring[0].id), 3);
    assert_int_equal(le32toh(d->used->ring[0].len), 5);
    assert_memory_equal(ram_at(d, DATA_GPA + 0x1000), "reply", 5);
    assert_int_equal(vgpu_vring_inflight(d->vr), 0);

    assert_true(vgpu_vring_need_notify(d->vr));
    /* Nothing pushed since: no notification. */
    assert_false(vgpu_vring_need_notify(d->vr));

    /* inflight never goes below zero. */
    vgpu_vring_push(d->vr, 3, 0);
    assert_int_equal(vgpu_vring_inflight(d->vr), 0);
    assert_int_equal(used_idx(d), 2);

    drv_free(d);
}

static void test_zero_length_and_write_only(void **state)
{
    struct drv *d = drv_start(8, false);

    /* A zero-length descriptor contributes nothing, whatever its address. */
    set_desc(d->desc, 0, 0xdead00000000ull, 0, VRING_DESC_F_NEXT, 1);
    set_desc(d->desc, 1, DATA_GPA, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
    set_desc(d->desc, 2, DATA_GPA + 8, 8, VRING_DESC_F_WRITE, 0);
    publish(d, 0);
    pop_good(d, 0);
    assert_int_equal(d->chain.out_num, 0);
    assert_int_equal(d->chain.in_num, 2);
    assert_int_equal(d->chain.in_bytes, 16);
    vgpu_vring_push(d->vr, 0, 16);

    drv_free(d);
}

static void test_indirect(void **state)
{
    struct drv *d = drv_start(8, false);
    struct vring_desc *table = ram_at(d, TABLE_GPA);

    /* Walked by next, not in table order: 0 → 2 → 1. */
    set_desc(table, 0, DATA_GPA + 0x100, 32, VRING_DESC_F_NEXT, 2);
    set_desc(table, 2, DATA_GPA, 16, VRING_DESC_F_NEXT, 1);
    set_desc(table, 1, DATA_GPA + 0x200, 64, VRING_DESC_F_WRITE, 0);
    /* The WRITE flag on the descriptor pointing to the table is ignored. */
    set_desc(d->desc, 5, TABLE_GPA, 48, VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE, 0);
    publish(d, 5);
    pop_good(d, 5);
    assert_int_equal(d->chain.out_num, 2);
    assert_int_equal(d->chain.in_num, 1);
    assert_int_equal(d->chain.out_bytes, 48);
    assert_int_equal(d->chain.in_bytes, 64);
    assert_ptr_equal(vgpu_chain_iov(&d->chain)[0].iov_base, host_at(d, DATA_GPA + 0x100));
    assert_ptr_equal(vgpu_chain_iov(&d->chain)[1].iov_base, host_at(d, DATA_GPA));
    assert_ptr_equal(vgpu_chain_iov(&d->chain)[2].iov_base, host_at(d, DATA_GPA + 0x200));
    assert_int_equal(vgpu_chain_iov(&d->chain)[2].iov_len, 64);
    vgpu_vring_push(d->vr, 5, 64);

    /* Direct readable descriptors may precede the indirect one. */
    set_desc(table, 0, DATA_GPA + 0x100, 32, VRING_DESC_F_NEXT, 1);
    set_desc(d->desc, 1, DATA_GPA, 16, VRING_DESC_F_NEXT, 2);
    set_desc(d->desc, 2, TABLE_GPA, 32, VRING_DESC_F_INDIRECT, 0);
    publish(d, 1);
    pop_good(d, 1);
    assert_int_equal(d->chain.out_num, 2);
    assert_int_equal(d->chain.in_num, 1);
    assert_int_equal(d->chain.out_bytes, 48);
    assert_int_equal(d->chain.in_bytes, 64);
    vgpu_vring_push(d->vr, 1, 0);
    assert_int_equal(used_idx(d), 2);

    drv_free(d);
}

static void test_cross_region(void **state)
{
    struct drv *d = drv_start(8, false);

    /* A buffer straddling the two regions becomes two iovecs of one descriptor. */
    set_desc(d->desc, 0, MiB - 8, 24, VRING_DESC_F_WRITE, 0);
    publish(d, 0);
    pop_good(d, 0);
    assert_int_equal(d->chain.in_num, 2);
    assert_int_equal(d->chain.in_bytes, 24);
    assert_int_equal(vgpu_chain_iov(&d->chain)[0].iov_len, 8);
    assert_int_equal(vgpu_chain_iov(&d->chain)[1].iov_len, 16);
    assert_ptr_equal(vgpu_chain_iov(&d->chain)[1].iov_base, host_at(d, MiB));
    vgpu_vring_push(d->vr, 0, 0);

    /* An indirect table straddling the regions (descriptor 1 split 8/8). */
    struct vring_desc *table = ram_at(d, MiB - 24);
    set_desc(table, 0, DATA_GPA, 4, VRING_DESC_F_NEXT, 1);
    set_desc(table, 1, DATA_GPA + 0x10, 8, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
    set_desc(table, 2, DATA_GPA + 0x20, 12, VRING_DESC_F_WRITE, 0);
    set_desc(d->desc, 1, MiB - 24, 48, VRING_DESC_F_INDIRECT, 0);
    publish(d, 1);
    pop_good(d, 1);
    assert_int_equal(d->chain.out_num, 1);
    assert_int_equal(d->chain.in_num, 2);
    assert_int_equal(d->chain.out_bytes, 4);
    assert_int_equal(d->chain.in_bytes, 20);
    vgpu_vring_push(d->vr, 1, 0);

    drv_free(d);
}

static void test_event_idx(void **state)
{
    struct drv *d = drv_start(8, true);

    /* Empty: the device asks for a kick at the current index. */
    assert_int_equal(vgpu_vring_pop(d->vr, &d->chain), -EAGAIN);
    assert_int_equal(avail_event(d), 0);

    good_chain(d, 0, 1);
    publish(d, 0);
    good_chain(d, 2, 3);
    publish(d, 2);
    pop_good(d, 0);
    pop_good(d, 2);
    assert_int_equal(vgpu_vring_pop(d->vr, &d->chain), -EAGAIN);
    assert_int_equal(avail_event(d), 2);

    /* The driver wants an interrupt once entry 0 is used; the first check always fires. */
    set_used_event(d, 0);
    vgpu_vring_push(d->vr, 0, 1);
    assert_true(vgpu_vring_need_notify(d->vr));
    /* used_event still 0: the driver has not re-armed, so no interrupt for entry 1. */
    vgpu_vring_push(d->vr, 2, 1);
    assert_false(vgpu_vring_need_notify(d->vr));

    /* Re-armed for entry 2: pushing it crosses the event. */
    set_used_event(d, 2);
    good_chain(d, 4, 5);
    publish(d, 4);
    pop_good(d, 4);
    vgpu_vring_push(d->vr, 4, 1);
    assert_true(vgpu_vring_need_notify(d->vr));

    /* Event far ahead (the driver wants one interrupt after five more): batch of two, none. */
    set_used_event(d, 7);
    for (uint16_t h = 0; h < 2; h++) {
        good_chain(d, (uint16_t)(2 * h), (uint16_t)(2 * h + 1));
        publish(d, (uint16_t)(2 * h));
        pop_good(d, (uint16_t)(2 * h));
        vgpu_vring_push(d->vr, (uint16_t)(2 * h), 0);
    }
    assert_false(vgpu_vring_need_notify(d->vr));
    /* NO_INTERRUPT is ignored under EVENT_IDX: the used_event crossing alone decides. */
    d->avail->flags = htole16(VRING_AVAIL_F_NO_INTERRUPT);
    set_used_event(d, 5);
    for (uint16_t h = 0; h < 3; h++) {
        good_chain(d, (uint16_t)(2 * h), (uint16_t)(2 * h + 1));
        publish(d, (uint16_t)(2 * h));
        pop_good(d, (uint16_t)(2 * h));
        vgpu_vring_push(d->vr, (uint16_t)(2 * h), 0);
    }
    /* used went 5 → 8 and crossed 5. */
    assert_int_equal(used_idx(d), 8);
    assert_true(vgpu_vring_need_notify(d->vr));
    assert_false(vgpu_vring_need_notify(d->vr));

    assert_int_equal(vgpu_vring_pop(d->vr, &d->chain), -EAGAIN);
    assert_int_equal(avail_event(d), 8);

    drv_free(d);
}

static void test_no_interrupt(void **state)
{
    struct drv *d = drv_start(8, false);

    d->avail->flags = htole16(VRING_AVAIL_F_NO_INTERRUPT);
    good_chain(d, 0, 1);
    publish(d, 0);
    pop_good(d, 0);
    vgpu_vring_push(d->vr, 0, 0);
    assert_false(vgpu_vring_need_notify(d->vr));

    d->avail->flags = 0;
    publish(d, 0);
    pop_good(d, 0);
    vgpu_vring_push(d->vr, 0, 0);
    assert_true(vgpu_vring_need_notify(d->vr));

    /* Without EVENT_IDX the device never writes avail_event. */
    *avail_event_ptr(d) = htole16(0x1234);
    assert_int_equal(vgpu_vring_pop(d->vr, &d->chain), -EAGAIN);
    assert_int_equal(avail_event(d), 0x1234);

    drv_free(d);
}

static void test_wrap_around(void **state)
{
    struct drv *d = drv_new(4, true);

    /* Resume near the 16-bit wrap: indices as a driver would have them after 65532 chains. */
    d->avail_idx = 65532;
    d->avail->idx = htole16(65532);
    d->used->idx = htole16(65532);
    assert_int_equal(vgpu_vring_set_base(d->vr, 65532), 0);
    assert_int_equal(vgpu_vring_start(d->vr), 0);

    good_chain(d, 0, 1);
    good_chain(d, 2, 3);
    /* used_event per round, and whether pushing two entries crosses it. */
    static const struct {
        uint16_t used_event;
        bool notify;
    } rounds[] = {
        {65532, true},  /* 65532 → 65534: first check after start always notifies */
        {65535, true},  /* 65534 → 0 crosses 65535 across the wrap */
        {65535, false}, /* 0 → 2: already past it */
        {3, true},      /* 2 → 4 crosses 3 */
    };
    for (unsigned int r = 0; r < sizeof(rounds) / sizeof(rounds[0]); r++) {
        publish(d, 0);
        publish(d, 2);
        pop_good(d, 0);
        pop_good(d, 2);
        assert_int_equal(vgpu_vring_pop(d->vr, &d->chain), -EAGAIN);
        assert_int_equal(avail_event(d), d->avail_idx);
        set_used_event(d, rounds[r].used_event);
        vgpu_vring_push(d->vr, 2, 20);
        vgpu_vring_push(d->vr, 0, 10);
        assert_false(vgpu_vring_is_broken(d->vr));
        assert_int_equal(vgpu_vring_need_notify(d->vr), rounds[r].notify);
    }
    assert_int_equal(vgpu_vring_get_base(d->vr), 4);
    assert_int_equal(used_idx(d), 4);
    /* Used index 3 went to slot 3 % 4 and holds the last push of the last round. */
    assert_int_equal(le32toh(d->used->ring[3].id), 0);
    assert_int_equal(le32toh(d->used->ring[3].len), 10);
    assert_int_equal(le32toh(d->used->ring[2].id), 2);
    assert_int_equal(le32toh(d->used->ring[2].len), 20);

    drv_free(d);
}

/* A bad chain: pop says -EINVAL with the head, the ring carries on with the next chain. */
static void expect_bad_then_good(struct drv *d, uint16_t bad_head)
{
    /* The good chain uses the last two descriptors, which no bad case touches. */
    uint16_t good = (uint16_t)(d->num - 2);
    good_chain(d, good, (uint16_t)(d->num - 1));
    publish(d, bad_head);
    publish(d, good);

    unsigned int before = vgpu_vring_inflight(d->vr);
    assert_int_equal(vgpu_vring_pop(d->vr, &d->chain), -EINVAL);
    assert_int_equal(d->chain.head, bad_head);
    assert_int_equal(d->chain.out_num + d->chain.in_num, 0);
    assert_int_equal(vgpu_vring_inflight(d->vr), before + 1);
    assert_false(vgpu_vring_is_broken(d->vr));
    vgpu_vring_push(d->vr, bad_head, 0);

    pop_good(d, good);
    assert_int_equal(d->chain.out_bytes, 16);
    assert_int_equal(d->chain.in_bytes, 32);
    vgpu_vring_push(d->vr, good, 32);
    assert_int_equal(vgpu_vring_inflight(d->vr), before);
    assert_int_equal(used_idx(d), d->avail_idx);
}

static void test_bad_chains(void **state)
{
    struct drv *d = drv_start(8, false);
    struct vring_desc *table = ram_at(d, TABLE_GPA);
    const uint16_t N = VRING_DESC_F_NEXT, W = VRING_DESC_F_WRITE, I = VRING_DESC_F_INDIRECT;

    /* Self loop. */
    set_desc(d->desc, 0, DATA_GPA, 16, N, 0);
    expect_bad_then_good(d, 0);
    /* A cycle through six descriptors: walked until longer than the queue. */
    for (uint16_t i = 0; i < 6; i++)
        set_desc(d->desc, i, DATA_GPA, 16, N, (uint16_t)((i + 1) % 6));
    expect_bad_then_good(d, 2);
    /* next out of range. */
    set_desc(d->desc, 0, DATA_GPA, 16, N, 8);
    expect_bad_then_good(d, 0);
    set_desc(d->desc, 0, DATA_GPA, 16, N, 0xffff);
    expect_bad_then_good(d, 0);
    /* Outside guest memory: unmapped, running past the end, and wrapping around. */
    set_desc(d->desc, 0, 0x100000000ull, 16, 0, 0);
    expect_bad_then_good(d, 0);
    set_desc(d->desc, 0, DATA_GPA, 16, N, 1);
    set_desc(d->desc, 1, 2 * MiB - 8, 16, W, 0);
    expect_bad_then_good(d, 0);
    set_desc(d->desc, 0, UINT64_MAX - 4, 16, 0, 0);
    expect_bad_then_good(d, 0);
    /* Readable after writable. */
    set_desc(d->desc, 0, DATA_GPA, 16, W | N, 1);
    set_desc(d->desc, 1, DATA_GPA, 16, N, 2);
    set_desc(d->desc, 2, DATA_GPA, 16, W, 0);
    expect_bad_then_good(d, 0);
    /* INDIRECT together with NEXT. */
    set_desc(table, 0, DATA_GPA, 16, 0, 0);
    set_desc(d->desc, 0, TABLE_GPA, 16, I | N, 1);
    set_desc(d->desc, 1, DATA_GPA, 16, 0, 0);
    expect_bad_then_good(d, 0);
    /* Indirect table lengths: not a multiple of 16, zero, too large. */
    set_desc(d->desc, 0, TABLE_GPA, 24, I, 0);
    expect_bad_then_good(d, 0);
    set_desc(d->desc, 0, TABLE_GPA, 0, I, 0);
    expect_bad_then_good(d, 0);
    set_desc(d->desc, 0, TABLE_GPA, (VGPU_VRING_MAX_SIZE + 1) * 16, I, 0);
    expect_bad_then_good(d, 0);
    /* Indirect table outside guest memory, or partly. */
    set_desc(d->desc, 0, 0x100000000ull, 32, I, 0);
    expect_bad_then_good(d, 0);
    set_desc(d->desc, 0, 2 * MiB - 16, 32, I, 0);
    expect_bad_then_good(d, 0);
    /* Nested indirect. */
    set_desc(table, 0, DATA_GPA, 16, N, 1);
    set_desc(table, 1, TABLE_GPA + 0x100, 16, I, 0);
    set_desc(d->desc, 0, TABLE_GPA, 32, I, 0);
    expect_bad_then_good(d, 0);
    /* Loop inside the table, and next beyond the table (but below the queue size). */
    set_desc(table, 0, DATA_GPA, 16, N, 1);
    set_desc(table, 1, DATA_GPA, 16, N, 0);
    expect_bad_then_good(d, 0);
    set_desc(table, 1, DATA_GPA, 16, N, 2);
    expect_bad_then_good(d, 0);
    /* next == entries on the second step, before the loop bound could catch it. */
    set_desc(table, 0, DATA_GPA, 16, N, 3);
    set_desc(table, 3, DATA_GPA, 16, 0, 0); /* just past the table: must not be read */
    set_desc(d->desc, 0, TABLE_GPA, 48, I, 0);
    expect_bad_then_good(d, 0);
    /* Readable after writable across the main chain and the table. */
    set_desc(table, 0, DATA_GPA, 16, 0, 0);
    set_desc(d->desc, 0, DATA_GPA, 16, W | N, 1);
    set_desc(d->desc, 1, TABLE_GPA, 16, I, 0);
    expect_bad_then_good(d, 0);
    /* A buffer outside memory inside the table. */
    set_desc(table, 0, 0x100000000ull, 16, 0, 0);
    set_desc(d->desc, 0, TABLE_GPA, 16, I, 0);
    expect_bad_then_good(d, 0);

    drv_free(d);
}

/*
 * next == num must be refused, not followed: desc[num] lies just past the table, where this
 * layout puts the avail ring. The driver arranges the avail ring so that its first 16 bytes
 * read as a valid descriptor (addr DATA_GPA, len 16), so following the bad index would pop a
 * good-looking chain instead of failing.
 */
static void test_next_equal_num(void **state)
{
    struct drv *d = drv_start(8, false);
    assert_int_equal(d->avail_gpa, d->desc_gpa + 16 * 8);

    set_desc(d->desc, 0, DATA_GPA, 16, VRING_DESC_F_NEXT, 8);
    static const uint16_t ring[6] = {0, 0, 16, 0, 0, 0};
    for (unsigned int i = 0; i < 6; i++)
        d->avail->ring[i] = htole16(ring[i]);
    d->avail->flags = 0;
    /* addr = flags | idx << 16 | ring[0] << 32 | ring[1] << 48 = 0x40000 = DATA_GPA. */
    assert_int_equal(DATA_GPA, 4ull << 16);
    __atomic_store_n(&d->avail->idx, htole16(4), __ATOMIC_RELEASE);

    assert_int_equal(vgpu_vring_pop(d->vr, &d->chain), -EINVAL);
    assert_int_equal(d->chain.head, 0);

    drv_free(d);
}

static void test_ring_corrupt(void **state)
{
    struct drv *d = drv_start(8, false);

    /* The avail index jumps by more than the queue size. */
    good_chain(d, 0, 1);
    publish(d, 0);
    pop_good(d, 0);
    vgpu_vring_push(d->vr, 0, 0);
    d->avail_idx = (uint16_t)(d->avail_idx + 9);
    d->avail->idx = htole16(d->avail_idx);
    assert_int_equal(vgpu_vring_pop(d->vr, &d->chain), -EPROTO);
    assert_true(vgpu_vring_is_broken(d->vr));
    /* It stays broken even once the index looks sane again. */
    d->avail_idx = 1;
    d->avail->idx = htole16(1);
    assert_int_equal(vgpu_vring_pop(d->vr, &d->chain), -EPROTO);
    /* No used-ring writes and no notification while broken. */
    vgpu_vring_push(d->vr, 0, 0);
    assert_int_equal(used_idx(d), 1);
    assert_false(vgpu_vring_need_notify(d->vr));

    /* GET_VRING_BASE, SET_VRING_BASE, start: working again. */
    vgpu_vring_stop(d->vr);
    assert_int_equal(vgpu_vring_set_base(d->vr, 1), 0);
    assert_false(vgpu_vring_is_broken(d->vr));
    assert_int_equal(vgpu_vring_start(d->vr), 0);
    assert_int_equal(vgpu_vring_pop(d->vr, &d->chain), -EAGAIN);
    publish(d, 0);
    pop_good(d, 0);
    vgpu_vring_push(d->vr, 0, 0);
    assert_int_equal(used_idx(d), 2);

    /* A head beyond the queue. */
    d->avail->ring[d->avail_idx % d->num] = htole16(8);
    d->avail_idx++;
    d->avail->idx = htole16(d->avail_idx);
    assert_int_equal(vgpu_vring_pop(d->vr, &d->chain), -EPROTO);
    assert_true(vgpu_vring_is_broken(d->vr));
    assert_int_equal(vgpu_vring_get_base(d->vr), 2);

    /* Reset recovers too (with a full reconfiguration). */
    vgpu_vring_reset(d->vr);
    assert_false(vgpu_vring_is_broken(d->vr));
    assert_false(vgpu_vring_is_started(d->vr));
    assert_int_equal(vgpu_vring_get_num(d->vr), 0);
    assert_int_equal(vgpu_vring_get_base(d->vr), 0);
    assert_int_equal(vgpu_vring_inflight(d->vr), 0);
    assert_int_equal(vgpu_vring_start(d->vr), -EINVAL);
    assert_int_equal(vgpu_vring_set_num(d->vr, 8), 0);
    assert_int_equal(vgpu_vring_set_addr(d->vr, gpa_to_uva(d->desc_gpa), gpa_to_uva(d->avail_gpa),
                                         gpa_to_uva(d->used_gpa)),
                     0);
    assert_int_equal(vgpu_vring_set_base(d->vr, d->avail_idx), 0);
    assert_int_equal(vgpu_vring_start(d->vr), 0);
    publish(d, 0);
    pop_good(d, 0);
    vgpu_vring_push(d->vr, 0, 0);
    assert_int_equal(used_idx(d), 3);

    drv_free(d);
}

static void test_start_and_remap(void **state)
{
    struct drv *d = drv_new(8, false);
    struct vgpu_vring *vr = vgpu_vring_create(d->mem);

    /* Not configured. */
    assert_int_equal(vgpu_vring_start(vr), -EINVAL);
    assert_int_equal(vgpu_vring_set_num(vr, 8), 0);
    assert_int_equal(vgpu_vring_start(vr), -EINVAL);

    /* Ring addresses not mapped: desc unmapped; used running off the end of a region. */
    assert_int_equal(
        vgpu_vring_set_addr(vr, 0x1000, gpa_to_uva(d->avail_gpa), gpa_to_uva(d->used_gpa)), 0);
    assert_int_equal(vgpu_vring_start(vr), -EFAULT);
    assert_true(vgpu_vring_is_broken(vr));
    assert_false(vgpu_vring_is_started(vr));
    assert_int_equal(vgpu_vring_pop(vr, &d->chain), -EPROTO);
    assert_int_equal(vgpu_vring_set_addr(vr, gpa_to_uva(d->desc_gpa), gpa_to_uva(d->avail_gpa),
                                         UVA_LO + MiB - 64),
                     0);
    assert_int_equal(vgpu_vring_start(vr), -EFAULT);
    assert_true(vgpu_vring_is_broken(vr));
    vgpu_vring_destroy(vr);
    vgpu_vring_destroy(NULL);

    /* A started ring whose memory goes away faults on remap, and recovers on a good one. */
    d->used->idx = htole16(7);
    assert_int_equal(vgpu_vring_start(d->vr), 0);
    assert_int_equal(vgpu_vring_remap(d->vr), 0);
    struct vgpu_mem_region lo = {.gpa = 0, .size = MiB, .uva = UVA_LO, .mmap_offset = 0};
    assert_int_equal(vgpu_guest_mem_remove(d->mem, &lo), 0);
    assert_int_equal(vgpu_vring_remap(d->vr), -EFAULT);
    assert_true(vgpu_vring_is_broken(d->vr));
    assert_int_equal(vgpu_vring_pop(d->vr, &d->chain), -EPROTO);
    vgpu_vring_push(d->vr, 0, 0); /* must not touch the unmapped ring */
    assert_int_equal(vgpu_guest_mem_add(d->mem, &lo, dup(d->fd)), 0);
    assert_int_equal(vgpu_vring_remap(d->vr), 0);
    assert_false(vgpu_vring_is_broken(d->vr));

    /* start read the used index from the ring. */
    d->avail_idx = 0;
    good_chain(d, 0, 1);
    publish(d, 0);
    pop_good(d, 0);
    vgpu_vring_push(d->vr, 0, 0);
    assert_int_equal(used_idx(d), 8);
    assert_int_equal(le32toh(d->used->ring[7].id), 0);

    drv_free(d);
}

static void test_config_checks(void **state)
{
    struct drv *d = drv_new(8, false);
    struct vgpu_vring *vr = d->vr;

    assert_int_equal(vgpu_vring_set_num(vr, 0), -EINVAL);
    assert_int_equal(vgpu_vring_set_num(vr, 3), -EINVAL);
    assert_int_equal(vgpu_vring_set_num(vr, 24), -EINVAL);
    assert_int_equal(vgpu_vring_set_num(vr, 65536), -EINVAL);
    assert_int_equal(vgpu_vring_set_num(vr, 32769), -EINVAL);
    assert_int_equal(vgpu_vring_get_num(vr), 8);
    assert_int_equal(vgpu_vring_set_num(vr, 32768), 0);
    assert_int_equal(vgpu_vring_get_num(vr), 32768);
    assert_int_equal(vgpu_vring_set_num(vr, 1), 0);
    assert_int_equal(vgpu_vring_set_num(vr, 8), 0);

    uint64_t desc = gpa_to_uva(d->desc_gpa), avail = gpa_to_uva(d->avail_gpa);
    uint64_t used = gpa_to_uva(d->used_gpa);
    assert_int_equal(vgpu_vring_set_addr(vr, desc + 8, avail, used), -EINVAL);
    assert_int_equal(vgpu_vring_set_addr(vr, desc, avail + 1, used), -EINVAL);
    assert_int_equal(vgpu_vring_set_addr(vr, desc, avail, used + 2), -EINVAL);
    assert_int_equal(vgpu_vring_set_addr(vr, desc, avail + 2, used), 0);
    assert_int_equal(vgpu_vring_set_addr(vr, desc, avail, used), 0);

    assert_int_equal(vgpu_vring_start(vr), 0);
    assert_true(vgpu_vring_is_started(vr));
    assert_int_equal(vgpu_vring_set_num(vr, 16), -EBUSY);
    assert_int_equal(vgpu_vring_set_addr(vr, desc, avail, used), -EBUSY);
    assert_int_equal(vgpu_vring_set_base(vr, 5), -EBUSY);
    assert_int_equal(vgpu_vring_get_num(vr), 8);
    assert_int_equal(vgpu_vring_get_base(vr), 0);

    /* Stop keeps the base (GET_VRING_BASE reads it) and allows reconfiguration. */
    good_chain(d, 0, 1);
    publish(d, 0);
    pop_good(d, 0);
    vgpu_vring_stop(vr);
    assert_false(vgpu_vring_is_started(vr));
    assert_int_equal(vgpu_vring_get_base(vr), 1);
    assert_int_equal(vgpu_vring_pop(vr, &d->chain), -EAGAIN);
    assert_int_equal(vgpu_vring_set_num(vr, 16), 0);

    drv_free(d);
}

static void test_heap_growth(void **state)
{
    struct drv *d = drv_start(32, false);

    /* 20 descriptors: 10 readable, 10 writable, more than the inline storage. */
    for (uint16_t i = 0; i < 20; i++) {
        uint16_t flags =
            (uint16_t)((i >= 10 ? VRING_DESC_F_WRITE : 0) | (i < 19 ? VRING_DESC_F_NEXT : 0));
        set_desc(d->desc, i, DATA_GPA + 0x100ull * i, 8 + i, flags, (uint16_t)(i + 1));
    }
    publish(d, 0);
    pop_good(d, 0);
    assert_int_equal(d->chain.out_num, 10);
    assert_int_equal(d->chain.in_num, 10);
    assert_true(d->chain.cap >= 20);
    assert_non_null(d->chain.heap_iov);
    assert_ptr_equal(vgpu_chain_iov(&d->chain), d->chain.heap_iov);
    for (unsigned int i = 0; i < 20; i++) {
        assert_ptr_equal(vgpu_chain_iov(&d->chain)[i].iov_base,
                         host_at(d, DATA_GPA + 0x100ull * i));
        assert_int_equal(vgpu_chain_iov(&d->chain)[i].iov_len, 8 + i);
    }
    vgpu_vring_push(d->vr, 0, 0);

    /* A following small chain reuses the storage. */
    good_chain(d, 20, 21);
    publish(d, 20);
    pop_good(d, 20);
    assert_int_equal(d->chain.out_num + d->chain.in_num, 2);
    vgpu_vring_push(d->vr, 20, 0);

    /* finish frees the heap array (LeakSanitizer checks) and leaves an empty chain. */
    vgpu_chain_finish(&d->chain);
    assert_null(d->chain.heap_iov);
    assert_int_equal(d->chain.cap, 0);
    assert_ptr_equal(vgpu_chain_iov(&d->chain), d->chain.inline_iov);

    /* A 1000-entry indirect table grows it again. */
    struct vring_desc *table = ram_at(d, TABLE_GPA);
    for (uint16_t i = 0; i < 1000; i++)
        set_desc(table, i, DATA_GPA + i, 1, i < 999 ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
    set_desc(d->desc, 3, TABLE_GPA, 1000 * 16, VRING_DESC_F_INDIRECT, 0);
    publish(d, 3);
    pop_good(d, 3);
    assert_int_equal(d->chain.out_num, 1000);
    assert_int_equal(d->chain.out_bytes, 1000);
    assert_true(d->chain.cap >= 1000);
    assert_ptr_equal(vgpu_chain_iov(&d->chain)[999].iov_base, host_at(d, DATA_GPA + 999));
    vgpu_vring_push(d->vr, 3, 0);

    drv_free(d);
}

static void test_too_many_iovecs(void **state)
{
    struct drv *d = drv_start(8, false);

    /*
     * A full-size indirect table whose every buffer straddles the region boundary needs
     * 2 * 32768 iovecs, plus one for a direct descriptor in front: one more than the cap.
     */
    const uint64_t table_gpa = 0x100000 + 0x40000; /* 512 KiB table in the high region */
    struct vring_desc *table = ram_at(d, table_gpa);
    for (unsigned int i = 0; i < VGPU_VRING_MAX_SIZE; i++)
        set_desc(table, i, MiB - 1, 2, i + 1 < VGPU_VRING_MAX_SIZE ? VRING_DESC_F_NEXT : 0,
                 (uint16_t)(i + 1));
    set_desc(d->desc, 0, DATA_GPA, 4, VRING_DESC_F_NEXT, 1);
    set_desc(d->desc, 1, table_gpa, VGPU_VRING_MAX_SIZE * 16, VRING_DESC_F_INDIRECT, 0);
    expect_bad_then_good(d, 0);

    /* Without the direct descriptor it is exactly at the cap, and fine. */
    set_desc(d->desc, 2, table_gpa, VGPU_VRING_MAX_SIZE * 16, VRING_DESC_F_INDIRECT, 0);
    publish(d, 2);
    pop_good(d, 2);
    assert_int_equal(d->chain.out_num, VGPU_CHAIN_MAX_IOV);
    assert_int_equal(d->chain.out_bytes, 2ull * VGPU_VRING_MAX_SIZE);
    vgpu_vring_push(d->vr, 2, 0);

    drv_free(d);
}

/* The chain struct carries its own storage: a copy made after pop owns the heap array. */
static void test_chain_copy(void **state)
{
    struct drv *d = drv_start(16, false);
    for (uint16_t i = 0; i < 12; i++)
        set_desc(d->desc, i, DATA_GPA + i, 1, i < 11 ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
    publish(d, 0);
    pop_good(d, 0);
    struct vgpu_chain copy = d->chain;
    vgpu_chain_init(&d->chain);
    assert_int_equal(copy.out_num, 12);
    assert_ptr_equal(vgpu_chain_iov(&copy)[11].iov_base, host_at(d, DATA_GPA + 11));
    vgpu_vring_push(d->vr, copy.head, 0);
    vgpu_chain_finish(&copy);

    /* Inline chains copy too: the iov pointer follows the copy. */
    good_chain(d, 0, 1);
    publish(d, 0);
    pop_good(d, 0);
    struct vgpu_chain small = d->chain;
    assert_ptr_equal(vgpu_chain_iov(&small), small.inline_iov);
    assert_ptr_equal(vgpu_chain_iov(&small)[0].iov_base, host_at(d, DATA_GPA));
    vgpu_vring_push(d->vr, 0, 0);

    drv_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_chain),    cmocka_unit_test(test_zero_length_and_write_only),
        cmocka_unit_test(test_indirect),        cmocka_unit_test(test_cross_region),
        cmocka_unit_test(test_event_idx),       cmocka_unit_test(test_no_interrupt),
        cmocka_unit_test(test_wrap_around),     cmocka_unit_test(test_bad_chains),
        cmocka_unit_test(test_next_equal_num),  cmocka_unit_test(test_ring_corrupt),
        cmocka_unit_test(test_start_and_remap), cmocka_unit_test(test_config_checks),
        cmocka_unit_test(test_heap_growth),     cmocka_unit_test(test_too_many_iovecs),
        cmocka_unit_test(test_chain_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
