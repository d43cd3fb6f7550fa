/* SPDX-License-Identifier: MIT */
#ifndef VGPU_PRESENT_FRAME_H
#define VGPU_PRESENT_FRAME_H

#include <stddef.h>
#include <stdint.h>

/*
 * A damaged rectangle of one scanout, converted for display: native-endian 0xAARRGGBB words
 * (pixman x8r8g8b8 / a8r8g8b8, what QEMU's display protocol expects), stride width * 4.
 *
 * Ownership: the render thread fills a frame and hands it to a presenter; the presenter gives
 * it back when it is sent or dropped. At most one frame per scanout is outside the render
 * thread at any time (that is the display back-pressure: newest damage wins, nothing queues).
 */
struct vgpu_frame {
    uint32_t scanout;
    uint32_t x, y;          /* position of the rectangle in the scanout */
    uint32_t width, height; /* rectangle size; pixels holds width * height words */
    uint8_t *pixels;
    size_t capacity; /* bytes allocated at pixels */
};

/* A 64x64 cursor image: native-endian 0xAARRGGBB words. */
#define VGPU_CURSOR_SIZE 64u

#endif
