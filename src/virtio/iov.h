/* SPDX-License-Identifier: MIT */
#ifndef VGPU_VIRTIO_IOV_H
#define VGPU_VIRTIO_IOV_H

#include <stddef.h>
#include <sys/uio.h>

/*
 * Scatter/gather helpers over iovec lists that point into guest memory. Pure functions;
 * every copy is bounded by both the list and the caller's buffer.
 */

/* Total bytes described by iov[0..n). Saturates at SIZE_MAX. */
size_t vgpu_iov_size(const struct iovec *iov, unsigned int n);

/* Copies up to len bytes starting at byte offset off of the list into dst. Returns bytes
 * copied (less than len when the list is shorter). */
size_t vgpu_iov_to_buf(const struct iovec *iov, unsigned int n, size_t off, void *dst, size_t len);

/* Copies up to len bytes from src into the list starting at byte offset off. Returns bytes
 * copied. */
size_t vgpu_iov_from_buf(const struct iovec *iov, unsigned int n, size_t off, const void *src,
                         size_t len);

#endif
