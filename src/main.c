/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reactor/reactor.h"
#include "reactor/server.h"
#include "util/log.h"

/* Exit statuses: 0 clean, 1 runtime failure, 2 bad command line. */
enum { EXIT_USAGE = 2 };

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: vhost-gpu [OPTION]...\n"
            "A virtio-gpu device backend serving one virtual machine over vhost-user.\n"
            "\n"
            "  -s, --socket-path PATH     listen on the unix socket PATH (one front-end at a\n"
            "                             time; waits for the next after a disconnect)\n"
            "  -f, --fd N                 use the inherited socket N (listening or connected)\n"
            "  -c, --print-capabilities   print the backend capabilities as JSON and exit\n"
            "      --outputs N            number of scanouts, 1..16 (default 1)\n"
            "      --size WxH[,WxH...]    preferred size of each output (default 1280x800)\n"
            "      --max-hostmem SIZE     host memory one guest may make us hold, with K, M\n"
            "                             or G suffix (default 256M, 1G with --virgl)\n"
            "      --virgl                3D through virglrenderer (OpenGL guests); works\n"
            "                             without a GPU (Mesa's software rasteriser)\n"
            "      --render-node PATH     with --virgl, render on this DRM render node\n"
            "                             (default: the first /dev/dri/renderD* that works,\n"
            "                             else no GPU)\n"
            "  -l, --log-level LEVEL      error, warn, info (default) or debug\n"
            "  -v, --verbose              same as --log-level debug\n"
            "  -h, --help                 print this help and exit\n"
            "  -V, --version              print the version and exit\n"
            "\n"
            "Attach QEMU with:\n"
            "  -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem\n"
            "  -chardev socket,id=vgpu,path=PATH -device vhost-user-gpu-pci,chardev=vgpu\n");
}

/* Whether the host has a DRM render node (libvirt picks one itself if we claim to take one). */
static bool host_has_render_node(void)
{
    DIR *dir = opendir("/dev/dri");
    if (!dir)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(dir)))
        found = strncmp(e->d_name, "renderD", 7) == 0;
    closedir(dir);
    return found;
}

static void print_capabilities(void)
{
    /*
     * docs/interop/vhost-user.json: only features this build and host really support.
     * "render-node" only with a node: libvirt then always passes --render-node, and fails on
     * a host without one.
     */
    printf("{\n  \"type\": \"gpu\",\n  \"features\": [\n");
    if (host_has_render_node())
        printf("    \"render-node\",\n");
    printf("    \"virgl\"\n  ]\n}\n");
}

/* Prints one line about a bad command line and returns the usage exit status. */
static int bad_usage(const char *what, const char *arg)
{
    fprintf(stderr, "vhost-gpu: %s%s%s (try --help)\n", what, arg ? ": " : "", arg ? arg : "");
    return EXIT_USAGE;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    if (!*s || *s == '-')
        return -EINVAL;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

static void on_stop_signal(void *data, int signum)
{
    vgpu_info("%s: shutting down", strsignal(signum));
    vgpu_reactor_stop(data);
}

enum { OPT_OUTPUTS = 256, OPT_SIZE, OPT_MAX_HOSTMEM, OPT_VIRGL, OPT_RENDER_NODE };

/* "1920x1080,1280x800": one size per output, in order. */
static int parse_sizes(const char *arg, struct vgpu_gpu_options *gpu)
{
    unsigned int i = 0;
    const char *p = arg;
    while (*p) {
        char *end;
        if (i == VGPU_GPU_MAX_OUTPUTS || *p < '0' || *p > '9')
            return -EINVAL;
        errno = 0;
        unsigned long w = strtoul(p, &end, 10);
        if (errno || *end != 'x' || end[1] < '0' || end[1] > '9')
            return -EINVAL;
        unsigned long h = strtoul(end + 1, &end, 10);
        if (errno || w < 16 || h < 16 || w > 16384 || h > 16384 || (*end && *end != ','))
            return -EINVAL;
        gpu->size[i].width = (uint32_t)w;
        gpu->size[i].height = (uint32_t)h;
        i++;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p)
            return -EINVAL;
    }
    return i ? (int)i : -EINVAL;
}

/* "512M": bytes with an optional K, M or G suffix. */
static int parse_bytes(const char *arg, uint64_t *out)
{
    char *end;
    if (*arg < '0' || *arg > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    unsigned int shift = 0;
    switch (*end) {
    case 'K':
    case 'k':
        shift = 10;
        end++;
        break;
    case 'M':
    case 'm':
        shift = 20;
        end++;
        break;
    case 'G':
    case 'g':
        shift = 30;
        end++;
        break;
    default:
        break;
    }
    if (errno || *end || v == 0 || v > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"socket-path", required_argument, NULL, 's'},
        {"fd", required_argument, NULL, 'f'},
        {"print-capabilities", no_argument, NULL, 'c'},
        {"outputs", required_argument, NULL, OPT_OUTPUTS},
        {"size", required_argument, NULL, OPT_SIZE},
        {"max-hostmem", required_argument, NULL, OPT_MAX_HOSTMEM},
        {"virgl", no_argument, NULL, OPT_VIRGL},
        {"render-node", required_argument, NULL, OPT_RENDER_NODE},
        {"log-level", required_argument, NULL, 'l'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    static const char shortopts[] = ":s:f:cl:vhV";

    /* The conventions say --print-capabilities ignores every other option. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--print-capabilities") == 0 || strcmp(argv[i], "-c") == 0) {
            print_capabilities();
            return 0;
        }
        if (strcmp(argv[i], "--") == 0)
            break;
    }

    struct vgpu_server_options opts = {.socket_path = NULL, .fd = -1};
    vgpu_gpu_options_init(&opts.gpu);
    enum vgpu_log_level level = VGPU_LOG_INFO;
    unsigned long v;
    int nsizes = 0;
    bool outputs_given = false;
    bool hostmem_given = false;

    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            opts.socket_path = optarg;
            break;
        case 'f':
            if (parse_uint(optarg, INT_MAX, &v) < 0)
                return bad_usage("--fd needs a file descriptor number", optarg);
            opts.fd = (int)v;
            break;
        case 'c':
            print_capabilities();
            return 0;
        case OPT_OUTPUTS:
            if (parse_uint(optarg, VGPU_GPU_MAX_OUTPUTS, &v) < 0 || v == 0)
                return bad_usage("--outputs must be 1..16", optarg);
            opts.gpu.outputs = (unsigned int)v;
            outputs_given = true;
            break;
        case OPT_SIZE:
            if ((nsizes = parse_sizes(optarg, &opts.gpu)) < 0)
                return bad_usage("--size takes WxH[,WxH...], 16..16384 each", optarg);
            break;
        case OPT_MAX_HOSTMEM:
            if (parse_bytes(optarg, &opts.gpu.max_hostmem) < 0)
                return bad_usage("--max-hostmem takes a size like 512M", optarg);
            hostmem_given = true;
            break;
        case OPT_VIRGL:
            opts.virgl = true;
            break;
        case OPT_RENDER_NODE:
            if (!*optarg)
                return bad_usage("--render-node needs a path", NULL);
            opts.render_node = optarg;
            break;
        case 'l':
            if (vgpu_log_parse_level(optarg, &level) < 0)
                return bad_usage("log level must be error, warn, info or debug", optarg);
            break;
        case 'v':
            level = VGPU_LOG_DEBUG;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("vhost-gpu %s\n", VGPU_VERSION);
            return 0;
        case ':':
            return bad_usage("option needs an argument", argv[optind - 1]);
        case '?':
        default:
            return bad_usage("unknown option", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad_usage("unexpected argument", argv[optind]);
    /* --size 1920x1080,1280x800 alone means two outputs. */
    if (!outputs_given && nsizes > 0)
        opts.gpu.outputs = (unsigned int)nsizes;
    if (!opts.socket_path == (opts.fd < 0))
        return bad_usage("give exactly one of --socket-path and --fd", NULL);
    /* 3D guests hold textures, depth buffers and vertex buffers besides their framebuffer. */
    if (opts.virgl && !hostmem_given)
        opts.gpu.max_hostmem = 1ull << 30;

    vgpu_log_set_level(level);
    if (opts.render_node) {
        /* As QEMU: a node that cannot be opened is an error at start, 2D or 3D. */
        int fd = open(opts.render_node, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            vgpu_err("cannot open render node %s: %s", opts.render_node, strerror(errno));
            return 1;
        }
        close(fd);
        if (!opts.virgl)
            vgpu_info("--render-node %s is used only with --virgl", opts.render_node);
    }
    /* A front-end that goes away must never kill us through a write. */
    signal(SIGPIPE, SIG_IGN);

    struct vgpu_reactor *r = vgpu_reactor_create();
    if (!r) {
        vgpu_err("cannot create the event loop");
        return 1;
    }
    int status = 1;
    if (vgpu_reactor_on_signal(r, SIGINT, on_stop_signal, r) < 0 ||
        vgpu_reactor_on_signal(r, SIGTERM, on_stop_signal, r) < 0) {
        vgpu_err("cannot install signal handlers");
        goto out_reactor;
    }
    int err = 0;
    struct vgpu_server *s = vgpu_server_create(r, &opts, &err);
    if (!s) {
        vgpu_err("cannot serve: %s", strerror(-err));
        goto out_reactor;
    }
    status = vgpu_reactor_run(r) < 0 ? 1 : 0;
    vgpu_server_destroy(s);
out_reactor:
    vgpu_reactor_destroy(r);
    return status;
}
