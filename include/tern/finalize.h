/* tern/finalize.h — object lifetimes beyond plain reachability:
 * finalizers, weak links, ephemerons and uncollectable objects.  The
 * reference, with the ordering and resurrection rules and what each costs
 * in the pause, is docs/finalize.md.
 *
 * Every call is safe from any thread, and from inside a finalizer.  Fallible
 * calls return 0 or a negative TERN_E* code, or NULL with errno.
 */
#ifndef TERN_FINALIZE_H
#define TERN_FINALIZE_H

#include <tern.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- finalizers ----------------------------------------------------------
 * fn(obj, data) runs once, after a cycle finds obj unreachable, outside the
 * collector's pauses and locks: on Tern's finalizer thread (the default),
 * or in tern_run_finalizers.  What obj references is kept until fn has
 * run.  data is kept alive by the registration.  Ordered by default: if
 * one finalizable object reaches another, the first one's finalizer runs
 * first and the other's in a later cycle; objects in a cycle of
 * finalizable objects (an object that reaches itself included) are never
 * finalized unless registered TERN_FIN_UNORDERED. */
typedef void (*tern_finalizer)(void *obj, void *data);

#define TERN_FIN_UNORDERED 1u   /* finalize even if reachable from another finalizable object */

/* obj must be the start of a live Tern object: TERN_EINVAL otherwise.
 * Registering again replaces the finalizer; fn NULL unregisters. */
int tern_register_finalizer(void *obj, tern_finalizer fn, void *data);
/* The same, with flags, and the finalizer it replaces (NULL if none) in
 * *old_fn and *old_data when those are not NULL. */
int tern_register_finalizer_ex(void *obj, tern_finalizer fn, void *data, unsigned flags,
                               tern_finalizer *old_fn, void **old_data);
int tern_unregister_finalizer(void *obj);           /* TERN_ENOENT if none   */
int tern_run_finalizers(void);                      /* runs the ready ones; returns how many */
int tern_finalizers_pending(void);                  /* ready, not yet run    */
/* on nonzero: no finalizer thread; finalizers run only in
 * tern_run_finalizers.  Back to 0: the thread (re)starts. */
void tern_finalize_on_demand(int on);

/* ---- weak links ----------------------------------------------------------
 * *link is set to NULL in the pause of the cycle that finds obj no longer
 * reachable (before finalizers are considered: a link to an object whose
 * finalizer is about to run is cleared too), and the registration ends.
 * The _long variant clears it only when obj is really reclaimed, after any
 * finalizer has run.  The program stores obj in *link itself.  A link in
 * memory Tern scans (an ordinary tern_malloc object, the stack, static
 * data) keeps obj alive like any pointer, so the link must live in memory
 * Tern does not scan: a tern_malloc_atomic object, or memory not from Tern
 * (libc malloc, mmap).  A link inside a Tern object ends its registration
 * when that object dies or is freed.  obj: any pointer into a live Tern
 * object.  TERN_EEXIST if link is registered already. */
int tern_register_weak(void **link, void *obj);
int tern_register_weak_long(void **link, void *obj);
int tern_unregister_weak(void **link);              /* TERN_ENOENT if none   */

/* ---- ephemerons ------------------------------------------------------------
 * An ephemeron is a Tern object holding a key and a value: the value is
 * kept alive only while the ephemeron is reachable and the key is
 * reachable through something other than the ephemeron's values.  When the
 * key dies, key and value read as NULL.  The ephemeron itself is collected
 * like any object once unreachable.  Enough to build weak hash tables
 * (keys whose values reference the key are still collected). */
void *tern_ephemeron_new(void *key, void *value);   /* NULL + errno EINVAL/ENOMEM */
void *tern_ephemeron_key(const void *eph);          /* NULL once the key died */
void *tern_ephemeron_value(const void *eph);        /* NULL once the key died */
int tern_ephemeron_set_value(void *eph, void *value); /* TERN_ENOENT: key died */

/* ---- uncollectable objects -------------------------------------------------
 * Never reclaimed by the collector, its contents scanned as roots; freed
 * only by tern_free.  tern_realloc keeps it uncollectable. */
void *tern_malloc_uncollectable(size_t n);          /* zeroed; NULL + errno */

#ifdef __cplusplus
}
#endif
#endif /* TERN_FINALIZE_H */
