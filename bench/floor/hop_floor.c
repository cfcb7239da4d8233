/* hop_floor.c: what moving bytes between two processes over loopback costs the kernel, with no
 * protocol on top: the floor under the API hop (issue 18). One process writes TOTAL bytes in
 * CHUNK-byte writes, the other reads them (256 KiB reads); prints the CPU (user + system, both
 * processes) per 1 411 bytes (testdata/1k.txt, one seed-case message) and the throughput.
 *
 *   hop_floor tcp|uds [CHUNK [TOTAL_MB]]        (defaults 65536 and 2048)
 *
 * tcp: a TCP connection on 127.0.0.1 with TCP_NODELAY (as the gateway's); uds: an AF_UNIX
 * stream socketpair. Built and run by bench/hop_floor.sh. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG 1411.0

static double cpu_s(int who)
{
    struct rusage r;
    getrusage(who, &r);
    return (double)r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + (double)r.ru_stime.tv_sec +
           r.ru_stime.tv_usec / 1e6;
}

static int tcp_pair(int sv[2])
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &l) < 0)
        return -1;
    sv[0] = socket(AF_INET, SOCK_STREAM, 0);
    if (sv[0] < 0 || connect(sv[0], (struct sockaddr *)&a, sizeof a) < 0)
        return -1;
    sv[1] = accept(lfd, NULL, NULL);
    close(lfd);
    setsockopt(sv[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return sv[1] < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "tcp") && strcmp(argv[1], "uds"))) {
        fprintf(stderr, "usage: hop_floor tcp|uds [CHUNK [TOTAL_MB]]\n");
        return 2;
    }
    int uds = !strcmp(argv[1], "uds");
    size_t chunk = argc > 2 ? strtoul(argv[2], NULL, 10) : 65536;
    size_t total = (argc > 3 ? strtoul(argv[3], NULL, 10) : 2048) << 20;
    if (chunk < 1 || chunk > (1 << 20)) {
        fprintf(stderr, "hop_floor: CHUNK must be 1..1048576\n");
        return 2;
    }
    int sv[2];
    if (uds ? socketpair(AF_UNIX, SOCK_STREAM, 0, sv) : tcp_pair(sv)) {
        perror("hop_floor: socket");
        return 1;
    }
    char *buf = malloc(1 << 20);
    if (!buf)
        return 1;
    memset(buf, 'x', 1 << 20);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        close(sv[0]);
        for (size_t got = 0; got < total;) {
            ssize_t n = read(sv[1], buf, 256 << 10);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        _exit(0);
    }
    close(sv[1]);
    for (size_t sent = 0; sent < total;) {
        ssize_t n = write(sv[0], buf, chunk < total - sent ? chunk : total - sent);
        if (n <= 0) {
            perror("hop_floor: write");
            return 1;
        }
        sent += (size_t)n;
    }
    close(sv[0]);
    waitpid(pid, NULL, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double cpu = cpu_s(RUSAGE_SELF) + cpu_s(RUSAGE_CHILDREN);
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%s chunk=%zu us_cpu_per_msg=%.3f gb_per_s=%.2f\n", argv[1], chunk,
           cpu / ((double)total / MSG) * 1e6, (double)total / wall / 1e9);
    return 0;
}
