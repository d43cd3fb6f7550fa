/* SPDX-License-Identifier: MIT */
#ifndef VGPU_RENDER_PIXEL_H
#define VGPU_RENDER_PIXEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The eight 32-bit virtio-gpu 2D formats (enum virtio_gpu_formats in <linux/virtio_gpu.h>) and
 * conversion of their rows to the one layout the presenters take.
 *
 * A format's name spells its bytes in memory order, lowest address first: B8G8R8X8 is the bytes
 * B, G, R, X, i.e. the little-endian word 0xXXRRGGBB, pixman's x8r8g8b8 (as in QEMU's
 * virtio_gpu_get_pixman_format()). This holds on any host: formats are byte orders, not words.
 *
 * All functions are pure: any thread.
 */

/* True for the eight formats of enum virtio_gpu_formats, false for anything else. */
bool vgpu_format_is_valid(uint32_t fmt);

/* True for the four formats with an alpha byte (A8*, *A8); false for X8 and invalid formats. */
bool vgpu_format_has_alpha(uint32_t fmt);

/*
 * The 2D format whose bytes a virglrenderer (gallium) format has, or 0. The eight 2D formats
 * share their numbers with virgl's; the sRGB variants of the same byte orders map to them
 * (sRGB changes how values are read, not where the bytes are).
 */
uint32_t vgpu_format_from_virgl(uint32_t virgl_fmt);

/*
 * Name without the prefix, e.g. "B8G8R8X8_UNORM"; "invalid" for an unknown value. Never NULL;
 * the string is static.
 */
const char *vgpu_format_name(uint32_t fmt);

/*
 * Converts n pixels of format fmt at src into n host-endian uint32_t words 0xAARRGGBB at dst
 * (pixman a8r8g8b8 / SDL ARGB8888; on little-endian hosts the bytes B, G, R, A).
 *
 * The X byte of the four X8 formats is passed through unchanged into the A position, not
 * forced to 0xFF: consumers must treat the top byte as don't-care for formats where
 * vgpu_format_has_alpha() is false, as QEMU's display does with x8r8g8b8. This keeps
 * B8G8R8X8 -> ARGB (the fbcon and most desktops' format) a plain memcpy on little-endian hosts,
 * as is B8G8R8A8; the other formats are shuffled byte by byte.
 *
 * src and dst need no particular alignment (all accesses go through bytes or memcpy). Each holds
 * 4 * n bytes. They may be the same buffer (in-place conversion) but must not otherwise overlap.
 * n == 0 does nothing. An invalid fmt is a caller bug (formats are checked at resource creation):
 * dst is then left untouched.
 */
void vgpu_pixel_row_to_argb(uint32_t fmt, const uint8_t *src, uint8_t *dst, size_t n);

#endif
