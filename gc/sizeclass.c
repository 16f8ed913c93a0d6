/* sizeclass.c — the small-object size classes.
 *
 * Classes are multiples of 16 bytes (every object is 16-byte aligned):
 * every 16 bytes up to 128, then eight classes per doubling up to 32 KiB,
 * so a request above 128 bytes wastes at most 1/9 (11.1 %) of its slot.
 * Each class gets the smallest span (1..16 pages of 8 KiB) that holds at
 * least four objects and wastes at most 1/8 of the span at its tail.
 * Requests above 32 KiB are large objects with spans of their own. */
#include "internal.h"

struct sizeclass tern_classes[NCLASSES_MAX];
unsigned tern_nclasses;
uint8_t tern_size_to_class16[MAX_SMALL / GRANULE + 1];

static void add_class(uint32_t size) {
    struct sizeclass *c = &tern_classes[tern_nclasses++];
    c->size = size;
    uint32_t np = 1;
    for (; np < MAX_SPAN_PAGES; np++) {
        size_t bytes = np * PAGE_SIZE, n = bytes / size;
        if (n >= 4 && (bytes - n * size) * 8 <= bytes) break;
    }
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
