/* sizeclass.c — the small-object size classes.
 *
 * Classes are multiples of 16 bytes (every object is 16-byte aligned):
 * every 16 bytes up to 128, then eight classes per doubling up to 32 KiB,
 * so a request above 128 bytes wastes at most 1/9 (11.1 %) of its slot.
 * Each class gets the smallest span (1..16 pages of 8 KiB) that holds at
 * least four objects and wastes at most 1/32 of the span at its tail, or,
 * when none does, the one that wastes the least.  (At 1/8, a 4.3 KB
 * sqlite page took 4915 bytes: five 4608-byte slots in 24 KiB; now seven
 * in 32 KiB, 4681 bytes each.)
 * Requests above 32 KiB are large objects with spans of their own. */
#include "internal.h"

struct sizeclass tern_classes[NCLASSES_MAX];
unsigned tern_nclasses;
uint8_t tern_size_to_class16[MAX_SMALL / GRANULE + 1];

static void add_class(uint32_t size) {
    struct sizeclass *c = &tern_classes[tern_nclasses++];
    c->size = size;
    /* The smallest span with at least four objects and at most 1/32 of it
     * left over at the tail; if none up to MAX_SPAN_PAGES, the one that
     * leaves the least (as a share of the span). */
    uint32_t np = 0, best = 0;
    size_t best_waste = 1, best_bytes = 0;
    for (uint32_t k = 1; k <= MAX_SPAN_PAGES && !np; k++) {
        size_t bytes = k * PAGE_SIZE, n = bytes / size, waste = bytes - n * size;
        if (n < 4) continue;
        if (waste * 32 <= bytes) np = k;
        else if (!best || waste * best_bytes < best_waste * bytes) best = k, best_waste = waste, best_bytes = bytes;
    }
    if (!np) np = best;
    c->npages = np;
    c->nelems = (uint32_t)(np * PAGE_SIZE / size);
    c->divmagic = (((uint64_t)1 << 48) + size - 1) / size;
    /* The reciprocal must divide exactly for every offset in the span:
     * check both ends of every slot (the map is monotone). */
    for (uint64_t k = 0; k <= c->nelems; k++) {
        uint64_t lo = k * size, hi = lo + size - 1;
        if (((unsigned __int128)lo * c->divmagic) >> 48 != k ||
            ((unsigned __int128)hi * c->divmagic) >> 48 != k) {
            c->divmagic = 0; /* never happens for these classes; span_slot would be wrong */
            break;
        }
    }
}

void tern_sizeclass_init(void) {
    tern_nclasses = 1; /* class 0: large objects */
    for (uint32_t s = 16; s <= 128; s += 16) add_class(s);
    for (uint32_t k = 128; k < MAX_SMALL; k *= 2)
        for (uint32_t j = 1; j <= 8; j++) add_class(k + j * (k / 8));
    unsigned c = 1;
    for (size_t i = 0; i <= MAX_SMALL / GRANULE; i++) {
        while (tern_classes[c].size < i * GRANULE) c++;
        tern_size_to_class16[i] = (uint8_t)c;
    }
    tern_size_to_class16[0] = 1;
}
