/* alloc_count.c: an LD_PRELOAD library for tests that count a process's large reallocations
 * (a buffer re-made again and again shows there, where no system call or metric does).
 *
 * Counts realloc(3) calls asking for at least ALLOC_COUNT_MIN bytes (env; default 262144);
 * on SIGUSR2 writes the count so far, as decimal text, to the file ALLOC_COUNT_OUT (env).
 * Built without sanitizers (they must come first in the library list): tests skip it there. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

static void *(*real_realloc)(void *, size_t);
static size_t min_size = 262144;
static const char *out_path;
static atomic_ulong big;

/* any thread the signal lands on: async-signal-safe calls only (open, write, close; the
 * number is formatted by hand, not by snprintf) */
static void on_usr2(int sig)
{
    (void)sig;
    if (!out_path)
        return;
    char b[24];
    size_t i = sizeof b;
    b[--i] = '\n';
    unsigned long v = (unsigned long)atomic_load(&big);
    do
        b[--i] = (char)('0' + v % 10);
    while ((v /= 10) && i);
    int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        if (write(fd, b + i, sizeof b - i) != (ssize_t)(sizeof b - i))
            (void)0; /* (the test reads a short file as a failure) */
        close(fd);
    }
}

__attribute__((constructor)) static void alloc_count_init(void)
{
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    const char *m = getenv("ALLOC_COUNT_MIN");
    if (m)
        min_size = strtoull(m, NULL, 10);
    out_path = getenv("ALLOC_COUNT_OUT");
    struct sigaction sa = {.sa_handler = on_usr2, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
}

void *realloc(void *p, size_t n)
{
    if (!real_realloc) /* (a constructor ahead of ours) */
        real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    if (n >= min_size)
        atomic_fetch_add_explicit(&big, 1, memory_order_relaxed);
    return real_realloc(p, n);
}
