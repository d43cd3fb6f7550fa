/* SPDX-License-Identifier: MIT */
#ifndef VGPU_TESTS_ITEST_H
#define VGPU_TESTS_ITEST_H

/*
 * Helpers shared by the integration tests (cmocka). Every failure names the front-end's last
 * error, so a red test says what the daemon did wrong.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "frontend.h"

/* Fails the test when expr (an int-returning front-end call) is negative. */
#define FE_CHECK(fe, expr)                                                                         \
    do {                                                                                           \
        int fe_check_r_ = (expr);                                                                  \
        if (fe_check_r_ < 0)                                                                       \
            itest_fail(__FILE__, __LINE__, #expr, fe_check_r_, (fe));                              \
    } while (0)

/* Fails the test when expr does not return exactly want (e.g. -EREMOTEIO). */
#define FE_EXPECT(fe, expr, want)                                                                  \
    do {                                                                                           \
        int fe_expect_r_ = (expr);                                                                 \
        if (fe_expect_r_ != (want))                                                                \
            itest_fail_expect(__FILE__, __LINE__, #expr, fe_expect_r_, (want), (fe));              \
    } while (0)

void itest_fail(const char *file, int line, const char *expr, int r, const struct vgpu_fe *fe);
void itest_fail_expect(const char *file, int line, const char *expr, int r, int want,
                       const struct vgpu_fe *fe);

/* vgpu_fe_timeout_ms() */
int itest_ms(int base_ms);

/* Extra daemon arguments: "--log-level debug" when VGPU_TEST_DEBUG is set, else none. */
const char *const *itest_daemon_args(void);

/*
 * Sessions created by these helpers are tracked: a test that fails half-way leaves its
 * connection open otherwise, and a daemon serving one front-end at a time would then never get
 * to the next test's. Release them with itest_release(); teardowns call itest_release_all().
 */
void itest_release(struct vgpu_fe *fe);
void itest_release_all(void);

/* Spawns an --fd daemon and creates a session on it (not negotiated). cfg may be NULL. */
struct vgpu_fe_daemon *itest_spawn_fd(const struct vgpu_fe_config *cfg, unsigned int flags,
                                      struct vgpu_fe **fe);
/* Spawns a --socket-path daemon. */
struct vgpu_fe_daemon *itest_spawn_socket(const char *path, unsigned int flags);
/* Connects to a --socket-path daemon and creates a session (not negotiated). */
struct vgpu_fe *itest_connect(struct vgpu_fe_daemon *d, const struct vgpu_fe_config *cfg);

/*
 * Control queue: an undefined command (type 0x0999) with FENCE and fence_id; checks used len
 * 24, ERR_UNSPEC, FENCE echoed, fence_id echoed.
 */
void itest_ctrl_roundtrip(struct vgpu_fe *fe, unsigned int flags, uint64_t fence_id);
/* Cursor queue: a 56-byte MOVE_CURSOR, readable only; checks used len 0. */
void itest_cursor_roundtrip(struct vgpu_fe *fe, unsigned int flags);
/* Both of the above. */
void itest_roundtrip(struct vgpu_fe *fe, unsigned int flags);
/* Checks a response header (24 bytes at resp, any alignment) for the undefined command. */
void itest_check_unspec(const void *resp, uint64_t fence_id);
/* Writes the undefined fenced command's 24-byte header at req (any alignment: guest buffers
 * in the tests may start anywhere). */
void itest_fill_unspec(void *req, uint64_t fence_id);

/* Connects a fresh session to a --socket-path daemon, negotiates, does a round trip on both
 * queues and disconnects: "the daemon still serves". */
void itest_check_serves(struct vgpu_fe_daemon *d, const struct vgpu_fe_config *cfg);

/* Releases the session of an --fd daemon and checks the daemon then exits with status 0. */
void itest_finish_fd(struct vgpu_fe_daemon *d, struct vgpu_fe *fe);

/* A fresh private directory (free with itest_rmdir, which also removes its files). */
/*
 * One --socket-path daemon shared by a whole test group, its stderr captured: the tests
 * connect to it in turn and look at its log and fd count.
 */
struct itest_shared {
    char *dir;
    char *path;
    struct vgpu_fe_daemon *d;
    int fd_ref;    /* the group's reference fd count, taken by the group's own set-up */
    long log_seen; /* how much of the log itest_shared_log has returned */
};
/* Spawns the daemon with itest_daemon_args() plus extra (NULL-terminated, may be NULL).
 * 0, or -1 after printing why. */
int itest_shared_start(struct itest_shared *s, const char *const *extra);
void itest_shared_stop(struct itest_shared *s);
/* The daemon's log since the last call (a static buffer, valid until the next call). */
char *itest_shared_log(struct itest_shared *s);
/* A test's teardown: releases its sessions, echoes its part of the log, checks the daemon
 * lives. 0 or -1. */
int itest_shared_test_done(struct itest_shared *s);

char *itest_mkdtemp(void);
void itest_rmdir(char *dir);
/* dir + "/" + name, malloc'd. */
char *itest_path(const char *dir, const char *name);

#endif
