/* SPDX-License-Identifier: MIT */
#ifndef VGPU_VIRTIO_GUEST_MEM_H
#define VGPU_VIRTIO_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/*
 * Guest memory as the front-end shares it: a table of regions, each an fd mapped into our
 * address space. Translates guest-physical addresses (descriptor addresses) and front-end
 * virtual addresses (vring addresses from SET_VRING_ADDR) into host pointers, with every
 * bound and overflow checked. A range that crosses regions becomes an iovec list; no pointer
 * ever reaches past a mapping.
 *
 * Threading: mutated only by the reactor thread. Other threads may read pointers they were
 * given while the reactor guarantees (DESIGN.md, memory barrier) the region stays mapped.
 */

#define VGPU_GUEST_MEM_MAX_REGIONS 32

/* One region as the front-end describes it (vhost-user memory region layout). */
struct vgpu_mem_region {
    uint64_t gpa;         /* guest physical address */
    uint64_t size;        /* bytes */
    uint64_t uva;         /* front-end's user virtual address */
    uint64_t mmap_offset; /* offset of the region in the fd */
};

struct vgpu_guest_mem;

/* Returns an empty table, or NULL on allocation failure. */
struct vgpu_guest_mem *vgpu_guest_mem_create(void);
/* Unmaps everything. NULL is a no-op. */
void vgpu_guest_mem_destroy(struct vgpu_guest_mem *mem);

/*
 * Maps one region from fd. Always takes ownership of fd (closes it, mapped or not).
 * Checks: size > 0; gpa+size, uva+size, mmap_offset+size do not overflow; for a regular file
 * or memfd, mmap_offset+size fits in the file (a mapping past EOF would SIGBUS on access);
 * no overlap with an existing region's guest-physical or user range; at most
 * VGPU_GUEST_MEM_MAX_REGIONS. Returns 0, -EINVAL, -ENOSPC (table full), -EEXIST (overlap),
 * or -errno from fstat/mmap.
 */
int vgpu_guest_mem_add(struct vgpu_guest_mem *mem, const struct vgpu_mem_region *r, int fd);

/*
 * Unmaps the region matching r's gpa, size and uva (mmap_offset is ignored, per the spec).
 * Returns 0 or -ENOENT.
 */
int vgpu_guest_mem_remove(struct vgpu_guest_mem *mem, const struct vgpu_mem_region *r);

/* Unmaps all regions. */
void vgpu_guest_mem_clear(struct vgpu_guest_mem *mem);

/*
 * Replaces the whole table (SET_MEM_TABLE): maps all n new regions first; if any fails, the
 * new ones are unmapped and the old table stays. Always takes ownership of all n fds.
 * Returns 0 or a negative errno as vgpu_guest_mem_add.
 */
int vgpu_guest_mem_set_table(struct vgpu_guest_mem *mem, const struct vgpu_mem_region *r,
                             const int *fds, unsigned int n);

unsigned int vgpu_guest_mem_num_regions(const struct vgpu_guest_mem *mem);

/* Incremented on every change of the table, so users can tell cached pointers are stale. */
uint64_t vgpu_guest_mem_generation(const struct vgpu_guest_mem *mem);

/*
 * Host pointer for [gpa, gpa+len) if it lies wholly inside one region, else NULL.
 * len 0 is treated as 1 (the address itself must be mapped).
 */
void *vgpu_guest_mem_gpa_ptr(const struct vgpu_guest_mem *mem, uint64_t gpa, uint64_t len);

/* Same for a front-end user virtual address (ring addresses). */
void *vgpu_guest_mem_uva_ptr(const struct vgpu_guest_mem *mem, uint64_t uva, uint64_t len);

/*
 * Appends iovecs covering [gpa, gpa+len) to iov[*n .. max). A range crossing regions gives
 * one iovec per region. len 0 appends nothing and succeeds.
 * Returns 0, -EFAULT (some byte unmapped or gpa+len overflows), or -ENOBUFS (more than max
 * iovecs needed; *n is then unspecified).
 */
int vgpu_guest_mem_gpa_iov(const struct vgpu_guest_mem *mem, uint64_t gpa, uint64_t len,
                           struct iovec *iov, unsigned int max, unsigned int *n);

/* Copies len bytes at gpa (may cross regions) into dst. Returns 0 or -EFAULT. */
int vgpu_guest_mem_read(const struct vgpu_guest_mem *mem, uint64_t gpa, void *dst, size_t len);

#endif
