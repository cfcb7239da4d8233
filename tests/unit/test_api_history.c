/* test_api_history.c: ws-api's in-memory history store (api/history.h): offsets, trimming by
 * size and age, what a reader is told (recovered or not), pages, expiry, the byte cap. */
#include <stdlib.h>

#include "../../api/history.h"
#include "test.h"

static hist_pos_t last_pos;
static int last_status;

static void added(void *ud, int status, const hist_pos_t *pos)
{
    (void)ud;
    last_status = status;
    last_pos = *pos;
}

typedef struct reader {
    uint64_t offsets[512];
    size_t n, pages;
    bool done, recovered;
    uint64_t top;
    char epoch[HIST_EPOCH_MAX + 1];
} reader_t;

static void page(void *ud, const hist_page_t *pg)
{
    reader_t *r = ud;
    r->pages++;
    for (size_t i = 0; i < pg->n && r->n < 512; i++)
        r->offsets[r->n++] = pg->pubs[i].offset;
    if (!pg->more) {
        r->done = true;
        r->recovered = pg->recovered;
        r->top = pg->top;
        snprintf(r->epoch, sizeof r->epoch, "%s", pg->epoch ? pg->epoch : "");
    }
}

static hist_cfg_t cfg(void)
{
    hist_cfg_t c = {.size = 10, .ttl_ms = 1000, .meta_ttl_ms = 5000, .recover_max = 100,
                    .page_bytes = 1 << 20, .max_bytes = 1 << 20};
    return c;
}

static void add(history_t *h, const char *chan, uint64_t now)
{
    last_status = 99;
    CHECK_EQ(history_add(h, chan, strlen(chan), (const uint8_t *)"x", 1, false, now, added,
                         NULL), HIST_OK);
    CHECK_EQ(last_status, HIST_OK);
}

static reader_t read_after(history_t *h, const char *chan, uint64_t after, const char *epoch,
                           uint64_t now)
{
    reader_t r;
    memset(&r, 0, sizeof r);
    CHECK_EQ(history_read(h, chan, strlen(chan), after, epoch, now, page, &r), HIST_OK);
    CHECK(r.done);
    return r;
}

static void test_offsets_and_recovery(void)
{
    hist_cfg_t c = cfg();
    history_t *h = history_mem_new(&c);
    for (int i = 0; i < 3; i++)
        add(h, "user:a", 10);
    CHECK_EQ(last_pos.offset, 3);
    char ep[HIST_EPOCH_MAX + 1];
    strcpy(ep, last_pos.epoch);
    CHECK_EQ(strlen(ep), 8);
    add(h, "room:r", 10);
    CHECK_EQ(last_pos.offset, 1); /* per channel */
    CHECK(strcmp(last_pos.epoch, ep) != 0);
    reader_t r = read_after(h, "user:a", 1, ep, 20);
    CHECK_EQ(r.n, 2);
    CHECK_EQ(r.offsets[0], 2);
    CHECK(r.recovered);
    CHECK_EQ(r.top, 3);
    r = read_after(h, "user:a", 3, "", 20); /* up to date, any epoch */
    CHECK_EQ(r.n, 0);
    CHECK(r.recovered);
    r = read_after(h, "user:a", 1, "other", 20);
    CHECK_EQ(r.n, 0);
    CHECK(!r.recovered);
    CHECK_STR(r.epoch, ep);
    r = read_after(h, "user:a", 9, ep, 20); /* ahead of the history: not a position of it */
    CHECK(!r.recovered);
    CHECK_EQ(history_add(h, "chan:x", 6, (const uint8_t *)"x", 1, false, 0, added, NULL),
             HIST_ERR_BAD);
    history_free(h);
}

static void test_trimmed_by_size_and_age(void)
{
    hist_cfg_t c = cfg();
    history_t *h = history_mem_new(&c);
    for (int i = 0; i < 15; i++)
        add(h, "user:a", 100);
    reader_t r = read_after(h, "user:a", 2, "", 200);
    CHECK_EQ(r.n, 10);
    CHECK_EQ(r.offsets[0], 6);
    CHECK(!r.recovered); /* 3..5 are gone */
    r = read_after(h, "user:a", 5, "", 200);
    CHECK(r.recovered);
    add(h, "user:a", 900);
    r = read_after(h, "user:a", 5, "", 1150); /* the first 15 are older than ttl now */
    CHECK_EQ(r.n, 1);
    CHECK_EQ(r.offsets[0], 16);
    CHECK(!r.recovered);
    c.recover_max = 3;
    history_free(h);
    h = history_mem_new(&c);
    for (int i = 0; i < 5; i++)
        add(h, "user:a", 100);
    r = read_after(h, "user:a", 1, "", 100); /* 4 missing > 3: nothing */
    CHECK_EQ(r.n, 0);
    CHECK(!r.recovered);
    CHECK_EQ(r.top, 5);
    history_free(h);
}

static void test_pages(void)
{
    hist_cfg_t c = cfg();
    c.size = 200;
    c.recover_max = 200;
    c.page_bytes = 1024;
    history_t *h = history_mem_new(&c);
    uint8_t big[600];
    memset(big, 'b', sizeof big);
    for (int i = 0; i < 150; i++)
        CHECK_EQ(history_add(h, "room:r", 6, big, i < 10 ? sizeof big : 1, false, 1, added,
                             NULL), HIST_OK);
    reader_t r = read_after(h, "room:r", 0, "", 2);
    CHECK_EQ(r.n, 150);
    CHECK(r.pages >= 7); /* 10 large ones two a page, then 64 a page */
    for (size_t i = 0; i < r.n; i++)
        CHECK_EQ(r.offsets[i], i + 1);
    CHECK(r.recovered);
    history_free(h);
}

static void test_expiry_and_cap(void)
{
    hist_cfg_t c = cfg();
    c.max_bytes = 2000;
    history_t *h = history_mem_new(&c);
    add(h, "user:a", 0);
    char ep[HIST_EPOCH_MAX + 1];
    strcpy(ep, last_pos.epoch);
    uint8_t big[1500] = {0};
    CHECK_EQ(history_add(h, "user:a", 6, big, sizeof big, true, 0, added, NULL), HIST_OK);
    CHECK_EQ(history_add(h, "user:b", 6, big, sizeof big, true, 0, added, NULL), HIST_ERR_FULL);
    history_sweep(h, 2000); /* messages gone, the position stays */
    reader_t r = read_after(h, "user:a", 2, ep, 2000);
    CHECK(r.recovered);
    CHECK_EQ(r.top, 2);
    CHECK_EQ(history_add(h, "user:b", 6, big, sizeof big, true, 2000, added, NULL), HIST_OK);
    history_sweep(h, 8000); /* past meta ttl: a new epoch */
    add(h, "user:a", 8000);
    CHECK_EQ(last_pos.offset, 1);
    CHECK(strcmp(last_pos.epoch, ep) != 0);
    history_free(h);
}

int main(void)
{
    RUN(test_offsets_and_recovery);
    RUN(test_trimmed_by_size_and_age);
    RUN(test_pages);
    RUN(test_expiry_and_cap);
    return TEST_REPORT();
}
