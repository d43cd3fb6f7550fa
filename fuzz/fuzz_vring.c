/* SPDX-License-Identifier: MIT */
/*
 * fuzz_vring: the split virtqueue (src/virtio/vring.c) over guest memory the input fills:
 * descriptor table, avail ring, indirect tables, all of it. The ring's size (8..256), base
 * index, EVENT_IDX, the memory's region layout and the ring's placement come from a small
 * header; then the ring is popped until it is empty, broken or a bound is reached, each chain
 * pushed back, and every iovec checked to lie inside the mapped guest memory (ASan cannot see
 * past an mmap'ed region, so this is the check that matters).
 *
 * Input: u8 size (8 << (v % 6)), u8 flags, u16 base, u16 desc, u16 avail, u16 used offsets,
 * then up to 64 KiB of guest memory (the rest is zero).
 *   flags bit 0: EVENT_IDX; bits 1-2: region layout (one region; two halves; two halves
 *   mapped in swapped file order; three regions with a hole in guest-physical space);
 *   bit 3: ring offsets as given (may be outside memory or misaligned) instead of the
 *   default layout (desc at 0, avail and used after it); bit 4: stop, remap and pop again.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/virtio_ring.h>

#include "harness.h"
#include "virtio/guest_mem.h"
#include "virtio/vring.h"

#define MEM_SIZE ((size_t)64 * 1024)
#define UVA_BASE 0x7f0000000000ull
#define MAX_REGIONS 3u

struct layout {
    unsigned int n;
    struct vgpu_mem_region r[MAX_REGIONS];
};

/* Regions over one 64 KiB memfd. Ring addresses are guest-physical + UVA_BASE in each. */
static void make_layout(unsigned int which, struct layout *l)
{
    const uint64_t half = MEM_SIZE / 2, quarter = MEM_SIZE / 4;
    switch (which) {
    case 0:
        l->n = 1;
        l->r[0] = (struct vgpu_mem_region){0, MEM_SIZE, UVA_BASE, 0};
        break;
    case 1:
        l->n = 2;
        l->r[0] = (struct vgpu_mem_region){0, half, UVA_BASE, 0};
        l->r[1] = (struct vgpu_mem_region){half, half, UVA_BASE + half, half};
        break;
    case 2:
        /* Guest-physical order differs from file order: contiguous gpa, split host memory. */
        l->n = 2;
        l->r[0] = (struct vgpu_mem_region){0, half, UVA_BASE, half};
        l->r[1] = (struct vgpu_mem_region){half, half, UVA_BASE + half, 0};
        break;
    default:
        /* A hole at [quarter, 2 quarters) of guest-physical space. */
        l->n = 3;
        l->r[0] = (struct vgpu_mem_region){0, quarter, UVA_BASE, 0};
        l->r[1] = (struct vgpu_mem_region){2 * quarter, quarter, UVA_BASE + 2 * quarter, quarter};
        l->r[2] =
            (struct vgpu_mem_region){3 * quarter, quarter, UVA_BASE + 3 * quarter, 2 * quarter};
        break;
    }
}

struct host_range {
    const uint8_t *p;
    size_t len;
};

static void check_iov(const struct iovec *iov, unsigned int n, const struct host_range *hr,
                      unsigned int nhr, uint64_t want_bytes, const char *what)
{
    uint64_t total = 0;
    for (unsigned int i = 0; i < n; i++) {
        const uint8_t *b = iov[i].iov_base;
        size_t len = iov[i].iov_len;
        bool inside = false;
        for (unsigned int k = 0; k < nhr && !inside; k++)
            inside = b >= hr[k].p && len <= hr[k].len && (size_t)(b - hr[k].p) <= hr[k].len - len;
        if (!inside || len == 0)
            fz_die("%s iovec %u (%p, %zu bytes) is %s", what, i, iov[i].iov_base, len,
                   len ? "outside guest memory" : "empty");
        total += len;
    }
    if (total != want_bytes)
        fz_die("%s iovecs hold %llu bytes, the chain says %llu", what, (unsigned long long)total,
               (unsigned long long)want_bytes);
}

/* Pops until empty, broken or 2 * num + 4 chains; pushes every chain back. */
static void pop_all(struct vgpu_vring *vr, unsigned int num, const struct host_range *hr,
                    unsigned int nhr)
{
    struct vgpu_chain c;
    vgpu_chain_init(&c);
    for (unsigned int i = 0; i < 2 * num + 4; i++) {
        int r = vgpu_vring_pop(vr, &c);
        if (r == -EAGAIN || r == -EPROTO)
            break;
        if (r != 0 && r != -EINVAL)
            fz_die("vgpu_vring_pop returned %d", r);
        if (c.head >= num)
            fz_die("pop returned head %u of a %u-entry ring", c.head, num);
        if (r == 0) {
            const struct iovec *iov = vgpu_chain_iov(&c);
            check_iov(iov, c.out_num, hr, nhr, c.out_bytes, "readable");
            check_iov(iov + c.out_num, c.in_num, hr, nhr, c.in_bytes, "writable");
        }
        uint32_t len = r == 0 && c.in_bytes <= UINT32_MAX ? (uint32_t)c.in_bytes : 0;
        vgpu_vring_push(vr, c.head, len);
        if (vgpu_vring_inflight(vr) != 0)
            fz_die("%u chains in flight after pushing every one back", vgpu_vring_inflight(vr));
    }
    (void)vgpu_vring_need_notify(vr);
    vgpu_chain_finish(&c);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_init_logging();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct {
        uint8_t size, flags;
        uint16_t base, desc, avail, used;
    } h;
    if (size < sizeof(h))
        return 0;
    memcpy(&h, data, sizeof(h));
    data += sizeof(h);
    size -= sizeof(h);

    unsigned int num = 8u << (h.size % 6);
    struct layout l;
    make_layout((h.flags >> 1) & 3, &l);

    int memfd = fz_memfd("fuzz-vring", MEM_SIZE);
    uint8_t *file = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (file == MAP_FAILED)
        fz_die("mmap: %s", strerror(errno));
    /* The input is guest memory in guest-physical order; a hole takes no bytes. */
    for (unsigned int i = 0; i < l.n && size > 0; i++) {
        size_t n = size < l.r[i].size ? size : (size_t)l.r[i].size;
        memcpy(file + l.r[i].mmap_offset, data, n);
        data += n;
        size -= n;
    }

    struct vgpu_guest_mem *mem = vgpu_guest_mem_create();
    if (!mem)
        fz_die("out of memory");
    struct host_range hr[MAX_REGIONS];
    for (unsigned int i = 0; i < l.n; i++) {
        int r = vgpu_guest_mem_add(mem, &l.r[i], dup(memfd));
        if (r < 0)
            fz_die("region %u refused: %d", i, r);
        hr[i].p = vgpu_guest_mem_gpa_ptr(mem, l.r[i].gpa, l.r[i].size);
        hr[i].len = (size_t)l.r[i].size;
        if (!hr[i].p)
            fz_die("region %u cannot be looked up", i);
    }

    uint64_t desc, avail, used;
    if (h.flags & 0x08) {
        desc = UVA_BASE + h.desc;
        avail = UVA_BASE + h.avail;
        used = UVA_BASE + h.used;
    } else {
        /* Packed: avail right after the table, used right after avail (4-byte aligned); all
         * inside the first region (the smallest is 16 KiB; 256 entries need under 7 KiB). */
        desc = UVA_BASE;
        avail = desc + 16ull * num;
        used = (avail + 6 + 2ull * num + 3) & ~3ull;
    }

    struct vgpu_vring *vr = vgpu_vring_create(mem);
    if (!vr)
        fz_die("out of memory");
    if (vgpu_vring_set_num(vr, num) < 0)
        fz_die("size %u refused", num);
    vgpu_vring_set_event_idx(vr, h.flags & 1);
    if (vgpu_vring_set_addr(vr, desc, avail, used) == 0 && vgpu_vring_set_base(vr, h.base) == 0 &&
        vgpu_vring_start(vr) == 0) {
        pop_all(vr, num, hr, l.n);
        if (h.flags & 0x10) {
            /* Memory "changed": re-translate, then go on where the ring stands. */
            if (vgpu_vring_remap(vr) == 0)
                pop_all(vr, num, hr, l.n);
            uint16_t base = vgpu_vring_get_base(vr);
            vgpu_vring_stop(vr);
            if (vgpu_vring_set_base(vr, base) == 0 && vgpu_vring_start(vr) == 0)
                pop_all(vr, num, hr, l.n);
        }
    }

    vgpu_vring_destroy(vr);
    vgpu_guest_mem_destroy(mem);
    munmap(file, MEM_SIZE);
    close(memfd);
    return 0;
}
