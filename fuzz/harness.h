/* SPDX-License-Identifier: MIT */
#ifndef VGPU_FUZZ_HARNESS_H
#define VGPU_FUZZ_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/gpu_dev.h"
#include "virtio/vu_dev.h"
#include "virtio/vu_msg.h"
#include "virtio/watch.h"

/*
 * Shared by the libFuzzer targets: an in-process vhost-user session (vgpu_vu_dev plus the gpu
 * device, wired as src/reactor/server.c does) on a socketpair whose other end the fuzzer plays,
 * a fake watcher that records watches and never runs an event loop, the process's one render
 * thread, and checks that turn silent resource leaks (fds, watches) into crashes.
 *
 * Everything runs on the fuzzer's thread, which plays the reactor thread.
 */

/* libFuzzer entry points (declared here for -Wmissing-prototypes). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Prints "fuzz: <message>" and aborts: a finding, reported like a sanitizer crash. */
void fz_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * Log level from $VGPU_FUZZ_LOG (error, warn, info, debug); default error. Call once, from
 * LLVMFuzzerInitialize (before libFuzzer may close stderr for -close_fd_mask=2).
 */
void fz_init_logging(void);

/* ---- fake watcher ---- */

#define FZ_MAX_WATCHES 32u

struct fz_watch {
    bool active;
    int fd;
    unsigned int events;
    vgpu_watch_fn fn;
    void *data;
};

struct fz_watcher {
    struct vgpu_watcher w; /* what the code under test is given */
    struct fz_watch watches[FZ_MAX_WATCHES];
    int last_fd; /* fd of the most recent successful watch, or -1 */
};

void fz_watcher_init(struct fz_watcher *fw);
unsigned int fz_watcher_count(const struct fz_watcher *fw);
/* The active watch on fd, or NULL. */
struct fz_watch *fz_watcher_find(struct fz_watcher *fw, int fd);
/* The i-th active watch (i taken modulo the count), or NULL when there is none. */
struct fz_watch *fz_watcher_nth(struct fz_watcher *fw, unsigned int i);
/* Dies if a watched fd is closed (the real reactor would poll a dead or reused fd). */
void fz_watcher_check_open(const struct fz_watcher *fw, const char *when);
/* Runs the callback of w as the event loop would. w may be gone afterwards. */
void fz_watch_fire(struct fz_watch *w, unsigned int events);
/*
 * What the event loop would report for w right now (poll with no timeout): VGPU_EV_* bits
 * among those watched, 0 when the fd is not ready. A callback must only run for a ready fd:
 * called otherwise, it may block on the fd (a kick fd that is a socket, say) where the daemon
 * never would.
 */
unsigned int fz_watch_ready(const struct fz_watch *w);
/* Whether fd is an eventfd (a kick or call fd rather than a display socket or timer). */
bool fz_is_eventfd(int fd);

/* ---- the render thread ---- */

/* The process's render thread (2D), created on first use with a no-op notify. Never freed. */
struct vgpu_render *fz_render(void);

/* Small limits so that one input cannot hold the host's memory for long. */
void fz_gpu_options(struct vgpu_gpu_options *opts);

/* ---- a session ---- */

struct fz_session {
    int peer; /* the front-end's end of the socketpair; -1 once closed */
    struct vgpu_vu_dev *dev;
    struct vgpu_gpu_dev *gpu;
    struct fz_watcher watcher;
    bool dead; /* handle_socket failed: the server would have destroyed the session */
};

/* Creates the session and plugs the gpu device in. Dies on failure (harness bug). */
void fz_session_init(struct fz_session *s, const struct vgpu_gpu_options *opts);

/*
 * Sends len raw bytes with nfds fds (SCM_RIGHTS, not consumed: the caller still owns them)
 * in one sendmsg, then lets the session handle its socket as the reactor would when it becomes
 * readable, and throws away whatever the session replied. Returns the handle_socket result
 * (0, or negative: the session is then dead and later calls do nothing).
 */
int fz_session_feed(struct fz_session *s, const void *buf, size_t len, const int *fds,
                    unsigned int nfds);

/*
 * A well-formed request with the NEED_REPLY flag, for setting up a session: sends it, lets
 * the session handle it and reads the reply back into reply (at most reply_max bytes; reply
 * may be NULL). Returns the reply's payload size, or -1 when the session sent no reply (no
 * body and REPLY_ACK not negotiated). Dies if the session closes the connection.
 */
int fz_session_request(struct fz_session *s, uint32_t request, const void *payload, uint32_t size,
                       const int *fds, unsigned int nfds, void *reply, size_t reply_max);

/* Closes the front-end's end: the session sees EOF at its next read. */
void fz_session_disconnect(struct fz_session *s);

/* Destroys the session as server.c does, then checks that every watch was removed. */
void fz_session_finish(struct fz_session *s);

/* ---- fds ---- */

/* Number of open fds of the process (entries of /proc/self/fd). */
int fz_count_fds(void);
/* Dies if the process has a different number of open fds than before (a leaked fd). */
void fz_check_fds(int before, const char *when);

/* A memfd of size bytes (zero-filled). Dies on failure. */
int fz_memfd(const char *name, size_t size);
/* An eventfd, non-blocking. Dies on failure. */
int fz_eventfd(void);

#endif
