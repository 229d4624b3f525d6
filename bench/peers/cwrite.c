/* The physical reference for CPU per delivery: one write() of one frame to each of N loopback TCP
 * sockets, in rounds. Only the write calls are timed (CPU time of this process); the peer ends are
 * drained between rounds, untimed. Prints one JSON line.
 * Usage: cwrite N FRAME_BYTES ROUNDS */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    int size = argc > 2 ? atoi(argv[2]) : 215;
    int rounds = argc > 3 ? atoi(argv[3]) : 200;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (2 * n + 16 > (long)rl.rlim_cur) n = (int)((rl.rlim_cur - 16) / 2);

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 4096)) { perror("listen"); return 1; }
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    int *srv = calloc(n, sizeof(int)), *cli = calloc(n, sizeof(int));
    int one = 1;
    for (int i = 0; i < n; i++) {
        cli[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(cli[i], (struct sockaddr *)&addr, sizeof addr)) { perror("connect"); return 1; }
        srv[i] = accept(lfd, NULL, NULL);
        if (srv[i] < 0) { perror("accept"); return 1; }
        /* Servers under test disable Nagle too (every frame leaves at once). */
        setsockopt(srv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    char *frame = malloc(size), *buf = malloc(1 << 16);
    memset(frame, 'x', size);
    double cpu = 0, wall = 0;
    long writes = 0;
    for (int r = 0; r < rounds; r++) {
        double c0 = cpu_now(), w0 = wall_now();
        for (int i = 0; i < n; i++) {
            if (write(srv[i], frame, size) != size) { perror("write"); return 1; }
        }
        cpu += cpu_now() - c0;
        wall += wall_now() - w0;
        writes += n;
        for (int i = 0; i < n; i++) {
            ssize_t got = 0;
            while (got < size) {
                ssize_t k = read(cli[i], buf, 1 << 16);
                if (k <= 0) { perror("read"); return 1; }
                got += k;
            }
        }
    }
    printf("{\"sockets\": %d, \"frame_bytes\": %d, \"writes\": %ld, \"cpu_us_per_write\": %.3f, "
           "\"wall_us_per_write\": %.3f}\n", n, size, writes, 1e6 * cpu / writes, 1e6 * wall / writes);
    return 0;
}
