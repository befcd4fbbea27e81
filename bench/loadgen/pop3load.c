/*
 * pop3load: a compiled POP3 load generator, so that popgate and Dovecot are measured with
 * the same low-overhead client (a Python client's own TLS handshakes cost about as much as
 * the servers' work, which hides the difference between servers).
 *
 *   pop3load --host H --port P [--tls implicit|none] --users FILE
 *            (--sessions N | --seconds S) [--concurrency C] [--workload full|login|list|retr]
 *            [--timeout S] [--resume]
 *
 * FILE holds one "user<TAB>password" per line. Worker w (0 <= w < C) uses the users whose
 * line index is w modulo C, in turn, so no two concurrent sessions share a maildrop (a POP3
 * maildrop admits one session at a time); C must therefore not exceed the number of users.
 *
 * Workloads (logins are USER/PASS, as most clients do):
 *   full   connect, TLS, greeting, USER, PASS, STAT, UIDL, RETR every message, QUIT
 *   login  connect, TLS, greeting, USER, PASS, QUIT
 *   list   connect, TLS, greeting, USER, PASS, STAT, UIDL, QUIT (a client checking for mail)
 *   retr   as full; retr_mb_per_s is then measured over the time RETRs were in progress
 *
 * One JSON object goes to stdout, on one line:
 *   workload, tls, concurrency, sessions_asked (null with --seconds), sessions_ok,
 *   sessions_failed, first_error ("user: step: text", or null), elapsed_s, sessions_per_s
 *   (successful sessions over elapsed_s), logins_per_s (the same, for login; else null),
 *   tls_resumed, bytes_retrieved (RETR octets of successful sessions, byte-stuffing undone,
 *   as LIST counts them), retr_s and retr_mb_per_s (10^6 bytes/s; over the time RETRs were
 *   in progress for retr, over elapsed_s otherwise), latency_ms {p50, p90, p99, max} of
 *   whole successful sessions, connect to QUIT's reply (nearest rank; null if none).
 * Exit status 0 whenever it is printed, failed sessions included (they are data), 2 for a
 * usage error and 1 when the run cannot start at all. A session is failed by any -ERR,
 * unexpected reply, TLS or socket error, or a read/write/connect taking over --timeout
 * (default 30 s); its worker goes on with the next one. With --seconds, no session starts
 * after S seconds and those under way finish.
 *
 * Build: cc -O2 -Wall -Wextra -Werror -o pop3load pop3load.c -lssl -lcrypto -lpthread
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* Big enough that a RETR of a large message costs few reads; lines must fit in it. */
#define BUFFER_SIZE (256 * 1024)
#define ERROR_SIZE 512
#define MAX_CONCURRENCY 4096

enum workload { WORKLOAD_FULL, WORKLOAD_LOGIN, WORKLOAD_LIST, WORKLOAD_RETR };

static const char *const workload_names[] = {"full", "login", "list", "retr"};

struct options {
    const char *host;
    const char *port;
    const char *users_file;
    int tls;
    long sessions;  /* -1 when running for a time instead */
    double seconds; /* -1 when running a number of sessions */
    int concurrency;
    enum workload workload;
    double timeout_s;
    int resume;
};

struct user {
    char *name;
    char *password;
};

/* A connection with its read buffer: bytes [start, end) are received and not yet used. */
struct conn {
    int fd;
    SSL *ssl;
    char *buf;
    size_t start;
    size_t end;
};

struct interval {
    double start;
    double end;
};

struct worker {
    int index;
    pthread_t thread;
    long ok;
    long failed;
    long resumed;
    unsigned long long bytes;
    double *latencies; /* seconds, one per successful session */
    size_t n_latencies;
    size_t cap_latencies;
    struct interval *retr; /* the RETR phase of each successful session */
    size_t n_retr;
    size_t cap_retr;
    SSL_SESSION *session; /* the last resumable TLS session, with --resume */
    struct conn conn;
    char step[64];          /* what the current session is doing, for its error text */
    char error[ERROR_SIZE]; /* what went wrong in the current session */
};

static struct options opt = {
    .tls = 0, .sessions = -1, .seconds = -1, .concurrency = 1,
    .workload = WORKLOAD_FULL, .timeout_s = 30, .resume = 0,
};
static struct user *users;
static size_t n_users;
static struct addrinfo *addresses;
static SSL_CTX *tls_context;
static atomic_long sessions_claimed;
static double run_deadline;
static pthread_mutex_t first_error_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_error[ERROR_SIZE];
static int have_first_error;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(int status, const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("pop3load: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(status);
}

static void set_step(struct worker *w, const char *step) {
    size_t length = strnlen(step, sizeof w->step - 1);
    memcpy(w->step, step, length);
    w->step[length] = '\0';
}

/* printf into the worker's error text after the step it failed in; the first error wins. */
static int fail(struct worker *w, const char *format, ...) {
    if (w->error[0] == '\0') {
        int n = snprintf(w->error, sizeof w->error, "%s: ", w->step);
        va_list args;
        va_start(args, format);
        vsnprintf(w->error + n, sizeof w->error - (size_t)n, format, args);
        va_end(args);
    }
    return -1;
}

/* A server's reply line as printable ASCII for an error text (it goes into JSON). */
static void printable(char *out, size_t size, const char *line, size_t length) {
    size_t used = 0;
    for (size_t i = 0; i < length && used + 1 < size; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == '\r' || c == '\n') {
            break;
        }
        out[used++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[used] = '\0';
}

/* The text of OpenSSL's last error (or errno's) for this thread. */
static void tls_error_text(char *out, size_t size, int ssl_error) {
    unsigned long code = ERR_get_error();
    if (code != 0) {
        ERR_error_string_n(code, out, size);
    } else if (ssl_error == SSL_ERROR_SYSCALL && errno != 0) {
        snprintf(out, size, "%s", strerror(errno));
    } else if (ssl_error == SSL_ERROR_ZERO_RETURN || ssl_error == SSL_ERROR_SYSCALL) {
        snprintf(out, size, "connection closed");
    } else {
        snprintf(out, size, "TLS error %d", ssl_error);
    }
}

/* --- I/O -------------------------------------------------------------------------------- */

/*
 * In blocking mode OpenSSL only asks to retry (WANT_READ/WANT_WRITE) when the socket's
 * SO_RCVTIMEO/SO_SNDTIMEO expired, so a retry is allowed only while the operation is
 * younger than the timeout: a stuck server ends the session instead of hanging it.
 */
static int may_retry(double started) { return now() - started < opt.timeout_s; }

/* Receive more bytes after c->end; >0 on success, -1 (error recorded) on failure or EOF. */
static int conn_fill(struct worker *w, struct conn *c) {
    if (c->start == c->end) {
        c->start = c->end = 0;
    } else if (c->end == BUFFER_SIZE && c->start > 0) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    size_t room = BUFFER_SIZE - c->end;
    if (room == 0) {
        return fail(w, "reply line longer than %d bytes", BUFFER_SIZE);
    }
    double started = now();
    for (;;) {
        if (c->ssl != NULL) {
            ERR_clear_error();
            int n = SSL_read(c->ssl, c->buf + c->end, (int)(room > INT_MAX ? INT_MAX : room));
            if (n > 0) {
                c->end += (size_t)n;
                return n;
            }
            int e = SSL_get_error(c->ssl, n);
            if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && may_retry(started)) {
                continue;
            }
            if (e == SSL_ERROR_SYSCALL && errno == EINTR) {
                continue;
            }
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                return fail(w, "read timed out after %g s", opt.timeout_s);
            }
            char text[256];
            tls_error_text(text, sizeof text, e);
            return fail(w, "TLS read: %s", text);
        }
        ssize_t n = recv(c->fd, c->buf + c->end, room, 0);
        if (n > 0) {
            c->end += (size_t)n;
            return (int)n;
        }
        if (n == 0) {
            return fail(w, "connection closed by the server");
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return fail(w, "read timed out after %g s", opt.timeout_s);
        }
        return fail(w, "read: %s", strerror(errno));
    }
}

static int conn_write(struct worker *w, struct conn *c, const char *data, size_t length) {
    double started = now();
    while (length > 0) {
        if (c->ssl != NULL) {
            ERR_clear_error();
            /* Without SSL_MODE_ENABLE_PARTIAL_WRITE, SSL_write writes all or nothing. */
            int n = SSL_write(c->ssl, data, (int)length);
            if (n > 0) {
                data += n;
                length -= (size_t)n;
                continue;
            }
            int e = SSL_get_error(c->ssl, n);
            if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && may_retry(started)) {
                continue;
            }
            if (e == SSL_ERROR_SYSCALL && errno == EINTR) {
                continue;
            }
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                return fail(w, "write timed out after %g s", opt.timeout_s);
            }
            char text[256];
            tls_error_text(text, sizeof text, e);
            return fail(w, "TLS write: %s", text);
        }
        ssize_t n = send(c->fd, data, length, MSG_NOSIGNAL);
        if (n >= 0) {
            data += n;
            length -= (size_t)n;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return fail(w, "write timed out after %g s", opt.timeout_s);
        } else {
            return fail(w, "write: %s", strerror(errno));
        }
    }
    return 0;
}

/* The next line (CRLF or LF stripped), valid until the next read on the connection. */
static int read_line(struct worker *w, struct conn *c, const char **line, size_t *length) {
    size_t scanned = 0; /* bytes after c->start already known to hold no LF */
    for (;;) {
        char *lf = memchr(c->buf + c->start + scanned, '\n', c->end - c->start - scanned);
        if (lf != NULL) {
            *line = c->buf + c->start;
            *length = (size_t)(lf - *line);
            if (*length > 0 && (*line)[*length - 1] == '\r') {
                (*length)--;
            }
            c->start = (size_t)(lf - c->buf) + 1;
            return 0;
        }
        scanned = c->end - c->start;
        if (conn_fill(w, c) < 0) {
            return -1;
        }
    }
}

/* A single-line reply: +OK, or an error holding the server's -ERR text. */
static int read_status(struct worker *w, struct conn *c, const char *command,
                       const char **line, size_t *length) {
    const char *text;
    size_t size;
    set_step(w, command);
    if (read_line(w, c, &text, &size) < 0) {
        return -1;
    }
    if (line != NULL) {
        *line = text;
        *length = size;
    }
    if (size >= 3 && memcmp(text, "+OK", 3) == 0) {
        return 0;
    }
    char shown[200];
    printable(shown, sizeof shown, text, size);
    if (size >= 4 && memcmp(text, "-ERR", 4) == 0) {
        return fail(w, "%s", shown);
    }
    return fail(w, "unexpected reply \"%s\"", shown);
}

/*
 * Consume a multi-line body up to its terminating "." line, streaming (a message is never
 * held whole), and add its octets to *octets as the server counts them (LIST, STAT): CRLFs
 * included, the byte-stuffing dot of lines that begin with "." left out.
 */
static int read_body(struct worker *w, struct conn *c, unsigned long long *octets) {
    enum { LINE_START, MIDDLE, DOT, DOT_CR } state = LINE_START;
    unsigned long long count = 0;
    for (;;) {
        while (c->start < c->end) {
            char *p = c->buf + c->start;
            size_t available = c->end - c->start;
            switch (state) {
            case MIDDLE: {
                char *lf = memchr(p, '\n', available);
                size_t taken = lf == NULL ? available : (size_t)(lf - p) + 1;
                count += taken;
                c->start += taken;
                if (lf != NULL) {
                    state = LINE_START;
                }
                break;
            }
            case LINE_START:
                if (*p == '.') {
                    c->start++;
                    state = DOT;
                } else {
                    state = MIDDLE;
                }
                break;
            case DOT:
                if (*p == '\r') {
                    c->start++;
                    state = DOT_CR;
                } else {
                    state = MIDDLE; /* the dot was stuffing: not counted */
                }
                break;
            case DOT_CR:
                if (*p == '\n') {
                    c->start++;
                    *octets += count;
                    return 0;
                }
                count++; /* the CR after a stuffing dot; the rest of the line follows */
                state = MIDDLE;
                break;
            }
        }
        if (conn_fill(w, c) < 0) {
            return -1;
        }
    }
}

static int send_command(struct worker *w, struct conn *c, const char *format, ...) {
    char line[1024];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(line, sizeof line - 2, format, args);
    va_end(args);
    if (n < 0 || (size_t)n >= sizeof line - 2) {
        return fail(w, "command too long");
    }
    /* The command names the step, but a password must not end up in an error text. */
    set_step(w, strncmp(line, "PASS ", 5) == 0 ? "PASS" : line);
    line[n++] = '\r';
    line[n++] = '\n';
    return conn_write(w, c, line, (size_t)n);
}

/* --- sessions --------------------------------------------------------------------------- */

static int set_timeouts(int fd) {
    struct timeval tv;
    tv.tv_sec = (time_t)opt.timeout_s;
    tv.tv_usec = (suseconds_t)((opt.timeout_s - (double)tv.tv_sec) * 1e6);
    int one = 1;
    return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
                   setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
                   setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0
               ? -1
               : 0;
}

/* connect(2) through an interrupting signal: wait for the connection it left in progress. */
static int finish_connect(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int waited;
    do {
        waited = poll(&p, 1, (int)(opt.timeout_s * 1000));
    } while (waited < 0 && errno == EINTR);
    if (waited == 0) {
        errno = ETIMEDOUT;
        return -1;
    }
    int error = 0;
    socklen_t size = sizeof error;
    if (waited < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) < 0) {
        return -1;
    }
    errno = error;
    return error == 0 ? 0 : -1;
}

static int open_connection(struct worker *w, struct conn *c) {
    int saved = 0;
    set_step(w, "connect");
    for (struct addrinfo *a = addresses; a != NULL; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        /* SO_SNDTIMEO also bounds connect(2) on Linux. */
        if (set_timeouts(fd) == 0 &&
            (connect(fd, a->ai_addr, a->ai_addrlen) == 0 ||
             (errno == EINTR && finish_connect(fd) == 0))) {
            c->fd = fd;
            return 0;
        }
        saved = errno;
        close(fd);
    }
    return fail(w, "%s",
                saved == EINPROGRESS || saved == EAGAIN ? "timed out" : strerror(saved));
}

static int tls_handshake(struct worker *w, struct conn *c) {
    set_step(w, "TLS handshake");
    c->ssl = SSL_new(tls_context);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        return fail(w, "cannot create a TLS connection");
    }
    struct in6_addr ignored;
    if (inet_pton(AF_INET, opt.host, &ignored) != 1 &&
        inet_pton(AF_INET6, opt.host, &ignored) != 1) {
        SSL_set_tlsext_host_name(c->ssl, opt.host); /* SNI is for names, not addresses */
    }
    SSL_set_app_data(c->ssl, w);
    if (w->session != NULL) {
        SSL_set_session(c->ssl, w->session);
    }
    double started = now();
    for (;;) {
        ERR_clear_error();
        int n = SSL_connect(c->ssl);
        if (n == 1) {
            if (SSL_session_reused(c->ssl)) {
                w->resumed++;
            }
            return 0;
        }
        int e = SSL_get_error(c->ssl, n);
        if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && may_retry(started)) {
            continue;
        }
        if (e == SSL_ERROR_SYSCALL && errno == EINTR) {
            continue;
        }
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            return fail(w, "timed out after %g s", opt.timeout_s);
        }
        char text[256];
        tls_error_text(text, sizeof text, e);
        return fail(w, "%s", text);
    }
}

static void close_connection(struct conn *c, int clean) {
    if (c->ssl != NULL) {
        if (clean) {
            ERR_clear_error();
            SSL_shutdown(c->ssl); /* send close_notify; the server's is not awaited */
        }
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->start = c->end = 0;
    ERR_clear_error();
}

static int append(void **array, size_t *count, size_t *capacity, size_t size, const void *item) {
    if (*count == *capacity) {
        size_t grown = *capacity == 0 ? 256 : *capacity * 2;
        void *bigger = realloc(*array, grown * size);
        if (bigger == NULL) {
            return -1;
        }
        *array = bigger;
        *capacity = grown;
    }
    memcpy((char *)*array + *count * size, item, size);
    (*count)++;
    return 0;
}

/* One whole session; 0 with its measurements recorded, -1 with w->error set. */
static int session(struct worker *w, const struct user *u) {
    struct conn *c = &w->conn;
    const char *line;
    size_t length;
    unsigned long long octets = 0;
    double started = now();
    struct interval retr = {0, 0};

    w->error[0] = '\0';
    if (open_connection(w, c) < 0 || (opt.tls && tls_handshake(w, c) < 0) ||
        read_status(w, c, "greeting", NULL, NULL) < 0 ||
        send_command(w, c, "USER %s", u->name) < 0 || read_status(w, c, "USER", NULL, NULL) < 0 ||
        send_command(w, c, "PASS %s", u->password) < 0 ||
        read_status(w, c, "PASS", NULL, NULL) < 0) {
        goto failed;
    }
    if (opt.workload != WORKLOAD_LOGIN) {
        if (send_command(w, c, "STAT") < 0 || read_status(w, c, "STAT", &line, &length) < 0) {
            goto failed;
        }
        char stat[64];
        printable(stat, sizeof stat, line, length);
        long messages;
        if (sscanf(stat, "+OK %ld", &messages) != 1 || messages < 0) {
            fail(w, "unexpected reply \"%s\"", stat);
            goto failed;
        }
        unsigned long long uidl_octets = 0;
        if (send_command(w, c, "UIDL") < 0 || read_status(w, c, "UIDL", NULL, NULL) < 0 ||
            read_body(w, c, &uidl_octets) < 0) {
            goto failed;
        }
        retr.start = now();
        for (long number = 1; opt.workload != WORKLOAD_LIST && number <= messages; number++) {
            char what[32];
            snprintf(what, sizeof what, "RETR %ld", number);
            if (send_command(w, c, "%s", what) < 0 || read_status(w, c, what, NULL, NULL) < 0 ||
                read_body(w, c, &octets) < 0) {
                goto failed;
            }
        }
        retr.end = now();
    }
    if (send_command(w, c, "QUIT") < 0 || read_status(w, c, "QUIT", NULL, NULL) < 0) {
        goto failed;
    }
    close_connection(c, 1);
    double latency = now() - started;
    if (append((void **)&w->latencies, &w->n_latencies, &w->cap_latencies, sizeof latency,
               &latency) < 0 ||
        (opt.workload != WORKLOAD_LOGIN &&
         append((void **)&w->retr, &w->n_retr, &w->cap_retr, sizeof retr, &retr) < 0)) {
        die(1, "out of memory");
    }
    w->bytes += octets;
    return 0;

failed:
    close_connection(c, 0);
    return -1;
}

static void record_first_error(const struct worker *w, const struct user *u) {
    pthread_mutex_lock(&first_error_lock);
    if (!have_first_error) {
        have_first_error = 1;
        snprintf(first_error, sizeof first_error, "%.100s: %.400s", u->name, w->error);
    }
    pthread_mutex_unlock(&first_error_lock);
}

static void *worker_main(void *argument) {
    struct worker *w = argument;
    size_t turn = 0; /* this worker's users are index, index + C, index + 2C, ... */
    for (;;) {
        if (opt.seconds >= 0) {
            if (now() >= run_deadline) {
                break;
            }
        } else if (atomic_fetch_add(&sessions_claimed, 1) >= opt.sessions) {
            break;
        }
        size_t index = (size_t)w->index + turn * (size_t)opt.concurrency;
        if (index >= n_users) {
            turn = 0;
            index = (size_t)w->index;
        }
        turn++;
        const struct user *u = &users[index];
        if (session(w, u) == 0) {
            w->ok++;
        } else {
            w->failed++;
            record_first_error(w, u);
        }
    }
    return NULL;
}

/* --- set-up and report ------------------------------------------------------------------ */

static void load_users(const char *path) {
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        die(1, "cannot read %s: %s", path, strerror(errno));
    }
    char *line = NULL;
    size_t size = 0;
    ssize_t length;
    size_t capacity = 0;
    long number = 0;
    while ((length = getline(&line, &size, file)) >= 0) {
        number++;
        while (length > 0 && (line[length - 1] == '\n' || line[length - 1] == '\r')) {
            line[--length] = '\0';
        }
        if (length == 0) {
            continue;
        }
        char *tab = strchr(line, '\t');
        if (tab == NULL || tab == line) {
            die(2, "%s line %ld: expected user<TAB>password", path, number);
        }
        *tab = '\0';
        struct user u = {strdup(line), strdup(tab + 1)};
        if (u.name == NULL || u.password == NULL ||
            append((void **)&users, &n_users, &capacity, sizeof u, &u) < 0) {
            die(1, "out of memory");
        }
    }
    free(line);
    fclose(file);
    if (n_users == 0) {
        die(2, "%s holds no users", path);
    }
}

/*
 * With --resume, keep the newest ticket the server sent. TLS 1.3 tickets arrive after the
 * handshake, one or more per connection and meant for one use each, which is why this is a
 * callback rather than SSL_get1_session at the end of a session.
 */
static int keep_session(SSL *ssl, SSL_SESSION *session) {
    struct worker *w = SSL_get_app_data(ssl);
    SSL_SESSION_free(w->session);
    w->session = session;
    return 1; /* the reference is ours now */
}

static void make_tls_context(void) {
    tls_context = SSL_CTX_new(TLS_client_method());
    if (tls_context == NULL) {
        die(1, "cannot create a TLS context");
    }
    /* The servers measured use self-signed certificates: nothing is verified. */
    SSL_CTX_set_verify(tls_context, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_min_proto_version(tls_context, TLS1_2_VERSION);
    if (opt.resume) {
        /* Each worker keeps its own session (keep_session), not OpenSSL's shared cache. */
        SSL_CTX_set_session_cache_mode(tls_context,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(tls_context, keep_session);
    } else {
        /* Every session pays a full handshake, as a client with no saved state does. */
        SSL_CTX_set_session_cache_mode(tls_context, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(tls_context, SSL_OP_NO_TICKET);
    }
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int compare_intervals(const void *a, const void *b) {
    return compare_doubles(&((const struct interval *)a)->start,
                           &((const struct interval *)b)->start);
}

/* Nearest-rank percentile of sorted values. */
static double percentile(const double *sorted, size_t count, double p) {
    size_t rank = (size_t)ceil(p / 100.0 * (double)count);
    return sorted[rank == 0 ? 0 : rank - 1];
}

/* How long at least one RETR phase was in progress (the union of the intervals). */
static double busy_time(struct interval *intervals, size_t count) {
    qsort(intervals, count, sizeof *intervals, compare_intervals);
    double total = 0, start = 0, end = -1;
    for (size_t i = 0; i < count; i++) {
        if (intervals[i].start > end) {
            total += end > start ? end - start : 0;
            start = intervals[i].start;
            end = intervals[i].end;
        } else if (intervals[i].end > end) {
            end = intervals[i].end;
        }
    }
    return total + (end > start ? end - start : 0);
}

static void print_json_string(const char *text) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            printf("\\%c", *p);
        } else if (*p < 0x20 || *p >= 0x7f) {
            printf("\\u%04x", *p); /* error texts are ASCII already; this keeps JSON valid */
        } else {
            putchar(*p);
        }
    }
    putchar('"');
}

static void print_report(struct worker *workers, double elapsed) {
    long ok = 0, failed = 0, resumed = 0;
    unsigned long long bytes = 0;
    size_t n_latencies = 0, n_retr = 0;
    for (int i = 0; i < opt.concurrency; i++) {
        ok += workers[i].ok;
        failed += workers[i].failed;
        resumed += workers[i].resumed;
        bytes += workers[i].bytes;
        n_latencies += workers[i].n_latencies;
        n_retr += workers[i].n_retr;
    }
    double *latencies = malloc((n_latencies + 1) * sizeof *latencies);
    struct interval *retr = malloc((n_retr + 1) * sizeof *retr);
    if (latencies == NULL || retr == NULL) {
        die(1, "out of memory");
    }
    size_t at = 0, at_retr = 0;
    for (int i = 0; i < opt.concurrency; i++) {
        if (workers[i].n_latencies > 0) { /* memcpy from NULL is undefined, even of 0 bytes */
            memcpy(latencies + at, workers[i].latencies,
                   workers[i].n_latencies * sizeof *latencies);
            at += workers[i].n_latencies;
        }
        if (workers[i].n_retr > 0) {
            memcpy(retr + at_retr, workers[i].retr, workers[i].n_retr * sizeof *retr);
            at_retr += workers[i].n_retr;
        }
    }
    qsort(latencies, n_latencies, sizeof *latencies, compare_doubles);
    /* Workload retr: throughput while RETRs ran; otherwise over the whole run. */
    double retr_seconds = opt.workload == WORKLOAD_RETR ? busy_time(retr, n_retr) : elapsed;
    double per_second = elapsed > 0 ? (double)ok / elapsed : 0;

    printf("{\"workload\": \"%s\", \"tls\": \"%s\", \"concurrency\": %d, ",
           workload_names[opt.workload], opt.tls ? "implicit" : "none", opt.concurrency);
    if (opt.sessions >= 0) {
        printf("\"sessions_asked\": %ld, ", opt.sessions);
    } else {
        printf("\"sessions_asked\": null, ");
    }
    printf("\"sessions_ok\": %ld, \"sessions_failed\": %ld, \"first_error\": ", ok, failed);
    if (have_first_error) {
        print_json_string(first_error);
    } else {
        printf("null");
    }
    printf(", \"elapsed_s\": %.6f, \"sessions_per_s\": %.3f, \"logins_per_s\": ", elapsed,
           per_second);
    if (opt.workload == WORKLOAD_LOGIN) {
        printf("%.3f", per_second);
    } else {
        printf("null");
    }
    printf(", \"tls_resumed\": %ld, \"bytes_retrieved\": %llu, \"retr_s\": %.9f, "
           "\"retr_mb_per_s\": %.6g, \"latency_ms\": ",
           resumed, bytes, retr_seconds, retr_seconds > 0 ? (double)bytes / retr_seconds / 1e6 : 0);
    if (n_latencies > 0) {
        printf("{\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"max\": %.3f}",
               percentile(latencies, n_latencies, 50) * 1e3,
               percentile(latencies, n_latencies, 90) * 1e3,
               percentile(latencies, n_latencies, 99) * 1e3, latencies[n_latencies - 1] * 1e3);
    } else {
        printf("null");
    }
    printf("}\n");
    free(latencies);
    free(retr);
}

static void usage(int status) {
    fprintf(status == 0 ? stdout : stderr,
            "usage: pop3load --host H --port P [--tls implicit|none] --users FILE\n"
            "                (--sessions N | --seconds S) [--concurrency C]\n"
            "                [--workload full|login|list|retr] [--timeout S] [--resume]\n"
            "FILE: one user<TAB>password per line; C must not exceed the number of users\n"
            "(each concurrent worker keeps to its own users: a maildrop admits one session).\n");
    exit(status);
}

static double parse_number(const char *name, const char *text, double low, double high) {
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(value >= low && value <= high)) {
        die(2, "--%s: expected a number from %g to %g, not \"%s\"", name, low, high, text);
    }
    return value;
}

static void parse_options(int argc, char **argv) {
    static const struct option longs[] = {
        {"host", required_argument, NULL, 'h'},     {"port", required_argument, NULL, 'p'},
        {"tls", required_argument, NULL, 't'},      {"users", required_argument, NULL, 'u'},
        {"sessions", required_argument, NULL, 'n'}, {"seconds", required_argument, NULL, 's'},
        {"concurrency", required_argument, NULL, 'c'},
        {"workload", required_argument, NULL, 'w'}, {"timeout", required_argument, NULL, 'T'},
        {"resume", no_argument, NULL, 'r'},         {"help", no_argument, NULL, '?' + 256},
        {NULL, 0, NULL, 0},
    };
    int option;
    while ((option = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (option) {
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = optarg; break;
        case 'u': opt.users_file = optarg; break;
        case 'r': opt.resume = 1; break;
        case 't':
            if (strcmp(optarg, "implicit") == 0) {
                opt.tls = 1;
            } else if (strcmp(optarg, "none") == 0) {
                opt.tls = 0;
            } else {
                die(2, "--tls: expected implicit or none, not \"%s\"", optarg);
            }
            break;
        case 'w':
            if (strcmp(optarg, "full") == 0) {
                opt.workload = WORKLOAD_FULL;
            } else if (strcmp(optarg, "login") == 0) {
                opt.workload = WORKLOAD_LOGIN;
            } else if (strcmp(optarg, "list") == 0) {
                opt.workload = WORKLOAD_LIST;
            } else if (strcmp(optarg, "retr") == 0) {
                opt.workload = WORKLOAD_RETR;
            } else {
                die(2, "--workload: expected full, login, list or retr, not \"%s\"", optarg);
            }
            break;
        case 'n': {
            double sessions = parse_number("sessions", optarg, 1, 1e12);
            if (sessions != floor(sessions)) {
                die(2, "--sessions: expected a whole number, not \"%s\"", optarg);
            }
            opt.sessions = (long)sessions;
            break;
        }
        case 's': opt.seconds = parse_number("seconds", optarg, 0.001, 1e6); break;
        case 'c': opt.concurrency = (int)parse_number("concurrency", optarg, 1, MAX_CONCURRENCY);
            break;
        case 'T': opt.timeout_s = parse_number("timeout", optarg, 0.001, 1e6); break;
        case '?' + 256: usage(0); break;
        default: usage(2);
        }
    }
    if (optind < argc) {
        die(2, "unexpected argument \"%s\"", argv[optind]);
    }
    if (opt.host == NULL || opt.port == NULL || opt.users_file == NULL) {
        die(2, "--host, --port and --users are required (--help for usage)");
    }
    if ((opt.sessions >= 0) == (opt.seconds >= 0)) {
        die(2, "give exactly one of --sessions and --seconds");
    }
}

int main(int argc, char **argv) {
    parse_options(argc, argv);
    load_users(opt.users_file);
    if ((size_t)opt.concurrency > n_users) {
        die(2, "--concurrency %d exceeds the %zu users in %s: concurrent sessions would share "
               "a maildrop, which POP3 admits one session at a time",
            opt.concurrency, n_users, opt.users_file);
    }
    /* A server closing early must fail the session, not kill the process (SSL_write). */
    signal(SIGPIPE, SIG_IGN);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    int status = getaddrinfo(opt.host, opt.port, &hints, &addresses);
    if (status != 0) {
        die(1, "%s port %s: %s", opt.host, opt.port, gai_strerror(status));
    }
    if (opt.tls) {
        make_tls_context();
    }
    struct worker *workers = calloc((size_t)opt.concurrency, sizeof *workers);
    if (workers == NULL) {
        die(1, "out of memory");
    }
    for (int i = 0; i < opt.concurrency; i++) {
        workers[i].index = i;
        workers[i].conn.fd = -1;
        workers[i].conn.buf = malloc(BUFFER_SIZE);
        if (workers[i].conn.buf == NULL) {
            die(1, "out of memory");
        }
    }
    double started = now();
    run_deadline = started + (opt.seconds >= 0 ? opt.seconds : 0);
    for (int i = 0; i < opt.concurrency; i++) {
        int error = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
        if (error != 0) {
            die(1, "cannot start a worker thread: %s", strerror(error));
        }
    }
    for (int i = 0; i < opt.concurrency; i++) {
        pthread_join(workers[i].thread, NULL);
    }
    double elapsed = now() - started;
    print_report(workers, elapsed);
    fflush(stdout);
    for (int i = 0; i < opt.concurrency; i++) {
        free(workers[i].conn.buf);
        free(workers[i].latencies);
        free(workers[i].retr);
        SSL_SESSION_free(workers[i].session);
    }
    free(workers);
    for (size_t i = 0; i < n_users; i++) {
        free(users[i].name);
        free(users[i].password);
    }
    free(users);
    freeaddrinfo(addresses);
    SSL_CTX_free(tls_context);
    return ferror(stdout) ? 1 : 0;
}
