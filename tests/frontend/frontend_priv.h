/* SPDX-License-Identifier: MIT */
#ifndef VGPU_TESTS_FRONTEND_PRIV_H
#define VGPU_TESTS_FRONTEND_PRIV_H

/* Internals of the fake front-end, shared by its .c files only. */

#include <stdbool.h>
#include <stdint.h>

#include "frontend.h"

/* Driver side of one split virtqueue. */
struct fe_vq {
    unsigned int num;
    /* Guest-physical addresses of the parts and of the indirect-table pool (num tables of
     * max_indirect descriptors, table i for head i). */
    uint64_t desc_gpa, avail_gpa, used_gpa, indirect_gpa;
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    uint16_t *used_event;  /* avail->ring[num], written by us */
    uint16_t *avail_event; /* after used->ring[num], written by the device */
    /* Host-side bookkeeping, immune to whatever a test writes into the rings. */
    uint16_t *free_list; /* stack of free descriptor indices */
    unsigned int nfree;
    uint16_t *next;      /* next[i]: the descriptor after i in the chain we built */
    uint16_t *chain_len; /* per head: descriptors to free when it returns (0: crafted) */
    bool *inflight;      /* per head */
    unsigned int ninflight;
    uint16_t avail_idx;     /* our shadow of avail->idx */
    uint16_t kick_old;      /* avail_idx at the last kick decision */
    uint16_t last_used;     /* next used entry to consume */
    uint16_t notified_used; /* used entries before this were announced (or legitimately not) */
    unsigned int calls;
    /* Eventfds, alive for the whole session. */
    int kick_fd, call_fd, masked_fd, err_fd;
    /* Scratch memory for vgpu_fe_cmd(). */
    uint64_t scratch_gpa;
    uint32_t scratch_size;
};

struct vgpu_fe {
    struct vgpu_fe_config cfg;
    struct vgpu_fe_info info;
    int sock;
    int display_fd;
    int backend_fd;
    /* Guest memory: one memfd, mapped contiguously at mem; in two-region mode each region also
     * has its own mapping (views[i]) whose address is the region's user address. */
    int memfd;
    uint8_t *mem;
    uint64_t mem_size;
    void *views[2];
    struct vgpu_fe_region regions[2];
    unsigned int nregions;
    uint64_t alloc_next;
    struct fe_vq vq[VGPU_FE_NUM_QUEUES];
    uint64_t last_ack;
    unsigned int display_counts[VGPU_FE_DISPLAY_MAX];
    char err[512];
};

/* Records the reason of a failure in fe->err and returns err (a negative errno). */
int fe_fail(struct vgpu_fe *fe, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

int64_t fe_deadline(int timeout_ms);
int fe_remaining(int64_t deadline);

/* Virtqueue internals (vq.c). */
int fe_vq_init(struct vgpu_fe *fe, unsigned int q);
void fe_vq_finish(struct vgpu_fe *fe, unsigned int q);
/* Lays out fresh rings in guest memory (new addresses) and resets the driver state. */
int fe_vq_setup_rings(struct vgpu_fe *fe, unsigned int q);
/* After the real call fd is installed: accounts for notifications that hit the masked fd. */
void fe_vq_unmask(struct vgpu_fe *fe, unsigned int q);
bool fe_has_feature(const struct vgpu_fe *fe, unsigned int bit);

#endif
