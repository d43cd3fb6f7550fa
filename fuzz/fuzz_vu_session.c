/* SPDX-License-Identifier: MIT */
/*
 * fuzz_vu_session: the input is a byte stream of vhost-user messages fed into a real session
 * (vgpu_vu_dev with the gpu device attached, as src/reactor/server.c wires it) over a
 * socketpair. fds cannot come from the input, so each message names how many to attach and of
 * what kind, and the harness makes them fresh (eventfds, memfds as guest memory, sockets...).
 * A few pseudo-operations let the input act as the guest and the event loop would: write guest
 * memory, fire a watched fd's callback, collect render completions, answer on the display
 * socket. At the end the front-end disconnects and the session is destroyed; nothing may
 * crash, leak memory (LSan), fds or watches, or hang.
 *
 * Input: a sequence of items, each starting with a control byte c.
 *
 *   c & 0x80 == 0: a message.
 *     u16 len (little endian, clipped to VGPU_VU_MAX_PAYLOAD + 16 and to what is left),
 *     12 header bytes (request, flags, size as the wire has them), then len payload bytes.
 *     Header and payload go out in one sendmsg. The header's size is sent as given, so the
 *     stream may desynchronise as a real broken front-end's would, unless c & 0x08, which
 *     sets size = len. fds attached: c & 0x07 (7 means 10, more than the session accepts),
 *     of kind (c >> 4) & 0x07:
 *       0 what the request wants (memfd for memory tables, socket for the display and back-end
 *         channels, eventfd otherwise), 1 eventfd, 2 the 1 MiB guest memfd, 3 a socket,
 *       4 a 4 KiB memfd, 5 a pipe, 6 /dev/zero, 7 the guest memfd read-only.
 *   c & 0x80: pseudo-operation (c & 0x07) % 5:
 *     0 poke: u32 offset, u8 n, n bytes written into the guest memfd at offset (wrapped)
 *     1 fire: u8 i, u8 events: the i-th watched fd's callback runs if the fd is ready, as in
 *       the event loop (an eventfd is written first: the guest kicks)
 *     2 completions: waits briefly for the render thread, then processes its completions
 *     3 display: u8 n, n bytes written by "QEMU" on the newest display socket
 *     4 hang up the display sockets' QEMU ends
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "render/render.h"

#define GUEST_MEM_SIZE (1u << 20)
#define SMALL_MEM_SIZE 4096u
#define MAX_ITEMS 256u
#define MAX_PEERS 16u
#define PAYLOAD_MAX (VGPU_VU_MAX_PAYLOAD + 16u)

enum fd_kind {
    FD_AUTO,
    FD_EVENT,
    FD_GUEST_MEM,
    FD_SOCKET,
    FD_SMALL_MEM,
    FD_PIPE,
    FD_DEV_ZERO,
    FD_GUEST_MEM_RO,
};

struct iter {
    struct fz_session s;
    int memfd;            /* guest memory, created on first use */
    uint8_t *mem;         /* our own mapping of it, for pokes */
    int peers[MAX_PEERS]; /* "QEMU" ends of the sockets we sent */
    unsigned int npeers;
};

struct input {
    const uint8_t *p;
    size_t left;
};

static bool take(struct input *in, void *dst, size_t n)
{
    if (in->left < n)
        return false;
    memcpy(dst, in->p, n);
    in->p += n;
    in->left -= n;
    return true;
}

static void guest_mem(struct iter *it)
{
    if (it->memfd >= 0)
        return;
    it->memfd = fz_memfd("fuzz-guest", GUEST_MEM_SIZE);
    void *p = mmap(NULL, GUEST_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, it->memfd, 0);
    if (p == MAP_FAILED)
        fz_die("mmap of the guest memfd: %s", strerror(errno));
    it->mem = p;
}

static int make_socket(struct iter *it)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        fz_die("socketpair: %s", strerror(errno));
    if (it->npeers < MAX_PEERS) {
        it->peers[it->npeers++] = sv[1];
    } else {
        close(sv[1]);
    }
    return sv[0];
}

static int make_fd(struct iter *it, enum fd_kind kind)
{
    int fd = -1;
    switch (kind) {
    case FD_AUTO:
        break;
    case FD_EVENT:
        return fz_eventfd();
    case FD_GUEST_MEM:
        guest_mem(it);
        fd = fcntl(it->memfd, F_DUPFD_CLOEXEC, 0);
        break;
    case FD_SOCKET:
        return make_socket(it);
    case FD_SMALL_MEM:
        return fz_memfd("fuzz-small", SMALL_MEM_SIZE);
    case FD_PIPE: {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
            fz_die("pipe: %s", strerror(errno));
        close(p[1]);
        return p[0];
    }
    case FD_DEV_ZERO:
        fd = open("/dev/zero", O_RDWR | O_CLOEXEC);
        break;
    case FD_GUEST_MEM_RO: {
        guest_mem(it);
        char path[64];
        if (snprintf(path, sizeof(path), "/proc/self/fd/%d", it->memfd) < (int)sizeof(path))
            fd = open(path, O_RDONLY | O_CLOEXEC);
        break;
    }
    }
    if (fd < 0)
        fz_die("cannot make an fd of kind %d: %s", (int)kind, strerror(errno));
    return fd;
}

static enum fd_kind auto_kind(uint32_t request)
{
    switch (request) {
    case VGPU_VU_SET_MEM_TABLE:
    case VGPU_VU_ADD_MEM_REG:
    case VGPU_VU_SET_LOG_FD:
    case VGPU_VU_SET_INFLIGHT_FD:
        return FD_GUEST_MEM;
    case VGPU_VU_GPU_SET_SOCKET:
    case VGPU_VU_SET_BACKEND_REQ_FD:
        return FD_SOCKET;
    default:
        return FD_EVENT;
    }
}

static void do_message(struct iter *it, uint8_t c, struct input *in)
{
    uint16_t len = 0;
    uint8_t buf[VGPU_VU_HDR_SIZE + PAYLOAD_MAX];
    struct vgpu_vu_hdr hdr;

    if (!take(in, &len, sizeof(len)))
        return;
    size_t hdr_len = in->left < VGPU_VU_HDR_SIZE ? in->left : VGPU_VU_HDR_SIZE;
    memset(&hdr, 0, sizeof(hdr));
    take(in, &hdr, hdr_len);
    if (len > PAYLOAD_MAX)
        len = PAYLOAD_MAX;
    if (len > in->left)
        len = (uint16_t)in->left;
    if (c & 0x08)
        hdr.size = len;
    memcpy(buf, &hdr, sizeof(hdr));
    take(in, buf + VGPU_VU_HDR_SIZE, len);

    unsigned int nfds = c & 0x07;
    if (nfds == 7)
        nfds = VGPU_VU_MAX_FDS + 2;
    enum fd_kind kind = (enum fd_kind)((c >> 4) & 0x07);
    if (kind == FD_AUTO)
        kind = auto_kind(hdr.request);
    int fds[VGPU_VU_MAX_FDS + 2];
    for (unsigned int i = 0; i < nfds; i++)
        fds[i] = make_fd(it, kind);

    /* A truncated header is sent as is: the session waits for the rest, which never comes. */
    fz_session_feed(&it->s, buf, hdr_len + len, fds, nfds);
    /* The session got its own copies (SCM_RIGHTS duplicates them). */
    for (unsigned int i = 0; i < nfds; i++)
        close(fds[i]);
}

static void do_pseudo(struct iter *it, uint8_t c, struct input *in)
{
    switch ((c & 0x07) % 5) {
    case 0: { /* poke guest memory */
        uint32_t off;
        uint8_t n;
        if (!take(in, &off, sizeof(off)) || !take(in, &n, sizeof(n)))
            return;
        guest_mem(it);
        off %= GUEST_MEM_SIZE;
        if (n > GUEST_MEM_SIZE - off)
            n = (uint8_t)(GUEST_MEM_SIZE - off);
        if (n > in->left)
            n = (uint8_t)in->left;
        take(in, it->mem + off, n);
        break;
    }
    case 1: { /* fire a watch */
        uint8_t i, ev;
        if (!take(in, &i, 1) || !take(in, &ev, 1) || it->s.dead)
            return;
        struct fz_watch *w = fz_watcher_nth(&it->s.watcher, i);
        if (!w)
            return;
        /* A kick: the guest writes the eventfd. Only a ready fd gets its callback. */
        if (fz_is_eventfd(w->fd) && eventfd_write(w->fd, 1) < 0)
            fz_die("eventfd_write: %s", strerror(errno));
        unsigned int ready = fz_watch_ready(w);
        if (ready)
            fz_watch_fire(w, ev & ready ? ev & ready : ready);
        fz_watcher_check_open(&it->s.watcher, "after a watch callback");
        break;
    }
    case 2: /* render completions */
        if (it->s.dead)
            return;
        vgpu_render_wait(fz_render(), 0);
        vgpu_gpu_dev_process_completions(it->s.gpu);
        break;
    case 3: { /* QEMU writes on the display socket */
        uint8_t n;
        uint8_t buf[255];
        if (!take(in, &n, 1))
            return;
        if (n > in->left)
            n = (uint8_t)in->left;
        take(in, buf, n);
        if (it->npeers && n)
            (void)!send(it->peers[it->npeers - 1], buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        break;
    }
    default: /* QEMU hangs up */
        for (unsigned int i = 0; i < it->npeers; i++)
            shutdown(it->peers[i], SHUT_RDWR);
        break;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_init_logging();
    fz_render();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fds_before = fz_count_fds();
    struct iter it = {.memfd = -1};
    struct vgpu_gpu_options opts;
    fz_gpu_options(&opts);
    fz_session_init(&it.s, &opts);

    struct input in = {.p = data, .left = size};
    for (unsigned int n = 0; n < MAX_ITEMS && in.left > 0 && !it.s.dead; n++) {
        uint8_t c;
        take(&in, &c, 1);
        if (c & 0x80)
            do_pseudo(&it, c, &in);
        else
            do_message(&it, c, &in);
    }

    /* The front-end goes away; the server then destroys the session. */
    fz_session_disconnect(&it.s);
    fz_session_finish(&it.s);
    for (unsigned int i = 0; i < it.npeers; i++)
        close(it.peers[i]);
    if (it.mem)
        munmap(it.mem, GUEST_MEM_SIZE);
    if (it.memfd >= 0)
        close(it.memfd);
    fz_check_fds(fds_before, "after the session");
    return 0;
}
