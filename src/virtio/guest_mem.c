/* SPDX-License-Identifier: MIT */
#include "virtio/guest_mem.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"

/*
 * A mapped region. The front-end's mmap_offset need not be page aligned, so the mapping starts
 * at the page below it and host points delta bytes in: [host, host + size) is the region,
 * [map_base, map_base + map_len) is what munmap gets.
 */
struct region {
    struct vgpu_mem_region r;
    void *map_base;
    size_t map_len;
    uint8_t *host;
};

struct vgpu_guest_mem {
    struct region regions[VGPU_GUEST_MEM_MAX_REGIONS];
    unsigned int n;
    uint64_t generation;
};

struct vgpu_guest_mem *vgpu_guest_mem_create(void)
{
    return calloc(1, sizeof(struct vgpu_guest_mem));
}

static void region_unmap(struct region *reg)
{
    if (reg->map_base)
        munmap(reg->map_base, reg->map_len);
    memset(reg, 0, sizeof(*reg));
}

static void table_unmap(struct region *regs, unsigned int n)
{
    for (unsigned int i = 0; i < n; i++)
        region_unmap(&regs[i]);
}

void vgpu_guest_mem_destroy(struct vgpu_guest_mem *mem)
{
    if (!mem)
        return;
    table_unmap(mem->regions, mem->n);
    free(mem);
}

static void close_fd(int fd)
{
    if (fd >= 0)
        close(fd);
}

/* Half-open ranges [a, a + alen) and [b, b + blen); the callers have checked both ends fit. */
static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

static void log_reject(const struct vgpu_mem_region *r, const char *why)
{
    vgpu_warn("guest memory: region gpa 0x%" PRIx64 " size 0x%" PRIx64 " uva 0x%" PRIx64
              " offset 0x%" PRIx64 " rejected: %s",
              r->gpa, r->size, r->uva, r->mmap_offset, why);
}

/*
 * Validates r against the n regions in regs and maps it from fd into regs[n]. Does not close fd
 * and does not touch any table but regs.
 */
static int region_map(struct region *regs, unsigned int n, const struct vgpu_mem_region *r, int fd)
{
    uint64_t end;

    if (n >= VGPU_GUEST_MEM_MAX_REGIONS) {
        log_reject(r, "too many regions");
        return -ENOSPC;
    }
    if (r->size == 0) {
        log_reject(r, "size is 0");
        return -EINVAL;
    }
    if (__builtin_add_overflow(r->gpa, r->size, &end) ||
        __builtin_add_overflow(r->uva, r->size, &end) ||
        __builtin_add_overflow(r->mmap_offset, r->size, &end)) {
        log_reject(r, "address + size overflows");
        return -EINVAL;
    }
    for (unsigned int i = 0; i < n; i++) {
        const struct vgpu_mem_region *o = &regs[i].r;
        if (ranges_overlap(r->gpa, r->size, o->gpa, o->size)) {
            log_reject(r, "guest-physical range overlaps another region");
            return -EEXIST;
        }
        if (ranges_overlap(r->uva, r->size, o->uva, o->size)) {
            log_reject(r, "user address range overlaps another region");
            return -EEXIST;
        }
    }

    long page = sysconf(_SC_PAGESIZE);
    uint64_t page_size = page > 0 ? (uint64_t)page : 4096;
    uint64_t delta = r->mmap_offset & (page_size - 1);
    uint64_t map_off = r->mmap_offset - delta;
    uint64_t map_len;
    if (__builtin_add_overflow(r->size, delta, &map_len) || map_len > SIZE_MAX ||
        map_off > (uint64_t)INT64_MAX) {
        log_reject(r, "mapping does not fit the address space");
        return -EINVAL;
    }

    struct stat st;
    if (fstat(fd, &st) < 0) {
        int err = errno;
        vgpu_warn("guest memory: fstat of region fd %d failed: %s", fd, strerror(err));
        return -err;
    }
    /* end = mmap_offset + size, checked above. Touching a page past EOF raises SIGBUS. */
    end = r->mmap_offset + r->size;
    if (S_ISREG(st.st_mode) && (st.st_size < 0 || end > (uint64_t)st.st_size)) {
        log_reject(r, "offset + size is beyond the end of the file");
        return -EINVAL;
    }

    void *base = mmap(NULL, (size_t)map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd,
                      (off_t)map_off);
    if (base == MAP_FAILED) {
        int err = errno;
        vgpu_err("guest memory: mmap of region gpa 0x%" PRIx64 " size 0x%" PRIx64 " failed: %s",
                 r->gpa, r->size, strerror(err));
        return -err;
    }

    struct region *reg = &regs[n];
    reg->r = *r;
    reg->map_base = base;
    reg->map_len = (size_t)map_len;
    reg->host = (uint8_t *)base + delta;
    return 0;
}

int vgpu_guest_mem_add(struct vgpu_guest_mem *mem, const struct vgpu_mem_region *r, int fd)
{
    int ret = region_map(mem->regions, mem->n, r, fd);
    /* The mapping (if any) keeps the memory alive; the fd is ours to close either way. */
    close_fd(fd);
    if (ret < 0)
        return ret;
    mem->n++;
    mem->generation++;
    return 0;
}

int vgpu_guest_mem_remove(struct vgpu_guest_mem *mem, const struct vgpu_mem_region *r)
{
    for (unsigned int i = 0; i < mem->n; i++) {
        struct region *reg = &mem->regions[i];
        if (reg->r.gpa != r->gpa || reg->r.size != r->size || reg->r.uva != r->uva)
            continue;
        region_unmap(reg);
        /* Keep the table dense: move the last entry into the hole. */
        mem->n--;
        if (i != mem->n) {
            *reg = mem->regions[mem->n];
            memset(&mem->regions[mem->n], 0, sizeof(mem->regions[mem->n]));
        }
        mem->generation++;
        return 0;
    }
    vgpu_warn("guest memory: no region gpa 0x%" PRIx64 " size 0x%" PRIx64 " uva 0x%" PRIx64
              " to remove",
              r->gpa, r->size, r->uva);
    return -ENOENT;
}

void vgpu_guest_mem_clear(struct vgpu_guest_mem *mem)
{
    table_unmap(mem->regions, mem->n);
    mem->n = 0;
    mem->generation++;
}

int vgpu_guest_mem_set_table(struct vgpu_guest_mem *mem, const struct vgpu_mem_region *r,
                             const int *fds, unsigned int n)
{
    struct region fresh[VGPU_GUEST_MEM_MAX_REGIONS];
    unsigned int mapped = 0;
    int ret = 0;

    memset(fresh, 0, sizeof(fresh));
    if (n > VGPU_GUEST_MEM_MAX_REGIONS) {
        vgpu_warn("guest memory: table of %u regions refused (at most %u)", n,
                  VGPU_GUEST_MEM_MAX_REGIONS);
        ret = -ENOSPC;
    }
    /* Map into a scratch table first so a bad region leaves the current table untouched. */
    for (unsigned int i = 0; i < n; i++) {
        if (ret == 0) {
            ret = region_map(fresh, mapped, &r[i], fds[i]);
            if (ret == 0)
                mapped++;
        }
        close_fd(fds[i]);
    }
    if (ret < 0) {
        table_unmap(fresh, mapped);
        return ret;
    }

    table_unmap(mem->regions, mem->n);
    memcpy(mem->regions, fresh, sizeof(fresh));
    mem->n = mapped;
    mem->generation++;
    return 0;
}

unsigned int vgpu_guest_mem_num_regions(const struct vgpu_guest_mem *mem)
{
    return mem->n;
}

uint64_t vgpu_guest_mem_generation(const struct vgpu_guest_mem *mem)
{
    return mem->generation;
}

/* The region holding guest-physical address gpa, with *off set to gpa's offset in it. */
static const struct region *find_gpa(const struct vgpu_guest_mem *mem, uint64_t gpa, uint64_t *off)
{
    for (unsigned int i = 0; i < mem->n; i++) {
        const struct region *reg = &mem->regions[i];
        if (gpa >= reg->r.gpa && gpa - reg->r.gpa < reg->r.size) {
            *off = gpa - reg->r.gpa;
            return reg;
        }
    }
    return NULL;
}

static const struct region *find_uva(const struct vgpu_guest_mem *mem, uint64_t uva, uint64_t *off)
{
    for (unsigned int i = 0; i < mem->n; i++) {
        const struct region *reg = &mem->regions[i];
        if (uva >= reg->r.uva && uva - reg->r.uva < reg->r.size) {
            *off = uva - reg->r.uva;
            return reg;
        }
    }
    return NULL;
}

void *vgpu_guest_mem_gpa_ptr(const struct vgpu_guest_mem *mem, uint64_t gpa, uint64_t len)
{
    uint64_t off;
    const struct region *reg = find_gpa(mem, gpa, &off);
    if (len == 0)
        len = 1;
    /* off < size, so size - off cannot wrap; comparing lengths avoids computing gpa + len. */
    if (!reg || len > reg->r.size - off)
        return NULL;
    return reg->host + off;
}

void *vgpu_guest_mem_uva_ptr(const struct vgpu_guest_mem *mem, uint64_t uva, uint64_t len)
{
    uint64_t off;
    const struct region *reg = find_uva(mem, uva, &off);
    if (len == 0)
        len = 1;
    if (!reg || len > reg->r.size - off)
        return NULL;
    return reg->host + off;
}

int vgpu_guest_mem_gpa_iov(const struct vgpu_guest_mem *mem, uint64_t gpa, uint64_t len,
                           struct iovec *iov, unsigned int max, unsigned int *n)
{
    uint64_t end;
    if (__builtin_add_overflow(gpa, len, &end))
        return -EFAULT;

    while (len > 0) {
        uint64_t off;
        const struct region *reg = find_gpa(mem, gpa, &off);
        if (!reg)
            return -EFAULT;
        if (*n >= max)
            return -ENOBUFS;
        uint64_t chunk = reg->r.size - off;
        if (chunk > len)
            chunk = len;
        /* chunk <= region size, which region_map checked fits in size_t. */
        iov[*n].iov_base = reg->host + off;
        iov[*n].iov_len = (size_t)chunk;
        (*n)++;
        gpa += chunk;
        len -= chunk;
    }
    return 0;
}

int vgpu_guest_mem_read(const struct vgpu_guest_mem *mem, uint64_t gpa, void *dst, size_t len)
{
    uint64_t end;
    if (__builtin_add_overflow(gpa, (uint64_t)len, &end))
        return -EFAULT;

    uint8_t *out = dst;
    while (len > 0) {
        uint64_t off;
        const struct region *reg = find_gpa(mem, gpa, &off);
        if (!reg)
            return -EFAULT;
        uint64_t chunk = reg->r.size - off;
        if (chunk > len)
            chunk = len;
        memcpy(out, reg->host + off, (size_t)chunk);
        out += chunk;
        gpa += chunk;
        len -= (size_t)chunk;
    }
    return 0;
}
