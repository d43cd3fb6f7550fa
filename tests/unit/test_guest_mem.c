/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "virtio/guest_mem.h"

#define KiB (1024ull)
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)

static int make_named_memfd(const char *name, uint64_t size)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    return fd;
}

static int make_memfd(uint64_t size)
{
    return make_named_memfd("test_guest_mem", size);
}

/* A copy of fd for the guest_mem call to consume, so the test keeps its own. */
static int dup_fd(int fd)
{
    int d = dup(fd);
    assert_true(d >= 0);
    return d;
}

static void assert_fd_closed(int fd)
{
    errno = 0;
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
}

/* The test's own view of the memfd: plays the guest writing its RAM. */
static uint8_t *map_fd(int fd, uint64_t size)
{
    void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(p != MAP_FAILED);
    return p;
}

/* Mappings of memfds named name in this process. */
static unsigned int count_mappings(const char *name)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[512];
    unsigned int n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, name) != NULL;
    fclose(f);
    return n;
}

static struct vgpu_mem_region region(uint64_t gpa, uint64_t size, uint64_t uva, uint64_t off)
{
    return (struct vgpu_mem_region){.gpa = gpa, .size = size, .uva = uva, .mmap_offset = off};
}

static void test_add_translate(void **state)
{
    struct vgpu_guest_mem *mem = vgpu_guest_mem_create();
    assert_non_null(mem);
    int fd = make_memfd(1 * MiB);
    uint8_t *view = map_fd(fd, 1 * MiB);
    uint64_t gen = vgpu_guest_mem_generation(mem);

    struct vgpu_mem_region r = region(0x100000, 1 * MiB, 0x7f0000000000, 0);
    int passed = dup_fd(fd);
    assert_int_equal(vgpu_guest_mem_add(mem, &r, passed), 0);
    assert_fd_closed(passed);
    assert_int_equal(vgpu_guest_mem_num_regions(mem), 1);
    assert_true(vgpu_guest_mem_generation(mem) > gen);

    uint8_t *p = vgpu_guest_mem_gpa_ptr(mem, 0x100000 + 10, 4);
    assert_non_null(p);
    memcpy(p, "abcd", 4);
    assert_memory_equal(view + 10, "abcd", 4);
    assert_ptr_equal(vgpu_guest_mem_uva_ptr(mem, 0x7f0000000000 + 10, 4), p);

    /* The last bytes are reachable; one byte more is not. */
    assert_non_null(vgpu_guest_mem_gpa_ptr(mem, 0x100000 + 1 * MiB - 4, 4));
    assert_null(vgpu_guest_mem_gpa_ptr(mem, 0x100000 + 1 * MiB - 4, 5));
    assert_null(vgpu_guest_mem_gpa_ptr(mem, 0x100000 + 1 * MiB, 0));
    assert_null(vgpu_guest_mem_gpa_ptr(mem, 0x100000 - 1, 1));
    assert_null(vgpu_guest_mem_gpa_ptr(mem, 0x100000, UINT64_MAX));
    assert_null(vgpu_guest_mem_uva_ptr(mem, 0x7f0000000000 + 1 * MiB - 1, 2));
    assert_null(vgpu_guest_mem_uva_ptr(mem, 0x100000, 1));
    /* len 0 means the address itself. */
    assert_ptr_equal(vgpu_guest_mem_gpa_ptr(mem, 0x100000, 0), p - 10);

    munmap(view, 1 * MiB);
    close(fd);
    vgpu_guest_mem_destroy(mem);
}

static void test_mmap_offset(void **state)
{
    struct vgpu_guest_mem *mem = vgpu_guest_mem_create();
    int fd = make_memfd(2 * MiB);
    uint8_t *view = map_fd(fd, 2 * MiB);

    struct vgpu_mem_region lo = region(0, 1 * MiB, 0x10000000, 0);
    struct vgpu_mem_region hi = region(0x40000000, 1 * MiB, 0x20000000, 1 * MiB);
    assert_int_equal(vgpu_guest_mem_add(mem, &lo, dup_fd(fd)), 0);
    assert_int_equal(vgpu_guest_mem_add(mem, &hi, dup_fd(fd)), 0);

    /* Written through the low region at file offset 1 MiB + 100, read through the high one. */
    memcpy(view + 1 * MiB + 100, "hello", 5);
    uint8_t *p = vgpu_guest_mem_gpa_ptr(mem, 0x40000000 + 100, 5);
    assert_non_null(p);
    assert_memory_equal(p, "hello", 5);
    /* And the other way round. */
    memcpy(vgpu_guest_mem_uva_ptr(mem, 0x20000000 + 200, 3), "xyz", 3);
    assert_memory_equal(view + 1 * MiB + 200, "xyz", 3);
    /* The low region still starts at the file's start. */
    view[7] = 0x5a;
    assert_int_equal(*(uint8_t *)vgpu_guest_mem_gpa_ptr(mem, 7, 1), 0x5a);

    munmap(view, 2 * MiB);
    close(fd);
    vgpu_guest_mem_destroy(mem);
}

static void test_mmap_offset_unaligned_and_large(void **state)
{
    struct vgpu_guest_mem *mem = vgpu_guest_mem_create();
    int fd = make_memfd(4 * 4096);
    uint8_t *view = map_fd(fd, 4 * 4096);

    /* An offset that is not page aligned maps from the page below and points in. */
    struct vgpu_mem_region r = region(0x1000, 0x1000, 0x5000, 0x1123);
    assert_int_equal(vgpu_guest_mem_add(mem, &r, dup_fd(fd)), 0);
    view[0x1123] = 0x42;
    view[0x1123 + 0xfff] = 0x43;
    assert_int_equal(*(uint8_t *)vgpu_guest_mem_gpa_ptr(mem, 0x1000, 1), 0x42);
    assert_int_equal(*(uint8_t *)vgpu_guest_mem_gpa_ptr(mem, 0x1fff, 1), 0x43);
    assert_null(vgpu_guest_mem_gpa_ptr(mem, 0x2000, 1));

    /* 2 GiB into a sparse memfd: only the region's own pages get mapped. */
    int big = make_memfd(2 * GiB + 1 * MiB);
    struct vgpu_mem_region high = region(0x100000000, 1 * MiB, 0x200000000, 2 * GiB);
    assert_int_equal(vgpu_guest_mem_add(mem, &high, dup_fd(big)), 0);
    uint8_t marker = 0x99;
    assert_int_equal(pwrite(big, &marker, 1, (off_t)(2 * GiB + 5)), 1);
    assert_int_equal(*(uint8_t *)vgpu_guest_mem_gpa_ptr(mem, 0x100000000 + 5, 1), 0x99);

    close(big);
    munmap(view, 4 * 4096);
    close(fd);
    vgpu_guest_mem_destroy(mem);
}

/* Two adjacent 64 KiB regions from two different memfds. */
static struct vgpu_guest_mem *two_regions(int *fd_a, int *fd_b)
{
    struct vgpu_guest_mem *mem = vgpu_guest_mem_create();
    *fd_a = make_memfd(64 * KiB);
    *fd_b = make_memfd(64 * KiB);
    struct vgpu_mem_region a = region(0, 64 * KiB, 0x100000, 0);
    struct vgpu_mem_region b = region(64 * KiB, 64 * KiB, 0x900000, 0);
    assert_int_equal(vgpu_guest_mem_add(mem, &a, dup_fd(*fd_a)), 0);
    assert_int_equal(vgpu_guest_mem_add(mem, &b, dup_fd(*fd_b)), 0);
    return mem;
}

static void test_cross_region(void **state)
{
    int fa, fb;
    struct vgpu_guest_mem *mem = two_regions(&fa, &fb);

    struct iovec iov[4];
    unsigned int n = 1; /* appends after an existing entry */
    assert_int_equal(vgpu_guest_mem_gpa_iov(mem, 64 * KiB - 16, 48, iov, 4, &n), 0);
    assert_int_equal(n, 3);
    assert_ptr_equal(iov[1].iov_base, vgpu_guest_mem_gpa_ptr(mem, 64 * KiB - 16, 16));
    assert_int_equal(iov[1].iov_len, 16);
    assert_ptr_equal(iov[2].iov_base, vgpu_guest_mem_gpa_ptr(mem, 64 * KiB, 32));
    assert_int_equal(iov[2].iov_len, 32);

    /* No single pointer crosses the boundary. */
    assert_null(vgpu_guest_mem_gpa_ptr(mem, 64 * KiB - 16, 17));

    /* read() stitches the pieces together. */
    uint8_t pat[48];
    for (unsigned int i = 0; i < sizeof(pat); i++)
        pat[i] = (uint8_t)(i * 7 + 1);
    assert_int_equal(pwrite(fa, pat, 16, 64 * KiB - 16), 16);
    assert_int_equal(pwrite(fb, pat + 16, 32, 0), 32);
    uint8_t got[48];
    assert_int_equal(vgpu_guest_mem_read(mem, 64 * KiB - 16, got, sizeof(got)), 0);
    assert_memory_equal(got, pat, sizeof(pat));

    /* Within one region: one iovec. */
    n = 0;
    assert_int_equal(vgpu_guest_mem_gpa_iov(mem, 100, 200, iov, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(iov[0].iov_len, 200);

    close(fa);
    close(fb);
    vgpu_guest_mem_destroy(mem);
}

static void test_efault_and_enobufs(void **state)
{
    int fa, fb;
    struct vgpu_guest_mem *mem = two_regions(&fa, &fb);
    struct iovec iov[4];
    unsigned int n;

    /* Wholly unmapped, and running off the end of the second region. */
    n = 0;
    assert_int_equal(vgpu_guest_mem_gpa_iov(mem, 1 * MiB, 4, iov, 4, &n), -EFAULT);
    n = 0;
    assert_int_equal(vgpu_guest_mem_gpa_iov(mem, 128 * KiB - 2, 4, iov, 4, &n), -EFAULT);
    n = 0;
    assert_int_equal(vgpu_guest_mem_gpa_iov(mem, 0, 128 * KiB + 1, iov, 4, &n), -EFAULT);
    /* gpa + len wraps around. */
    n = 0;
    assert_int_equal(vgpu_guest_mem_gpa_iov(mem, UINT64_MAX - 1, 4, iov, 4, &n), -EFAULT);
    n = 0;
    assert_int_equal(vgpu_guest_mem_gpa_iov(mem, 16, UINT64_MAX, iov, 4, &n), -EFAULT);

    /* len 0 appends nothing, even at an unmapped address. */
    n = 2;
    assert_int_equal(vgpu_guest_mem_gpa_iov(mem, 1 * MiB, 0, iov, 4, &n), 0);
    assert_int_equal(n, 2);

    /* Two pieces do not fit in one slot, nor in the last free slot. */
    n = 0;
    assert_int_equal(vgpu_guest_mem_gpa_iov(mem, 64 * KiB - 1, 2, iov, 1, &n), -ENOBUFS);
    n = 3;
    assert_int_equal(vgpu_guest_mem_gpa_iov(mem, 64 * KiB - 1, 2, iov, 4, &n), -ENOBUFS);
    n = 4;
    assert_int_equal(vgpu_guest_mem_gpa_iov(mem, 0, 1, iov, 4, &n), -ENOBUFS);

    uint8_t buf[8];
    assert_int_equal(vgpu_guest_mem_read(mem, 128 * KiB - 4, buf, 8), -EFAULT);
    assert_int_equal(vgpu_guest_mem_read(mem, UINT64_MAX - 2, buf, 8), -EFAULT);
    assert_int_equal(vgpu_guest_mem_read(mem, 128 * KiB - 8, buf, 8), 0);

    close(fa);
    close(fb);
    vgpu_guest_mem_destroy(mem);
}

/* Adds r with a fresh copy of fd, checks the result, that the copy was closed, and that a
 * failure left the table alone. */
static void add_expect(struct vgpu_guest_mem *mem, struct vgpu_mem_region r, int fd, int expect)
{
    unsigned int regions = vgpu_guest_mem_num_regions(mem);
    uint64_t gen = vgpu_guest_mem_generation(mem);
    int passed = dup_fd(fd);
    assert_int_equal(vgpu_guest_mem_add(mem, &r, passed), expect);
    assert_fd_closed(passed);
    if (expect == 0) {
        assert_int_equal(vgpu_guest_mem_num_regions(mem), regions + 1);
        assert_int_equal(vgpu_guest_mem_generation(mem), gen + 1);
    } else {
        assert_int_equal(vgpu_guest_mem_num_regions(mem), regions);
        assert_int_equal(vgpu_guest_mem_generation(mem), gen);
    }
}

static void test_add_rejects(void **state)
{
    struct vgpu_guest_mem *mem = vgpu_guest_mem_create();
    int fd = make_memfd(1 * MiB);

    add_expect(mem, region(0x10000, 64 * KiB, 0x7000000, 0), fd, 0);

    add_expect(mem, region(0x100000, 0, 0x8000000, 0), fd, -EINVAL);
    add_expect(mem, region(UINT64_MAX - 4095, 8192, 0x8000000, 0), fd, -EINVAL);
    add_expect(mem, region(0x100000, 8192, UINT64_MAX - 4095, 0), fd, -EINVAL);
    add_expect(mem, region(0x100000, 8192, 0x8000000, UINT64_MAX - 4095), fd, -EINVAL);
    /* Past the end of the memfd: mapping would succeed, touching would SIGBUS. */
    add_expect(mem, region(0x100000, 1 * MiB, 0x8000000, 4096), fd, -EINVAL);
    add_expect(mem, region(0x100000, 1 * MiB + 4096, 0x8000000, 0), fd, -EINVAL);
    /* Guest-physical overlap (inside, straddling either end) and user-address overlap. */
    add_expect(mem, region(0x18000, 4096, 0x8000000, 0), fd, -EEXIST);
    add_expect(mem, region(0x0f000, 8192, 0x8000000, 0), fd, -EEXIST);
    add_expect(mem, region(0x1f000, 8192, 0x8000000, 0), fd, -EEXIST);
    add_expect(mem, region(0x00000, 1 * MiB, 0x8000000, 0), fd, -EEXIST);
    add_expect(mem, region(0x100000, 8192, 0x700f000, 0), fd, -EEXIST);
    /* A bad fd is an error, not a crash. */
    unsigned int regions = vgpu_guest_mem_num_regions(mem);
    struct vgpu_mem_region r = region(0x100000, 4096, 0x8000000, 0);
    assert_int_equal(vgpu_guest_mem_add(mem, &r, -1), -EBADF);
    assert_int_equal(vgpu_guest_mem_num_regions(mem), regions);

    /* Adjacent (touching, not overlapping) is fine in both spaces. */
    add_expect(mem, region(0x20000, 4096, 0x7010000, 0), fd, 0);
    assert_int_equal(vgpu_guest_mem_num_regions(mem), 2);

    close(fd);
    vgpu_guest_mem_destroy(mem);
}

static void test_remove(void **state)
{
    struct vgpu_guest_mem *mem = vgpu_guest_mem_create();
    int fd = make_memfd(3 * 4096);
    for (unsigned int i = 0; i < 3; i++)
        add_expect(mem, region(0x10000 * (i + 1), 4096, 0x1000000 * (i + 1), 4096 * i), fd, 0);
    uint64_t gen = vgpu_guest_mem_generation(mem);

    struct vgpu_mem_region wrong = region(0x20000, 8192, 0x2000000, 4096);
    assert_int_equal(vgpu_guest_mem_remove(mem, &wrong), -ENOENT);
    assert_int_equal(vgpu_guest_mem_generation(mem), gen);

    /* mmap_offset is ignored when matching. */
    struct vgpu_mem_region mid = region(0x20000, 4096, 0x2000000, 12345);
    assert_int_equal(vgpu_guest_mem_remove(mem, &mid), 0);
    assert_int_equal(vgpu_guest_mem_num_regions(mem), 2);
    assert_int_equal(vgpu_guest_mem_generation(mem), gen + 1);
    assert_null(vgpu_guest_mem_gpa_ptr(mem, 0x20000, 1));
    assert_null(vgpu_guest_mem_uva_ptr(mem, 0x2000000, 1));
    assert_int_equal(vgpu_guest_mem_remove(mem, &mid), -ENOENT);

    /* The others still translate, to the right file pages. */
    uint8_t b = 0x31;
    assert_int_equal(pwrite(fd, &b, 1, 2 * 4096 + 9), 1);
    assert_int_equal(*(uint8_t *)vgpu_guest_mem_gpa_ptr(mem, 0x30009, 1), 0x31);
    assert_non_null(vgpu_guest_mem_gpa_ptr(mem, 0x10000, 4096));

    vgpu_guest_mem_clear(mem);
    assert_int_equal(vgpu_guest_mem_num_regions(mem), 0);
    assert_true(vgpu_guest_mem_generation(mem) > gen + 1);
    assert_null(vgpu_guest_mem_gpa_ptr(mem, 0x10000, 1));

    close(fd);
    vgpu_guest_mem_destroy(mem);
}

static void test_set_table(void **state)
{
    struct vgpu_guest_mem *mem = vgpu_guest_mem_create();
    int fd = make_named_memfd("set_table_probe", 1 * MiB);
    add_expect(mem, region(0, 64 * KiB, 0x1000000, 0), fd, 0);
    uint64_t gen = vgpu_guest_mem_generation(mem);

    /* Second region is beyond the file: nothing changes, all fds closed. */
    struct vgpu_mem_region bad[3] = {
        region(1 * GiB, 64 * KiB, 0x5000000, 0),
        region(2 * GiB, 2 * MiB, 0x6000000, 0),
        region(3 * GiB, 64 * KiB, 0x7000000, 0),
    };
    int fds[3] = {dup_fd(fd), dup_fd(fd), dup_fd(fd)};
    assert_int_equal(vgpu_guest_mem_set_table(mem, bad, fds, 3), -EINVAL);
    for (unsigned int i = 0; i < 3; i++)
        assert_fd_closed(fds[i]);
    assert_int_equal(count_mappings("memfd:set_table_probe"), 1);
    assert_int_equal(vgpu_guest_mem_num_regions(mem), 1);
    assert_int_equal(vgpu_guest_mem_generation(mem), gen);
    assert_non_null(vgpu_guest_mem_gpa_ptr(mem, 0, 64 * KiB));
    assert_null(vgpu_guest_mem_gpa_ptr(mem, 1 * GiB, 1));

    /* Overlap inside the new table itself. */
    struct vgpu_mem_region dup_regions[2] = {
        region(1 * GiB, 64 * KiB, 0x5000000, 0),
        region(1 * GiB + 4096, 64 * KiB, 0x6000000, 0),
    };
    int fds2[2] = {dup_fd(fd), dup_fd(fd)};
    assert_int_equal(vgpu_guest_mem_set_table(mem, dup_regions, fds2, 2), -EEXIST);
    /* The new region that did map is unmapped again. */
    assert_int_equal(count_mappings("memfd:set_table_probe"), 1);
    assert_fd_closed(fds2[0]);
    assert_fd_closed(fds2[1]);
    assert_non_null(vgpu_guest_mem_gpa_ptr(mem, 0, 1));

    /* A good table replaces the old one; it may reuse the old addresses. */
    struct vgpu_mem_region good[2] = {
        region(0x10000, 64 * KiB, 0x1000000, 0),
        region(1 * GiB, 64 * KiB, 0x5000000, 256 * KiB),
    };
    int fds3[2] = {dup_fd(fd), dup_fd(fd)};
    assert_int_equal(vgpu_guest_mem_set_table(mem, good, fds3, 2), 0);
    assert_fd_closed(fds3[0]);
    assert_fd_closed(fds3[1]);
    assert_int_equal(vgpu_guest_mem_num_regions(mem), 2);
    assert_int_equal(count_mappings("memfd:set_table_probe"), 2);
    assert_true(vgpu_guest_mem_generation(mem) > gen);
    assert_null(vgpu_guest_mem_gpa_ptr(mem, 0, 1));
    assert_non_null(vgpu_guest_mem_gpa_ptr(mem, 0x10000, 64 * KiB));
    assert_non_null(vgpu_guest_mem_gpa_ptr(mem, 1 * GiB, 64 * KiB));

    /* More than the maximum: refused, every fd closed. */
    struct vgpu_mem_region many[VGPU_GUEST_MEM_MAX_REGIONS + 1];
    int many_fds[VGPU_GUEST_MEM_MAX_REGIONS + 1];
    for (unsigned int i = 0; i <= VGPU_GUEST_MEM_MAX_REGIONS; i++) {
        many[i] = region(4096ull * i, 4096, 0x10000000 + 4096ull * i, 4096ull * i);
        many_fds[i] = dup_fd(fd);
    }
    assert_int_equal(vgpu_guest_mem_set_table(mem, many, many_fds, VGPU_GUEST_MEM_MAX_REGIONS + 1),
                     -ENOSPC);
    for (unsigned int i = 0; i <= VGPU_GUEST_MEM_MAX_REGIONS; i++)
        assert_fd_closed(many_fds[i]);
    assert_int_equal(vgpu_guest_mem_num_regions(mem), 2);

    /* An empty table empties. */
    assert_int_equal(vgpu_guest_mem_set_table(mem, NULL, NULL, 0), 0);
    assert_int_equal(vgpu_guest_mem_num_regions(mem), 0);
    assert_int_equal(count_mappings("memfd:set_table_probe"), 0);

    close(fd);
    vgpu_guest_mem_destroy(mem);
}

static void test_region_cap(void **state)
{
    struct vgpu_guest_mem *mem = vgpu_guest_mem_create();
    int fd = make_memfd((VGPU_GUEST_MEM_MAX_REGIONS + 1) * 4096ull);
    uint64_t gen = vgpu_guest_mem_generation(mem);
    for (unsigned int i = 0; i < VGPU_GUEST_MEM_MAX_REGIONS; i++) {
        struct vgpu_mem_region r =
            region(0x2000ull * i, 4096, 0x100000 + 0x2000ull * i, 4096ull * i);
        add_expect(mem, r, fd, 0);
    }
    assert_int_equal(vgpu_guest_mem_num_regions(mem), VGPU_GUEST_MEM_MAX_REGIONS);
    assert_int_equal(vgpu_guest_mem_generation(mem), gen + VGPU_GUEST_MEM_MAX_REGIONS);
    add_expect(mem, region(1 * GiB, 4096, 1 * GiB, 0), fd, -ENOSPC);

    /* Each region maps its own page. */
    for (unsigned int i = 0; i < VGPU_GUEST_MEM_MAX_REGIONS; i++) {
        uint8_t v = (uint8_t)(i + 1);
        assert_int_equal(pwrite(fd, &v, 1, (off_t)(4096ull * i)), 1);
    }
    for (unsigned int i = 0; i < VGPU_GUEST_MEM_MAX_REGIONS; i++)
        assert_int_equal(*(uint8_t *)vgpu_guest_mem_gpa_ptr(mem, 0x2000ull * i, 1), i + 1);
    /* The holes between regions are unmapped. */
    assert_null(vgpu_guest_mem_gpa_ptr(mem, 0x1000, 1));

    close(fd);
    vgpu_guest_mem_destroy(mem);
}

static void test_destroy_null(void **state)
{
    vgpu_guest_mem_destroy(NULL);
    struct vgpu_guest_mem *mem = vgpu_guest_mem_create();
    assert_int_equal(vgpu_guest_mem_num_regions(mem), 0);
    assert_null(vgpu_guest_mem_gpa_ptr(mem, 0, 1));
    unsigned int n = 0;
    struct iovec iov[1];
    assert_int_equal(vgpu_guest_mem_gpa_iov(mem, 0, 1, iov, 1, &n), -EFAULT);
    vgpu_guest_mem_destroy(mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_translate),
        cmocka_unit_test(test_mmap_offset),
        cmocka_unit_test(test_mmap_offset_unaligned_and_large),
        cmocka_unit_test(test_cross_region),
        cmocka_unit_test(test_efault_and_enobufs),
        cmocka_unit_test(test_add_rejects),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_set_table),
        cmocka_unit_test(test_region_cap),
        cmocka_unit_test(test_destroy_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
