/* SPDX-License-Identifier: MIT */
#include "render/pixel.h"

#include <string.h>

#include <linux/virtio_gpu.h>

struct format_info {
    const char *name;
    bool has_alpha;
};

static const struct format_info *info_of(uint32_t fmt)
{
    static const struct format_info bgra = {"B8G8R8A8_UNORM", true};
    static const struct format_info bgrx = {"B8G8R8X8_UNORM", false};
    static const struct format_info argb = {"A8R8G8B8_UNORM", true};
    static const struct format_info xrgb = {"X8R8G8B8_UNORM", false};
    static const struct format_info rgba = {"R8G8B8A8_UNORM", true};
    static const struct format_info xbgr = {"X8B8G8R8_UNORM", false};
    static const struct format_info abgr = {"A8B8G8R8_UNORM", true};
    static const struct format_info rgbx = {"R8G8B8X8_UNORM", false};

    switch (fmt) {
    case VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM:
        return &bgra;
    case VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM:
        return &bgrx;
    case VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM:
        return &argb;
    case VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM:
        return &xrgb;
    case VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM:
        return &rgba;
    case VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM:
        return &xbgr;
    case VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM:
        return &abgr;
    case VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM:
        return &rgbx;
    default:
        return NULL;
    }
}

bool vgpu_format_is_valid(uint32_t fmt)
{
    return info_of(fmt) != NULL;
}

bool vgpu_format_has_alpha(uint32_t fmt)
{
    const struct format_info *f = info_of(fmt);
    return f && f->has_alpha;
}

uint32_t vgpu_format_from_virgl(uint32_t virgl_fmt)
{
    if (info_of(virgl_fmt))
        return virgl_fmt;
    /* enum virgl_formats (virglrenderer's virgl_hw.h). */
    switch (virgl_fmt) {
    case 98: /* A8B8G8R8_SRGB */
        return VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM;
    case 99: /* X8B8G8R8_SRGB */
        return VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM;
    case 100: /* B8G8R8A8_SRGB */
        return VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM;
    case 101: /* B8G8R8X8_SRGB */
        return VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM;
    case 102: /* A8R8G8B8_SRGB */
        return VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM;
    case 103: /* X8R8G8B8_SRGB */
        return VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM;
    case 104: /* R8G8B8A8_SRGB */
        return VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM;
    default:
        return 0;
    }
}

const char *vgpu_format_name(uint32_t fmt)
{
    const struct format_info *f = info_of(fmt);
    return f ? f->name : "invalid";
}

/*
 * b, g, r, a: where each channel sits among a pixel's four source bytes (a may be an X byte).
 * Inlined with constant positions, so each format gets its own straight-line
 * loop (which compilers turn into a word load, a byte swap or rotate, and a store) instead of
 * one loop indexing through a table per byte. Reads a whole pixel before writing it, which is
 * what makes in-place conversion safe.
 */
static inline void shuffle(const uint8_t *src, uint8_t *dst, size_t n, unsigned int b,
                           unsigned int g, unsigned int r, unsigned int a)
{
    for (size_t i = 0; i < n; i++, src += 4, dst += 4) {
        uint32_t w = (uint32_t)src[a] << 24 | (uint32_t)src[r] << 16 | (uint32_t)src[g] << 8 |
                     (uint32_t)src[b];
        memcpy(dst, &w, sizeof(w));
    }
}

void vgpu_pixel_row_to_argb(uint32_t fmt, const uint8_t *src, uint8_t *dst, size_t n)
{
    switch (fmt) {
    case VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM:
    case VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM:
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* Already B, G, R, A/X in memory, which is 0xAARRGGBB on this host. */
        if (src != dst && n > 0)
            memcpy(dst, src, n * 4);
#else
        shuffle(src, dst, n, 0, 1, 2, 3);
#endif
        return;
    case VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM:
    case VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM:
        shuffle(src, dst, n, 3, 2, 1, 0);
        return;
    case VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM:
    case VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM:
        shuffle(src, dst, n, 2, 1, 0, 3);
        return;
    case VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM:
    case VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM:
        shuffle(src, dst, n, 1, 2, 3, 0);
        return;
    default:
        return;
    }
}
