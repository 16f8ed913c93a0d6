/* dlroot.c — a library the dlopen test loads at run time.  Its data, BSS
 * and __thread variables hold the only references to some Tern objects.
 * It does not link against Tern. */
#include <stddef.h>

#define DLROOT_SLOTS 64

enum { DLROOT_DATA = 0, DLROOT_BSS = 1, DLROOT_TLS = 2 };

static void *data_slots[DLROOT_SLOTS] = { (void *)1 }; /* .data */
static void *bss_slots[DLROOT_SLOTS];                   /* .bss  */
static __thread void *tls_slots[DLROOT_SLOTS];          /* dynamic TLS */

static void **slots(int which)
{
    switch (which) {
    case DLROOT_DATA: return data_slots;
    case DLROOT_BSS:  return bss_slots;
    case DLROOT_TLS:  return tls_slots;
    default:          return NULL;
    }
}

int dlroot_nslots(void)
{
    return DLROOT_SLOTS;
}

void dlroot_set(int which, int i, void *p)
{
    void **s = slots(which);
    if (s && i >= 0 && i < DLROOT_SLOTS)
        s[i] = p;
}

void *dlroot_get(int which, int i)
{
    void **s = slots(which);
    if (s && i >= 0 && i < DLROOT_SLOTS)
        return s[i];
    return NULL;
}
