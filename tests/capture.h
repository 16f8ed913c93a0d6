/* capture.h — reading what a test wrote to stderr (after
 * .init = cr_redirect_stderr), for tests of Tern's one-line reports.
 * Include after common.h and criterion/redirect.h. */
#ifndef TERN_TESTS_CAPTURE_H
#define TERN_TESTS_CAPTURE_H

#include <fcntl.h>

static char captured[64 * 1024];

/* Everything written to stderr since the last call. */
static const char *take_stderr(void)
{
    fflush(stderr);
    int fd = fileno(cr_get_redirected_stderr());
    int fl = fcntl(fd, F_GETFL);
    if (!(fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    size_t len = 0;
    ssize_t r;
    while (len < sizeof captured - 1 && (r = read(fd, captured + len, sizeof captured - 1 - len)) > 0)
        len += (size_t)r;
    captured[len] = '\0';
    /* drop TERN_TRACE lines ("tern: gc ..."), in case the tests run with it */
    char *w = captured;
    for (char *r = captured; *r;) {
        char *eol = strchr(r, '\n');
        size_t n = eol ? (size_t)(eol - r) + 1 : strlen(r);
        if (strncmp(r, "tern: gc", 8) != 0) {
            memmove(w, r, n);
            w += n;
        }
        r += n;
    }
    *w = '\0';
    return captured;
}

#endif /* TERN_TESTS_CAPTURE_H */
