/* SPDX-License-Identifier: MIT */
/*
 * The daemon as a child process: spawn, watch, kill. A test that fails half-way must never
 * leave a daemon behind, so every child gets PR_SET_PDEATHSIG (covers a test killed by the
 * CTest timeout or a crash) and live children are killed by an atexit handler (covers a test
 * that exits without tearing down).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frontend.h"
#include "frontend_priv.h"

#define RUN_CAPTURE_MAX (1u << 20)

struct vgpu_fe_daemon {
    pid_t pid;
    bool reaped;
    int wstatus;
    int stderr_fd; /* memfd holding the child's stderr, or -1 */
    char *socket_path;
    struct vgpu_fe_daemon *next; /* registry of live children */
};

static struct vgpu_fe_daemon *registry;
static bool atexit_installed;

int vgpu_fe_timeout_ms(int base_ms)
{
    const char *s = getenv("VGPU_TIMEOUT_MULTIPLIER");
    double mult = 1.0;

    if (s != NULL && *s != '\0') {
        char *end = NULL;
        double v = strtod(s, &end);
        if (end != s && v > 0.0)
            mult = v;
    }
    double t = (double)base_ms * mult;
    if (t >= (double)INT_MAX)
        return INT_MAX;
    return (int)t;
}

int64_t vgpu_fe_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t fe_deadline(int timeout_ms)
{
    if (timeout_ms < 0)
        timeout_ms = 0;
    return vgpu_fe_now_ms() + timeout_ms;
}

int fe_remaining(int64_t deadline)
{
    int64_t left = deadline - vgpu_fe_now_ms();

    if (left <= 0)
        return 0;
    if (left > INT_MAX)
        return INT_MAX;
    return (int)left;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

const char *vgpu_fe_binary(void)
{
    const char *b = getenv("VGPU_BINARY");

    return (b != NULL && *b != '\0') ? b : NULL;
}

static void registry_remove(struct vgpu_fe_daemon *d)
{
    for (struct vgpu_fe_daemon **p = &registry; *p != NULL; p = &(*p)->next) {
        if (*p == d) {
            *p = d->next;
            d->next = NULL;
            return;
        }
    }
}

static void kill_all_children(void)
{
    for (struct vgpu_fe_daemon *d = registry; d != NULL; d = d->next) {
        if (!d->reaped) {
            (void)kill(d->pid, SIGKILL);
            (void)waitpid(d->pid, NULL, 0);
            d->reaped = true;
        }
    }
}

/* NULL-terminated argv: binary, pre..., args... Returns NULL on allocation failure. */
static char **build_argv(const char *binary, const char *const *pre, const char *const *args)
{
    size_t n = 1;

    for (const char *const *p = pre; p != NULL && *p != NULL; p++)
        n++;
    for (const char *const *p = args; p != NULL && *p != NULL; p++)
        n++;
    char **argv = calloc(n + 1, sizeof(*argv));
    if (argv == NULL)
        return NULL;
    size_t i = 0;
    argv[i++] = (char *)binary;
    for (const char *const *p = pre; p != NULL && *p != NULL; p++)
        argv[i++] = (char *)*p;
    for (const char *const *p = args; p != NULL && *p != NULL; p++)
        argv[i++] = (char *)*p;
    argv[i] = NULL;
    return argv;
}

/*
 * In the child, between fork and exec: only async-signal-safe calls. Makes the child die with
 * us, restores default signal state (ignored dispositions survive exec: a test that ignores
 * SIGPIPE must not hide a daemon that dies of it), moves the fds into place and closes the rest.
 */
static void child_setup(pid_t parent, int keep_fd, int err_fd, int out_fd, int in_fd)
{
    struct sigaction sa;
    sigset_t none;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    if (in_fd >= 0 && dup2(in_fd, 0) < 0)
        _exit(127);
    if (out_fd >= 0 && dup2(out_fd, 1) < 0)
        _exit(127);
    if (err_fd >= 0 && dup2(err_fd, 2) < 0)
        _exit(127);
    unsigned int first_closed = 3;
    if (keep_fd >= 0) {
        if (keep_fd != 3) {
            if (dup2(keep_fd, 3) < 0)
                _exit(127);
        } else if (fcntl(3, F_SETFD, 0) < 0) {
            _exit(127);
        }
        first_closed = 4;
    }
    if (close_range(first_closed, ~0u, 0) < 0) {
        for (int fd = (int)first_closed; fd < 4096; fd++)
            close(fd);
    }
}

static void child_exec(char **argv)
{
    static const char msg[] = "frontend: exec of the daemon binary failed\n";

    execv(argv[0], argv);
    if (write(2, msg, sizeof(msg) - 1) < 0) {
        /* nothing left to do */
    }
    _exit(127);
}

/* Forks and execs binary pre... args...; keep_fd becomes fd 3 in the child. */
static struct vgpu_fe_daemon *spawn(const char *const *pre, const char *const *args,
                                    unsigned int flags, int keep_fd)
{
    const char *binary = vgpu_fe_binary();

    if (binary == NULL) {
        errno = ENOENT;
        return NULL;
    }
    struct vgpu_fe_daemon *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    d->stderr_fd = -1;
    char **argv = build_argv(binary, pre, args);
    if (argv == NULL)
        goto err_argv;
    if (flags & VGPU_FE_SPAWN_CAPTURE_STDERR) {
        d->stderr_fd = memfd_create("vgpu-fe-daemon-stderr", MFD_CLOEXEC);
        if (d->stderr_fd < 0)
            goto err_memfd;
    }
    if (!atexit_installed) {
        (void)atexit(kill_all_children);
        atexit_installed = true;
    }
    (void)fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        goto err_fork;
    if (pid == 0) {
        child_setup(parent, keep_fd, d->stderr_fd, -1, -1);
        child_exec(argv);
    }
    free(argv);
    d->pid = pid;
    d->next = registry;
    registry = d;
    return d;

err_fork:
    if (d->stderr_fd >= 0)
        close(d->stderr_fd);
err_memfd:
    free(argv);
err_argv:
    free(d);
    return NULL;
}

struct vgpu_fe_daemon *vgpu_fe_daemon_spawn_fd(const char *const *args, unsigned int flags,
                                               int *sock)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return NULL;
    const char *const pre[] = {"--fd", "3", NULL};
    struct vgpu_fe_daemon *d = spawn(pre, args, flags, sv[1]);
    int saved = errno;
    close(sv[1]);
    if (d == NULL) {
        close(sv[0]);
        errno = saved;
        return NULL;
    }
    *sock = sv[0];
    return d;
}

static bool is_socket(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

struct vgpu_fe_daemon *vgpu_fe_daemon_spawn_socket(const char *path, const char *const *args,
                                                   unsigned int flags)
{
    const char *const pre[] = {"--socket-path", path, NULL};
    char *copy = strdup(path);

    if (copy == NULL)
        return NULL;
    struct vgpu_fe_daemon *d = spawn(pre, args, flags, -1);
    if (d == NULL) {
        free(copy);
        return NULL;
    }
    d->socket_path = copy;
    int64_t deadline = fe_deadline(vgpu_fe_timeout_ms(10000));
    for (;;) {
        if (is_socket(path))
            return d;
        if (!vgpu_fe_daemon_is_alive(d)) {
            vgpu_fe_daemon_destroy(d);
            errno = ECHILD;
            return NULL;
        }
        if (fe_remaining(deadline) == 0) {
            vgpu_fe_daemon_destroy(d);
            errno = ETIMEDOUT;
            return NULL;
        }
        sleep_ms(2);
    }
}

void vgpu_fe_daemon_destroy(struct vgpu_fe_daemon *d)
{
    if (d == NULL)
        return;
    if (!d->reaped) {
        (void)kill(d->pid, SIGKILL);
        (void)waitpid(d->pid, &d->wstatus, 0);
        d->reaped = true;
    }
    registry_remove(d);
    if (d->stderr_fd >= 0)
        close(d->stderr_fd);
    free(d->socket_path);
    free(d);
}

pid_t vgpu_fe_daemon_pid(const struct vgpu_fe_daemon *d)
{
    return d->pid;
}

const char *vgpu_fe_daemon_socket_path(const struct vgpu_fe_daemon *d)
{
    return d->socket_path;
}

static int try_connect(const char *path)
{
    struct sockaddr_un sa;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

static int connect_loop(struct vgpu_fe_daemon *d, const char *path, int timeout_ms)
{
    int64_t deadline = fe_deadline(timeout_ms);

    for (;;) {
        int fd = try_connect(path);
        if (fd >= 0)
            return fd;
        if (fd != -ENOENT && fd != -ECONNREFUSED)
            return fd;
        if (d != NULL && !vgpu_fe_daemon_is_alive(d))
            return -ECHILD;
        if (fe_remaining(deadline) == 0)
            return -ETIMEDOUT;
        sleep_ms(2);
    }
}

int vgpu_fe_daemon_connect(struct vgpu_fe_daemon *d, int timeout_ms)
{
    if (d->socket_path == NULL)
        return -EINVAL;
    return connect_loop(d, d->socket_path, timeout_ms);
}

int vgpu_fe_connect_path(const char *path, int timeout_ms)
{
    return connect_loop(NULL, path, timeout_ms);
}

bool vgpu_fe_daemon_is_alive(struct vgpu_fe_daemon *d)
{
    if (d->reaped)
        return false;
    pid_t r = waitpid(d->pid, &d->wstatus, WNOHANG);
    if (r == d->pid || (r < 0 && errno == ECHILD)) {
        d->reaped = true;
        return false;
    }
    return true;
}

int vgpu_fe_daemon_signal(struct vgpu_fe_daemon *d, int sig)
{
    if (d->reaped)
        return -ESRCH;
    return kill(d->pid, sig) == 0 ? 0 : -errno;
}

int vgpu_fe_daemon_wait(struct vgpu_fe_daemon *d, int timeout_ms, int *wstatus)
{
    int64_t deadline = fe_deadline(timeout_ms);

    while (vgpu_fe_daemon_is_alive(d)) {
        if (fe_remaining(deadline) == 0)
            return -ETIMEDOUT;
        sleep_ms(2);
    }
    if (wstatus != NULL)
        *wstatus = d->wstatus;
    return 0;
}

static int proc_fd_dir(const struct vgpu_fe_daemon *d, DIR **out)
{
    char path[64];

    (void)snprintf(path, sizeof(path), "/proc/%d/fd", (int)d->pid);
    *out = opendir(path);
    return *out != NULL ? 0 : -errno;
}

int vgpu_fe_daemon_fd_count(const struct vgpu_fe_daemon *d)
{
    DIR *dir;
    int r = proc_fd_dir(d, &dir);
    int n = 0;

    if (r < 0)
        return r;
    for (struct dirent *e = readdir(dir); e != NULL; e = readdir(dir)) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(dir);
    return n;
}

int vgpu_fe_daemon_fd_list(const struct vgpu_fe_daemon *d, char *buf, size_t size)
{
    DIR *dir;
    int r = proc_fd_dir(d, &dir);
    size_t off = 0;

    if (r < 0)
        return r;
    if (size == 0) {
        closedir(dir);
        return -EINVAL;
    }
    buf[0] = '\0';
    for (struct dirent *e = readdir(dir); e != NULL; e = readdir(dir)) {
        char link[300];
        char target[256];

        if (e->d_name[0] == '.')
            continue;
        (void)snprintf(link, sizeof(link), "/proc/%d/fd/%s", (int)d->pid, e->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        int w = snprintf(buf + off, size - off, "%s -> %s\n", e->d_name, target);
        if (w < 0 || (size_t)w >= size - off) {
            off = size - 1;
            break;
        }
        off += (size_t)w;
    }
    closedir(dir);
    return (int)off;
}

long vgpu_fe_daemon_rss_kib(const struct vgpu_fe_daemon *d)
{
    char path[64];
    char line[256];
    long kib = -ENOENT;

    (void)snprintf(path, sizeof(path), "/proc/%d/status", (int)d->pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -errno;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    (void)fclose(f);
    return kib;
}

long vgpu_fe_daemon_stderr(const struct vgpu_fe_daemon *d, char *buf, size_t size)
{
    struct stat st;

    if (d->stderr_fd < 0 || size == 0)
        return -EINVAL;
    if (fstat(d->stderr_fd, &st) < 0)
        return -errno;
    size_t len = (size_t)st.st_size;
    off_t start = 0;
    if (len > size - 1) {
        start = (off_t)(len - (size - 1));
        len = size - 1;
    }
    ssize_t n = pread(d->stderr_fd, buf, len, start);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return (long)n;
}

/* Appends what is readable on fd to *buf (capped); returns false at EOF or error. */
static bool drain_pipe(int fd, char **buf, size_t *len)
{
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof(chunk));

    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n <= 0)
        return false;
    size_t keep = (size_t)n;
    if (*len + keep > RUN_CAPTURE_MAX)
        keep = RUN_CAPTURE_MAX - *len;
    if (keep > 0) {
        char *nb = realloc(*buf, *len + keep + 1);
        if (nb == NULL)
            return true;
        *buf = nb;
        memcpy(*buf + *len, chunk, keep);
        *len += keep;
        (*buf)[*len] = '\0';
    }
    return true;
}

int vgpu_fe_run(const char *const *args, int timeout_ms, struct vgpu_fe_run_result *res)
{
    const char *binary = vgpu_fe_binary();
    int out[2], err[2];
    int ret = 0;

    memset(res, 0, sizeof(*res));
    res->out = calloc(1, 1);
    res->err = calloc(1, 1);
    if (res->out == NULL || res->err == NULL) {
        vgpu_fe_run_result_finish(res);
        return -ENOMEM;
    }
    if (binary == NULL)
        return -ENOENT;
    char **argv = build_argv(binary, NULL, args);
    if (argv == NULL)
        return -ENOMEM;
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0) {
        ret = -errno;
        goto err_devnull;
    }
    if (pipe2(out, O_CLOEXEC) < 0) {
        ret = -errno;
        goto err_out;
    }
    if (pipe2(err, O_CLOEXEC) < 0) {
        ret = -errno;
        goto err_err;
    }
    if (!atexit_installed) {
        (void)atexit(kill_all_children);
        atexit_installed = true;
    }
    (void)fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        ret = -errno;
        goto err_fork;
    }
    if (pid == 0) {
        child_setup(parent, -1, err[1], out[1], devnull);
        child_exec(argv);
    }
    /* Registered like a daemon so an early exit() still kills it. */
    struct vgpu_fe_daemon self = {.pid = pid, .stderr_fd = -1, .next = registry};
    registry = &self;
    close(out[1]);
    close(err[1]);
    out[1] = err[1] = -1;

    int64_t deadline = fe_deadline(timeout_ms);
    bool out_open = true, err_open = true;
    while (out_open || err_open) {
        struct pollfd pfd[2] = {{.fd = out_open ? out[0] : -1, .events = POLLIN},
                                {.fd = err_open ? err[0] : -1, .events = POLLIN}};
        int left = fe_remaining(deadline);
        if (left == 0) {
            ret = -ETIMEDOUT;
            break;
        }
        int r = poll(pfd, 2, left);
        if (r < 0 && errno != EINTR) {
            ret = -errno;
            break;
        }
        if (r <= 0)
            continue;
        if (pfd[0].revents != 0)
            out_open = drain_pipe(out[0], &res->out, &res->out_len);
        if (pfd[1].revents != 0)
            err_open = drain_pipe(err[0], &res->err, &res->err_len);
    }
    if (ret == 0 && vgpu_fe_daemon_wait(&self, fe_remaining(deadline), &res->wstatus) < 0)
        ret = -ETIMEDOUT;
    if (!self.reaped) {
        (void)kill(pid, SIGKILL);
        (void)waitpid(pid, &res->wstatus, 0);
        self.reaped = true;
    }
    registry_remove(&self);

err_fork:
    if (err[1] >= 0)
        close(err[1]);
    close(err[0]);
err_err:
    if (out[1] >= 0)
        close(out[1]);
    close(out[0]);
err_out:
    close(devnull);
err_devnull:
    free(argv);
    return ret;
}

void vgpu_fe_run_result_finish(struct vgpu_fe_run_result *res)
{
    free(res->out);
    free(res->err);
    res->out = res->err = NULL;
    res->out_len = res->err_len = 0;
}
